"""Wall time of ``conva-nb calibrate --value all`` and ``conva-nb evaluate`` on the embedded model.

Generations start cold: a fresh cache directory that links only the converted model,
the probe banks, the detector and the judge from the user's cache (so model conversion
and probe training, measured elsewhere, are not counted twice). Then each command is
re-run once to show that a cached re-run computes nothing new.

    python benchmarks/bench_experiments.py [--only evaluate|calibrate]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
TARGETS = {"calibrate": 60 * 60, "evaluate": 30 * 60}


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
    args = ap.parse_args()
    from conva_nb.models import cache_dir
    real = cache_dir()
    with tempfile.TemporaryDirectory() as d:
        for name in ("gemma3-270m-f32-bpe", "banks", "activations", "detectors", "judges"):
            if (real / name).exists():
                os.symlink(real / name, Path(d) / name)
        env = {**os.environ, "CONVA_NB_CACHE": d}
        figures = {}
        for name in ([args.only] if args.only else ["calibrate", "evaluate"]):
            cmd = [name, "--value", "all"] if name == "calibrate" else [name]
            if name == "calibrate":   # write the settings into the temp dir, not the package
                cmd += ["--out", str(Path(d) / "settings.json")]
            cold, doc = run(cmd, env)
            warm, doc2 = run(cmd, env)
            figures[f"{name}_cold_s"] = round(cold, 1)
            figures[f"{name}_rerun_s"] = round(warm, 1)
            figures[f"{name}_cold_vs_target"] = round(cold / TARGETS[name], 3)
            figures[f"{name}_rerun_new_generations"] = doc2["computed"]["generated"]
    report("experiments", figures)
