"""Wall time of ``conva-nb calibrate --value all`` and ``conva-nb evaluate`` on the embedded model.

Generations start cold: a fresh cache directory that links only the converted model,
the probe banks, the detector and the judge from the user's cache (so model conversion
and probe training, measured elsewhere, are not counted twice). Then each command is
re-run once to show that a cached re-run computes nothing new. Outputs go to the
temporary directory, and the cold run's table is compared with the shipped one.

    python benchmarks/bench_experiments.py [--only evaluate|calibrate] [--cache-dir DIR]

``--cache-dir`` keeps the cold run's cache in DIR (new or empty) instead of a temporary
directory, e.g. to save the table afterwards with ``CONVA_NB_CACHE=DIR conva-nb evaluate``.
"""
import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
TARGETS = {"calibrate": 60 * 60, "evaluate": 30 * 60}


def same_rows(a: list[dict], b: list[dict], tol: float = 1e-3) -> bool:
    """Equal tables: same rows and keys, numbers within ``tol`` (NaN equals NaN)."""
    def same(x, y):
        if isinstance(x, float) or isinstance(y, float):
            return (isinstance(x, (int, float)) and isinstance(y, (int, float)) and
                    (math.isclose(x, y, abs_tol=tol) or (math.isnan(x) and math.isnan(y))))
        if isinstance(x, list) and isinstance(y, list):
            return len(x) == len(y) and all(map(same, x, y))
        return x == y
    return len(a) == len(b) and all(r.keys() == s.keys() and all(same(r[k], s[k]) for k in r)
                                    for r, s in zip(a, b))


def run(cmd: list[str], env) -> tuple[float, dict]:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "conva_nb", *cmd, "--json", "--no-progress"],
                         env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - t, json.loads(out.stdout)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=sorted(TARGETS), default=None)
    ap.add_argument("--cache-dir", default=None, help="keep the cold cache here (new or empty)")
    args = ap.parse_args()
    from conva_nb.models import cache_dir
    real = cache_dir()
    if args.cache_dir:
        Path(args.cache_dir).mkdir(parents=True, exist_ok=True)
        if any(Path(args.cache_dir).iterdir()):
            raise SystemExit(f"--cache-dir {args.cache_dir} is not empty: a cold run needs an "
                             "empty cache")
    keep = contextlib.nullcontext(str(Path(args.cache_dir).resolve())) if args.cache_dir \
        else tempfile.TemporaryDirectory()
    with keep as d:
        for name in ("gemma3-270m-f32-bpe", "banks", "activations", "detectors", "judges"):
            if (real / name).exists():
                os.symlink(real / name, Path(d) / name)
        env = {**os.environ, "CONVA_NB_CACHE": d}
        figures = {}
        for name in ([args.only] if args.only else ["calibrate", "evaluate"]):
            # outputs go to the temp dir, not into the package
            fresh = Path(d) / "settings.json"
            cmd = [name, "--value", "all", "--out", str(fresh)] if name == "calibrate" else \
                [name, "--out", str(Path(d) / "evaluation.json")] + \
                (["--settings", str(fresh)] if fresh.is_file() else [])
            cold, doc = run(cmd, env)
            if name == "evaluate":
                from conva_nb.settings import EMBEDDED_IDENTITY, load_evaluation
                shipped = load_evaluation(EMBEDDED_IDENTITY) or {}
                figures["evaluate_rows_equal_shipped"] = same_rows(doc["rows"],
                                                                   shipped.get("rows", []))
            warm, doc2 = run(cmd, env)
            figures[f"{name}_cold_s"] = round(cold, 1)
            figures[f"{name}_rerun_s"] = round(warm, 1)
            figures[f"{name}_cold_vs_target"] = round(cold / TARGETS[name], 3)
            figures[f"{name}_rerun_new_generations"] = doc2["computed"]["generated"]
    report("experiments", figures)
