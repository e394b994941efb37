"""The students' edition: every chapter notebook without its solutions.

``python -m conva_nb.course OUT`` (what ``make student`` runs) writes each chapter of
``book/`` to ``OUT/`` with every ``{solution}`` block removed from its Markdown cells,
cells tagged ``solution`` dropped, code cells tagged ``exercise`` blanked (their comment
lines kept, the code replaced by a placeholder) and outputs cleared; then zips the folder.
The book's build ships the zip for download (the course guide links to it).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import zipfile
from pathlib import Path

__all__ = ["strip_solutions", "student_notebook", "write_student_edition", "ZIP_NAME"]

ZIP_NAME = "conva-book-student.zip"
_OPEN = re.compile(r"^(?P<fence>:{3,}|`{3,})\{solution\}")
PLACEHOLDER = "# your code here\n..."


def strip_solutions(markdown: str) -> str:
    """``markdown`` without its ``{solution}`` directive blocks (colon or backtick fences,
    nested fences inside them included)."""
    out, lines, i = [], markdown.splitlines(keepends=True), 0
    while i < len(lines):
        m = _OPEN.match(lines[i].lstrip())
        if not m:
            out.append(lines[i])
            i += 1
            continue
        fence = m.group("fence")
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            i += 1
        i += 1                                  # the closing fence
    return re.sub(r"\n{3,}", "\n\n", "".join(out)).rstrip() + ("\n" if out else "")


def _source(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def student_notebook(nb: dict) -> dict:
    """A copy of notebook ``nb`` (nbformat 4 JSON) for students."""
    cells = []
    for cell in nb["cells"]:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if "solution" in tags:
            continue
        cell = json.loads(json.dumps(cell))
        if cell["cell_type"] == "markdown":
            text = strip_solutions(_source(cell))
            if not text.strip():
                continue
            cell["source"] = text
        elif cell["cell_type"] == "code":
            if "exercise" in tags:
                keep = [l for l in _source(cell).splitlines() if l.lstrip().startswith("#")]
                cell["source"] = "\n".join(keep + [PLACEHOLDER])
            cell["outputs"], cell["execution_count"] = [], None
        cells.append(cell)
    return {**nb, "cells": cells}


def write_student_edition(book_dir, out_dir) -> Path:
    """Write every chapter of ``book_dir`` for students into ``out_dir`` and zip it;
    returns the zip's path (``out_dir/conva-book-student.zip``)."""
    book_dir, out_dir = Path(book_dir), Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    chapters = sorted(p for p in book_dir.glob("[0-9][0-9]_*.ipynb"))
    for p in chapters:
        nb = student_notebook(json.loads(p.read_text(encoding="utf-8")))
        (out_dir / p.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    zpath = out_dir / ZIP_NAME
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
        for p in chapters:
            z.write(out_dir / p.name, f"conva-book-student/{p.name}")
    return zpath


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder (replaced)")
    ap.add_argument("--book", type=Path, default=Path(__file__).resolve().parents[1] / "book")
    args = ap.parse_args(argv)
    z = write_student_edition(args.book, args.out)
    print(f"students' edition: {args.out.resolve()} ({z.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
