"""Which gate can tell a value's prompts from value-irrelevant ones? ROC-AUC per value.

Positives: the value's dev + test prompts; negatives: the value-irrelevant dev prompts.
Compared: the Touché23 value detector (the paper's gate) and the model's own probe read on
the prompt's last token (``ProbeGate``) at the steered layer and at a few fixed depths.
Prints one JSON line per value.

    python tools/gate_variants.py [--touche DIR] [--values all]
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conva_nb.datasets import load_prompts  # noqa: E402
from conva_nb.gates import ProbeGate, ValueDetectorGate, touche_detector  # noqa: E402
from conva_nb.models import decoder_layers, load_model  # noqa: E402
from conva_nb.probes import get_bank  # noqa: E402
from conva_nb.values import VALUE_NAMES, canonical  # noqa: E402

if __name__ == "__main__":
    from sklearn.metrics import roc_auc_score
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--touche", default=None, help="Touché23 dir (default: CONVA_NB_TOUCHE)")
    ap.add_argument("--values", default="all")
    ap.add_argument("--model", default="embedded")
    args = ap.parse_args()
    values = VALUE_NAMES if args.values == "all" else [canonical(v) for v in args.values.split(",")]
    model, tok = load_model(args.model)
    n_layers = len(decoder_layers(model))
    depths = sorted({n_layers // 6, n_layers // 3, n_layers // 2})
    detector = touche_detector(args.touche)
    irrelevant = [r["prompt"] for r in load_prompts("irrelevant", split="dev")]
    for value in values:
        qs = [r["prompt"] for s in ("dev", "test") for r in load_prompts("value", value, s)]
        y = np.r_[np.ones(len(qs)), np.zeros(len(irrelevant))]
        row = {"value": value, "n_value": len(qs), "n_irrelevant": len(irrelevant),
               "detector": round(roc_auc_score(y, ValueDetectorGate(detector, value)
                                               .scores(qs + irrelevant)), 3)}
        bank = get_bank(model, tok, value, progress=False)
        steered = bank.select_layers()[0]
        for layer in [steered] + [d for d in depths if d != steered]:
            p = ProbeGate(model, tok, bank, layer=layer).scores(qs + irrelevant)
            row[f"probe_L{layer}" + ("_steered" if layer == steered else "")] = \
                round(roc_auc_score(y, p), 3)
        print(json.dumps(row), flush=True)
