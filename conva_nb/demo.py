"""A short end-to-end run on the embedded model: ``python -m conva_nb.demo``."""
from __future__ import annotations

import numpy as np


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    from .activations import extract
    from .datasets import load_pairs
    from .models import load_model
    from .values import VALUES

    print("Schwartz's values:", ", ".join(v.name for v in VALUES))
    model, tok = load_model("embedded")
    pairs = load_pairs("achievement")
    train = [p for p in pairs if p["split"] == "train"]
    test = [p for p in pairs if p["split"] == "heldout"]
    layer = len(model.model.layers) // 2

    def xy(rows):
        x = extract(model, tok, [r["positive"] for r in rows] + [r["negative"] for r in rows],
                    layers=[layer])[:, 0]
        return x, np.r_[np.ones(len(rows)), np.zeros(len(rows))]

    (xtr, ytr), (xte, yte) = xy(train), xy(test)
    clf = LogisticRegression(C=1e-3, max_iter=5000).fit(xtr, ytr)
    print(f"achievement probe at layer {layer}: held-out accuracy {clf.score(xte, yte):.2f}")


if __name__ == "__main__":
    main()
