"""Cold vs cached build of the whole book (one JSON line).

Cold: the book's sources (``_config.yml``, the table of contents, ``book/``) are copied to
a temporary directory and built there with an empty ``CONVA_NB_CACHE`` (model conversion,
activations, probe banks, detectors all from scratch) and no jupyter cache. Cached: the same
build command again right after, reusing both caches. Targets: 25 min cold, 3 min cached.

    python benchmarks/bench_book.py [--toc other_toc.yml] [--keep DIR]
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
TARGET_COLD_S, TARGET_CACHED_S = 25 * 60, 3 * 60


def build(src: Path, env: dict) -> float:
    jb = Path(sys.executable).parent / "jupyter-book"
    t0 = time.perf_counter()
    proc = subprocess.run([str(jb), "build", ".", "-W", "-n", "--keep-going"], cwd=src, env=env,
                          capture_output=True, text=True, check=False)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write((proc.stdout + proc.stderr)[-6000:])
        raise SystemExit(f"book build failed with exit code {proc.returncode}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--toc", type=Path, default=ROOT / "_toc.yml",
                    help="table of contents to build (default: the book's)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="build in this (new) directory and keep it, instead of a temp dir")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="conva-bench-book-")) if args.keep is None else args.keep
    try:
        src = work / "src"
        src.mkdir(parents=True)
        shutil.copy2(ROOT / "_config.yml", src / "_config.yml")
        shutil.copy2(args.toc, src / "_toc.yml")
        shutil.copytree(ROOT / "book", src / "book",
                        ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
        env = {**os.environ, "CONVA_NB_CACHE": str(work / "conva_cache"),
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        touche = ROOT.parent / "shared" / "data" / "touche23"
        if "CONVA_NB_TOUCHE" not in env and (touche / "arguments-training.tsv").is_file():
            env["CONVA_NB_TOUCHE"] = str(touche)
        cold = build(src, env)
        cached = build(src, env)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    report("book", {"toc": str(args.toc.resolve().relative_to(ROOT))
                    if args.toc.resolve().is_relative_to(ROOT) else str(args.toc),
                    "cold_s": round(cold, 1), "cached_s": round(cached, 1),
                    "cold_vs_target": round(cold / TARGET_COLD_S, 3),
                    "cached_vs_target": round(cached / TARGET_CACHED_S, 3)})


if __name__ == "__main__":
    main()
