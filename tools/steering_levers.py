"""Levers beyond the calibration grid, measured on the dev prompts at each value's calibrated
ConVA setting (ungated, so the steering itself is compared):

- ``generated``: steer only the answer's tokens, at the calibrated target logit and 4 above;
- ``mean``: probes trained on mean-pooled sentences instead of the last token.

Prints one JSON line per value: dev CSR and FR per lever next to the calibrated setting and
the FR floor (0.97 × unsteered). Mean-pooled runs use their own run store, because a
method's cache key does not name the pooling.

    python tools/steering_levers.py [--values all]
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conva_nb.datasets import load_prompts  # noqa: E402
from conva_nb.evaluation import FluencyBounds, get_judge  # noqa: E402
from conva_nb.experiment import FR_RATIO, score_method  # noqa: E402
from conva_nb.methods import MethodConfig  # noqa: E402
from conva_nb.models import load_model  # noqa: E402
from conva_nb.probes import get_bank  # noqa: E402
from conva_nb.runner import Runner, RunStore  # noqa: E402
from conva_nb.settings import load_settings  # noqa: E402
from conva_nb.values import VALUE_NAMES, canonical  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--values", default="all")
    ap.add_argument("--model", default="embedded")
    args = ap.parse_args()
    values = VALUE_NAMES if args.values == "all" else [canonical(v) for v in args.values.split(",")]
    model, tok = load_model(args.model)
    settings = load_settings(model)
    bounds = FluencyBounds(**settings["fluency_bounds"])
    judge = get_judge()
    runner = Runner(model, tok, progress=False)
    mean_runner = Runner(model, tok, progress=False,
                         store=RunStore(runner.store.path.parent / "mean_pooling.jsonl"))

    def dev(r, cfg, qs):
        out = score_method(r, judge, cfg, qs, bounds)
        return {"csr": round(out["csr"], 3), "fr": round(out["fr"], 3)}

    for value in values:
        s = settings["values"][value]
        qs = [r["prompt"] for r in load_prompts("value", value, "dev")]
        t, layers = s["conva"]["logit"], tuple(s["conva"]["layers"])
        row = {"value": value, "layers": list(layers), "logit": t,
               "fr_floor": round(FR_RATIO * s["dev"]["none"]["fr"], 3),
               "none": s["dev"]["none"], "calibrated": s["dev"]["conva"]}
        for name, logit in (("generated", t), ("generated_plus4", t + 4)):
            row[name] = dev(runner, MethodConfig("conva-nogate", value, logit=logit, layers=layers,
                                                 positions="generated"), qs)
        bank = get_bank(model, tok, value, pooling="mean", progress=False)
        mean_runner.banks[(value, "controlled")] = bank
        row["mean"] = dev(mean_runner, MethodConfig("conva-nogate", value, logit=t, layers=layers), qs)
        row["mean"]["probe_test_acc"] = [round(float(bank.test_acc[bank.layers.index(l)]), 3)
                                         for l in layers]
        print(json.dumps(row), flush=True)
