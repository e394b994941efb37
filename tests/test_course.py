"""The students' edition (`make student`): no solution survives, the notebooks are valid."""
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat

from conva_nb.course import strip_solutions, student_notebook

ROOT = Path(__file__).resolve().parents[1]


def _solution_lines(nb_path: Path) -> list[str]:
    """The distinctive lines of every solution block of a chapter (long enough to be
    unlikely anywhere else)."""
    out = []
    for cell in json.loads(nb_path.read_text())["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        src = "".join(cell["source"])
        for block in re.findall(r"^(:{3,})\{solution\}.*?\n(.*?)^\1\s*$", src, re.M | re.S):
            out += [l.strip() for l in block[1].splitlines()
                    if len(l.strip()) > 30 and not l.strip().startswith(":")]
    return out


def _outside_solutions(nb_path: Path) -> str:
    """Every cell's text with the solution blocks cut out (by the regex above, not by the
    code under test)."""
    parts = []
    for cell in json.loads(nb_path.read_text())["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            src = re.sub(r"^(:{3,})\{solution\}.*?\n.*?^\1\s*$", "", src, flags=re.M | re.S)
        parts.append(src)
    return "\n".join(parts)


def test_make_student_writes_every_chapter_without_solutions(tmp_path):
    out = tmp_path / "student"
    r = subprocess.run([sys.executable, "-m", "conva_nb.course", str(out)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    chapters = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
    assert len(chapters) == 9
    with zipfile.ZipFile(out / "conva-book-student.zip") as z:
        assert sorted(Path(n).name for n in z.namelist()) == [p.name for p in chapters]
    for src in chapters:
        student = out / src.name
        nb = nbformat.read(student, as_version=4)          # opens ...
        nbformat.validate(nb)                              # ... and is valid nbformat
        text = student.read_text()
        assert "{solution}" not in text, src.name
        rest = _outside_solutions(src)
        hidden = [l for l in _solution_lines(src) if l not in rest]
        assert hidden, f"{src.name}: no solution found to remove"
        assert not [l for l in hidden if l in text], src.name
        n_ex = sum(c["source"].count("{exercise}") for c in nb.cells
                   if c.cell_type == "markdown")
        assert n_ex >= 2, src.name                          # exercises stay
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_student_notebook_blanks_exercise_cells_and_drops_solution_cells():
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "id": "a",
         "source": "Intro.\n\n:::{exercise} difficulty 1/3 · importance 2/3 · 5 min\n:label: e\n"
                   "Do it.\n:::\n\n:::{solution} e\n:class: dropdown\n```python\nx = 42\n```\n"
                   "The answer is forty-two.\n:::\n"},
        {"cell_type": "code", "metadata": {"tags": ["exercise"]}, "id": "b",
         "execution_count": 3, "outputs": [{"output_type": "stream", "name": "stdout",
                                             "text": "42"}],
         "source": "# compute x from the table\nx = table.sum()\n"},
        {"cell_type": "code", "metadata": {"tags": ["solution"]}, "id": "c",
         "execution_count": None, "outputs": [], "source": "x = 42"}]}
    out = student_notebook(nb)
    assert [c["id"] for c in out["cells"]] == ["a", "b"]
    md = out["cells"][0]["source"]
    assert "{exercise}" in md and "Do it." in md
    assert "forty-two" not in md and "x = 42" not in md
    assert out["cells"][1]["source"] == "# compute x from the table\n# your code here\n..."
    assert out["cells"][1]["outputs"] == [] and out["cells"][1]["execution_count"] is None
    nbformat.validate(nbformat.from_dict(out))


def test_strip_solutions_handles_nested_fences_and_backtick_directives():
    md = ("a\n::::{solution} x\n:::{note}\ninner\n:::\nsecret\n::::\nb\n"
          "```{solution} y\nalso secret\n```\nc\n")
    assert strip_solutions(md) == "a\nb\nc\n"
