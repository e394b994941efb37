"""Per-answer measures: text statistics, the fluency rule, control success.

Fluency is never perplexity alone (loops have low perplexity): an answer is fluent when it
is non-empty and its perplexity, distinct-2 and repetition rate all lie within bounds
calibrated on the unsteered model's own answers (:class:`FluencyBounds`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["tokens", "distinct_n", "repetition_rate", "FluencyBounds", "fluency_rate", "csr"]

_WORD = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens."""
    return _WORD.findall(text.lower())


def _ngrams(text: str, n: int) -> list[tuple]:
    t = tokens(text)
    return [tuple(t[i:i + n]) for i in range(len(t) - n + 1)]


def distinct_n(text: str, n: int = 2) -> float:
    """Distinct n-grams ÷ n-grams in one text (1.0 for texts shorter than n)."""
    grams = _ngrams(text, n)
    return len(set(grams)) / len(grams) if grams else 1.0


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of n-grams that already occurred earlier in the text."""
    grams = _ngrams(text, n)
    seen, rep = set(), 0
    for g in grams:
        rep += g in seen
        seen.add(g)
    return rep / len(grams) if grams else 0.0


@dataclass
class FluencyBounds:
    """Per-answer bounds taken from the unsteered answers' distribution."""
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
    """FR: share of answers within all bounds."""
    return float(np.mean([bounds.fluent(p, t) for p, t in zip(ppl, texts)]))


def csr(success) -> float:
    """Control success rate: share of answers a judge decided show the value."""
    return float(np.mean(np.asarray(success, dtype=float)))
