"""Measuring instruments: fluency, value judges, control success, statistics.

Fluency is never perplexity alone (loops have low perplexity): a response is
fluent when it is non-empty and its perplexity, distinct-2 and repetition rate
all lie within bounds calibrated on the unsteered model's own answers.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["tokens", "distinct_n", "repetition_rate", "perplexities", "FluencyBounds",
           "fluency_rate", "paired_test", "bootstrap_ci", "csr", "ValueJudge"]

_WORD = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def distinct_n(text: str, n: int = 2) -> float:
    """Distinct n-grams ÷ n-grams in one text (1.0 for texts shorter than n)."""
    t = tokens(text)
    grams = [tuple(t[i:i + n]) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of n-grams that already occurred earlier in the text."""
    t = tokens(text)
    grams = [tuple(t[i:i + n]) for i in range(len(t) - n + 1)]
    seen, rep = set(), 0
    for g in grams:
        rep += g in seen
        seen.add(g)
    return rep / len(grams) if grams else 0.0


@torch.no_grad()
def perplexities(model, tokenizer, contexts: list[str], responses: list[str]) -> np.ndarray:
    """Perplexity of each response given its context under ``model`` (run it unsteered)."""
    out = []
    device = model.get_input_embeddings().weight.device
    for ctx, resp in zip(contexts, responses):
        if not resp.strip():
            out.append(float("inf"))
            continue
        c = tokenizer(ctx, return_tensors="pt").input_ids
        r = tokenizer(" " + resp.strip(), add_special_tokens=False, return_tensors="pt").input_ids
        ids = torch.cat([c, r], 1).to(device)
        labels = ids.clone()
        labels[:, : c.shape[1]] = -100
        out.append(math.exp(model(ids, labels=labels).loss.item()))
    return np.array(out)


@dataclass
class FluencyBounds:
    """Per-response bounds taken from the unsteered answers' distribution."""
    max_ppl: float
    min_distinct2: float
    max_repetition: float

    @classmethod
    def calibrate(cls, ppl, texts, q: float = 0.95) -> "FluencyBounds":
        """Bounds that ``q`` of the unsteered answers meet on each measure."""
        d2 = [distinct_n(t, 2) for t in texts]
        rep = [repetition_rate(t) for t in texts]
        finite = np.asarray(ppl)[np.isfinite(ppl)]
        return cls(float(np.quantile(finite, q)), float(np.quantile(d2, 1 - q)),
                   float(np.quantile(rep, q)))

    def fluent(self, ppl: float, text: str) -> bool:
        return (bool(text.strip()) and ppl <= self.max_ppl
                and distinct_n(text, 2) >= self.min_distinct2
                and repetition_rate(text) <= self.max_repetition)


def fluency_rate(bounds: FluencyBounds, ppl, texts) -> float:
    """FR: share of responses within all bounds."""
    return float(np.mean([bounds.fluent(p, t) for p, t in zip(ppl, texts)]))


def csr(scores, threshold: float = 0.5) -> float:
    """Control success rate: share of responses the judge scores as showing the value."""
    return float(np.mean(np.asarray(scores) >= threshold))


def paired_test(a, b) -> dict:
    """Paired t-test of per-prompt scores ``a`` vs ``b`` (scipy), one-sided a > b."""
    from scipy.stats import ttest_rel
    r = ttest_rel(a, b, alternative="greater")
    return {"t": float(r.statistic), "p_value": float(r.pvalue),
            "mean_diff": float(np.mean(np.asarray(a) - np.asarray(b)))}


def bootstrap_ci(x, statistic=np.mean, level: float = 0.95, n: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval (scipy)."""
    from scipy.stats import bootstrap
    r = bootstrap((np.asarray(x, dtype=float),), statistic, confidence_level=level,
                  n_resamples=n, method="percentile", random_state=seed)
    return float(r.confidence_interval.low), float(r.confidence_interval.high)


class ValueJudge:
    """Embedded value judge, independent of the steered model's activations.

    Ten logistic regressions over all-MiniLM-L6-v2 embeddings, trained on Touché23
    (folded to the ten values) plus the positives of the project's held-out
    controlled pairs (their negatives count as not showing that value). ``report_``
    holds its own held-out ROC-AUC per value, so readers know how far to trust it.
    """

    def __init__(self, C: float = 1.0):
        self.C = C

    def fit(self, touche_path, seed: int = 0):
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import train_test_split
        from .datasets import load_pairs, load_touche
        from .gates import ValueDetector, embed
        from .values import VALUE_NAMES
        t = load_touche(touche_path)
        texts, labels = list(t["texts"]), [list(r) for r in t["labels"]]
        for p in load_pairs(split="heldout"):
            j = VALUE_NAMES.index(p["value"])
            texts += [p["positive"], p["negative"]]
            labels += [[int(i == j) for i in range(10)], [0] * 10]
        x, y = embed(texts, batch_size=128), np.array(labels)
        xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=seed)
        held = ValueDetector(C=self.C).fit(None, ytr, embeddings=xtr)
        p = held.predict_proba(embeddings=xte)
        self.report_ = {v: round(float(roc_auc_score(yte[:, j], p[:, j])), 4)
                        for j, v in enumerate(VALUE_NAMES)}
        self.detector_ = ValueDetector(C=self.C).fit(None, y, embeddings=x)
        return self

    def scores(self, texts, value: str) -> np.ndarray:
        """P(response shows ``value``) for each text; empty texts score 0."""
        from .values import VALUE_NAMES, canonical
        j = VALUE_NAMES.index(canonical(value))
        texts = list(texts)
        out = np.zeros(len(texts))
        keep = [i for i, t in enumerate(texts) if t.strip()]
        if keep:
            out[keep] = self.detector_.predict_proba([texts[i] for i in keep])[:, j]
        return out
