"""Why held-out probe accuracy stops below 0.9 on the embedded model: probe variants compared.

For each value and each layer outside the last five, on the shipped train/held-out twins:

- ``base``: the package's probe (``fit_layer``: one logistic regression per sentence, C by
  grouped CV);
- ``pairwise``: the same probe, scored on twins instead of sentences (is the positive
  twin's logit above the negative's?);
- ``diff``: a probe fit on twin differences ``e+ − e−`` (no intercept; ``b`` puts the
  class means' midpoint at 0), the "pair-difference" probe;
- ``projK``: the situation subspace removed first: the top K principal directions of the
  twins' means (persona and scenario, shared by both twins) are projected out, the probe
  fit on the rest and folded back to a raw-space ``w``.

Prints one JSON line per value: the best held-out accuracy of each variant and its layer.
``--frame`` reads every sentence after the generation frame's few-shot preamble
(``preamble``), or as the answer to a generic question in that frame (``qa``), i.e. in the
context where the steering hooks will meet the value, instead of right after BOS.

    python tools/probe_variants.py [--values achievement,power] [--pooling last|mean]
                                   [--frame none|preamble|qa]
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conva_nb.activations import extract  # noqa: E402
from conva_nb.datasets import load_pairs  # noqa: E402
from conva_nb.models import decoder_layers, load_model  # noqa: E402
from conva_nb.probes import fit_layer, pair_arrays  # noqa: E402
from conva_nb.prompting import FEWSHOT  # noqa: E402
from conva_nb.values import VALUE_NAMES, canonical  # noqa: E402

FRAMES = {"none": "{}", "preamble": FEWSHOT + "{}",
          "qa": FEWSHOT + "Question: Tell me about something you did or think.\nAnswer: {}"}


def framed_arrays(model, tok, pairs, pooling, layers, frame: str) -> np.ndarray:
    """Twin activations ``[2n, L, H]`` (positives first), each sentence read in ``frame``;
    with ``last`` pooling the last token is the sentence's own, whatever the frame."""
    if frame == "none":
        return pair_arrays(model, tok, pairs, pooling, layers, progress=False)[0]
    texts = [FRAMES[frame].format(p[k]) for k in ("positive", "negative") for p in pairs]
    return extract(model, tok, texts, pooling=pooling, layers=layers, progress=False)


def variants(xtr, xte, n: int, m: int) -> dict[str, float]:
    """Held-out accuracies at one layer. xtr ``[2n, H]`` / xte ``[2m, H]``: positives first."""
    from sklearn.linear_model import LogisticRegression
    y, yte, groups = np.r_[np.ones(n), np.zeros(n)], np.r_[np.ones(m), np.zeros(m)], np.r_[np.arange(n), np.arange(n)]
    acc = lambda w, b: float((((xte @ w + b) > 0) == yte).mean())  # noqa: E731
    w, b, C, _ = fit_layer(xtr, y, groups)
    out = {"base": acc(w, b), "pairwise": float(((xte[:m] - xte[m:]) @ w > 0).mean())}
    scale = np.linalg.norm(xtr, axis=1).mean() / np.sqrt(xtr.shape[1])
    d = (xtr[:n] - xtr[n:]) / scale
    wd = LogisticRegression(C=C, fit_intercept=False, max_iter=5000).fit(
        np.r_[d, -d], np.r_[np.ones(n), np.zeros(n)]).coef_[0] / scale
    proj = xtr @ wd
    out["diff"] = acc(wd, -(proj[:n].mean() + proj[n:].mean()) / 2)
    means = (xtr[:n] + xtr[n:]) / 2
    basis = np.linalg.svd(means - means.mean(0), full_matrices=False)[2]
    for k in (4, 16):
        p = basis[:k]
        wk, bk, _, _ = fit_layer(xtr - (xtr @ p.T) @ p, y, groups)
        out[f"proj{k}"] = acc(wk - (wk @ p.T) @ p, bk)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--values", default="all")
    ap.add_argument("--pooling", default="last", choices=["last", "mean"])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--frame", default="none", choices=sorted(FRAMES))
    args = ap.parse_args()
    if args.frame != "none" and args.pooling != "last":
        ap.error("--frame reads each sentence's last token: use it with --pooling last")
    values = VALUE_NAMES if args.values == "all" else [canonical(v) for v in args.values.split(",")]
    model, tok = load_model(args.model)
    layers = list(range(len(decoder_layers(model)) - 5))
    for value in values:
        tr, te = load_pairs(value, "train"), load_pairs(value, "heldout")
        xtr = framed_arrays(model, tok, tr, args.pooling, layers, args.frame).astype(np.float64)
        xte = framed_arrays(model, tok, te, args.pooling, layers, args.frame).astype(np.float64)
        per_layer = [variants(xtr[:, i], xte[:, i], len(tr), len(te)) for i in range(len(layers))]
        best = {k: {"acc": round(max(r[k] for r in per_layer), 4),
                    "layer": layers[int(np.argmax([r[k] for r in per_layer]))]} for k in per_layer[0]}
        print(json.dumps({"value": value, "pooling": args.pooling, "frame": args.frame, **best}),
              flush=True)
