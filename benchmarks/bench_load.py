"""First (GGUF conversion) vs cached load of the embedded model, each in a fresh process."""
import os
import subprocess
import sys
import tempfile

from _common import report

# imports (torch, transformers) are timed apart from the load_model call itself
CODE = ("import time; t0=time.perf_counter(); import torch, transformers; "
        "from transformers import AutoModelForCausalLM, AutoTokenizer; "
        "from conva_nb.models import load_model; t1=time.perf_counter(); "
        "load_model('embedded'); t2=time.perf_counter(); print(t1-t0, t2-t1)")


def timed(env) -> tuple[float, float]:
    """(import seconds, load_model seconds) in a fresh process."""
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                         check=True)
    imp, call = out.stdout.strip().splitlines()[-1].split()
    return float(imp), float(call)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "CONVA_NB_CACHE": d}
        first = timed(env)[1]
        runs = [timed(env) for _ in range(3)]
    call = max(c for _, c in runs)
    report("load", {"first_load_s": round(first, 2), "cached_load_s": round(call, 2),
                    "cached_load_s_runs": [round(c, 2) for _, c in runs],
                    "python_imports_s": round(max(i for i, _ in runs), 2),
                    "cached_with_imports_s": round(max(i + c for i, c in runs), 2),
                    "first_over_cached": round(first / call, 1), "target_cached_s": 5.0})
