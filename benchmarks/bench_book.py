"""A reader's first ``make book``, end to end, on a fresh clone (one JSON line).

Steps, each timed: ``git clone`` of the committed tree into a temporary directory;
``make install`` there (a new virtual environment); the embedded model's conversion into an
empty ``CONVA_NB_CACHE``; ``make book`` (every chapter executed, no jupyter cache); the
same build again (all from the caches). Each chapter's execution time comes from the
build's own jupyter cache. Goal: install + conversion + first build <= 20 min.

    python benchmarks/bench_book.py [--quick] [--keep DIR] [--venv PATH]

``--quick`` builds with ``CONVA_QUICK=1`` (what the test suite builds); ``--venv`` reuses an
installed environment instead of timing ``make install``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import report

ROOT = Path(__file__).resolve().parents[1]
GOAL_FIRST_S = 20 * 60


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write((proc.stdout + proc.stderr)[-6000:])
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return took


def chapter_seconds(clone: Path) -> dict:
    """``{notebook: execution seconds}`` from the build's jupyter cache."""
    from jupyter_cache import get_cache
    cache = get_cache(clone / "_build" / ".jupyter_cache")
    out = {}
    for rec in cache.list_cache_records():
        secs = (rec.data or {}).get("execution_seconds")
        if secs is not None:
            out[Path(rec.uri).stem] = round(float(secs), 1)
    return dict(sorted(out.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="build the chapters in quick mode")
    ap.add_argument("--keep", type=Path, default=None,
                    help="work in this (new) directory and keep it, instead of a temp dir")
    ap.add_argument("--venv", type=Path, default=None,
                    help="use this installed virtual environment (skips timing make install)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="conva-bench-book-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONVA_QUICK")}
    env.update(CONVA_NB_CACHE=str(work / "conva_cache"), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if args.quick:
        env["CONVA_QUICK"] = "1"
    clone = work / "clone"
    try:
        figures = {"quick": args.quick, "clone_s": round(timed(
            ["git", "clone", "-q", str(ROOT), str(clone)], work, env), 1)}
        if args.venv:
            os.symlink(args.venv.resolve(), clone / ".venv")
            (clone / ".venv" / ".installed").touch()
        else:
            figures["install_s"] = round(timed(["make", "install"], clone, env), 1)
        py = str(clone / ".venv" / "bin" / "python")
        figures["convert_model_s"] = round(timed(
            [py, "-c", "from conva_nb.models import load_model; load_model('embedded')"],
            clone, env), 1)
        figures["book_cold_s"] = round(timed(["make", "book"], clone, env), 1)
        figures["chapters_s"] = chapter_seconds(clone)
        figures["book_cached_s"] = round(timed(["make", "book"], clone, env), 1)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    first = sum(figures.get(k, 0.0) for k in ("install_s", "convert_model_s", "book_cold_s"))
    figures["first_book_s"] = round(first, 1)
    figures["first_book_vs_goal"] = round(first / GOAL_FIRST_S, 3)
    report("book", figures)


if __name__ == "__main__":
    main()
