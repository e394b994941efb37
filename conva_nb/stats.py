"""Statistics for the comparison table: intervals, paired tests, multiplicity correction.

Every per-prompt outcome is a 0/1 vector over the same prompts (success, fluent success),
so methods are compared *paired*: the bootstrap resamples prompts, not answers, and the
test is exact McNemar (a one-sided binomial test on the discordant prompts). p-values of
one comparison across the ten values are corrected with Holm–Bonferroni.
"""
from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_ci", "paired_bootstrap_ci", "mcnemar_p", "holm", "paired_test",
           "BOOTSTRAP_N"]

BOOTSTRAP_N = 4000


def bootstrap_ci(x, statistic=np.mean, level: float = 0.95, n: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(x)`` over resampled items (scipy)."""
    from scipy.stats import bootstrap
    r = bootstrap((np.asarray(x, dtype=float),), statistic, confidence_level=level,
                  n_resamples=n, method="percentile", random_state=seed)
    return float(r.confidence_interval.low), float(r.confidence_interval.high)


def paired_bootstrap_ci(a, b, level: float = 0.95, n: int = BOOTSTRAP_N, seed: int = 0,
                        ratio: bool = False) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(a) - mean(b)`` (``ratio``: ``mean(a) /
    mean(b)``), resampling the *pairs* (``a[i]`` and ``b[i]`` are two methods' outcomes on
    item ``i``)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes need equal shapes, got {a.shape} and {b.shape}")
    if a.size == 0:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, a.size, size=(n, a.size))
    ma, mb = a[idx].mean(1), b[idx].mean(1)
    stat = ma / np.maximum(mb, 1e-9) if ratio else ma - mb
    lo = (1 - level) / 2
    return float(np.quantile(stat, lo)), float(np.quantile(stat, 1 - lo))


def mcnemar_p(a, b) -> float:
    """Exact one-sided McNemar p-value that 0/1 outcomes ``a`` succeed more often than
    ``b`` on the same prompts: binomial test of the discordant prompts (scipy)."""
    from scipy.stats import binomtest
    a, b = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    wins, losses = int((a & ~b).sum()), int((~a & b).sum())
    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)


def holm(pvalues) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order (NaN stays NaN).

    Sorted ascending, the k-th of m p-values becomes ``max_{j<=k} min(1, (m - j) p_(j))``
    (j from 0); reject where the adjusted value is below the family's alpha.
    """
    p = np.asarray(pvalues, dtype=float)
    ok = ~np.isnan(p)
    out = np.full(p.shape, np.nan)
    q = p[ok]
    m = q.size
    order = np.argsort(q, kind="stable")
    adj = np.minimum(1.0, (m - np.arange(m)) * q[order])
    adj = np.maximum.accumulate(adj)
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out.tolist()


def paired_test(a, b) -> dict:
    """Paired one-sided t-test of per-prompt scores ``a > b`` (scipy), for judge scores."""
    from scipy.stats import ttest_rel
    r = ttest_rel(a, b, alternative="greater")
    return {"t": float(r.statistic), "p_value": float(r.pvalue),
            "mean_diff": float(np.mean(np.asarray(a) - np.asarray(b)))}
