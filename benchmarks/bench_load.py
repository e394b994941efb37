"""First (GGUF conversion) vs cached load of the embedded model, each in a fresh process."""
import os
import subprocess
import sys
import tempfile

from _common import report

CODE = ("import time; t=time.perf_counter(); from conva_nb.models import load_model; "
        "load_model('embedded'); print(time.perf_counter()-t)")


def timed(env) -> float:
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "CONVA_NB_CACHE": d}
        first = timed(env)
        cached = [timed(env) for _ in range(3)]
    report("load", {"first_load_s": round(first, 2), "cached_load_s": round(max(cached), 2),
                    "cached_load_s_runs": [round(c, 2) for c in cached],
                    "first_over_cached": round(first / max(cached), 1),
                    "target_cached_s": 5.0})
