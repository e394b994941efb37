"""Do the value vectors reproduce Schwartz's circle?

Cosine similarity of the ten value vectors at one layer, compared with closeness
on the circle (neighbours close, opposites far): a Spearman correlation over the
45 value pairs with a permutation p-value (values relabelled at random), the
four higher-order groups' within- vs between-group similarity, and a 2-D MDS map.
"""
from __future__ import annotations

import numpy as np

from .values import GROUPS, VALUE_NAMES, circle_distance

__all__ = ["cosine_matrix", "circle_closeness", "agreement", "group_similarity", "mds_2d",
           "random_baseline"]


def cosine_matrix(vectors: np.ndarray, remove_shared: bool = False) -> np.ndarray:
    """``[10, 10]`` cosine similarities of ``vectors`` ``[10, H]``.

    remove_shared: subtract the mean vector first (the direction all values share,
    e.g. "sounds like a value statement"), leaving what tells them apart.
    """
    v = np.asarray(vectors, dtype=np.float64)
    if remove_shared:
        v = v - v.mean(0, keepdims=True)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return v @ v.T


def circle_closeness() -> np.ndarray:
    """``[10, 10]`` closeness on the circle: 5 − steps apart (5 on the diagonal)."""
    return np.array([[5 - circle_distance(a, b) for b in VALUE_NAMES] for a in VALUE_NAMES],
                    dtype=float)


def agreement(cos: np.ndarray, n_perm: int = 10000, seed: int = 0) -> dict:
    """Spearman rho between similarity and circle closeness over the 45 pairs, with a
    one-sided permutation p-value (how often a random relabelling does as well)."""
    from scipy.stats import spearmanr
    iu = np.triu_indices(10, 1)
    close = circle_closeness()
    rho = float(spearmanr(cos[iu], close[iu]).statistic)
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_perm):
        p = rng.permutation(10)
        hits += spearmanr(cos[np.ix_(p, p)][iu], close[iu]).statistic >= rho
    return {"spearman_rho": rho, "p_value": float((hits + 1) / (n_perm + 1)), "n_perm": n_perm}


def group_similarity(cos: np.ndarray) -> dict:
    """Mean cosine within each higher-order group and between groups."""
    idx = {g: [VALUE_NAMES.index(v) for v in vs] for g, vs in GROUPS.items()}
    within = {g: float(np.mean([cos[i, j] for i in ix for j in ix if i < j]))
              for g, ix in idx.items()}
    between = [cos[i, j] for g, ix in idx.items() for h, jx in idx.items() if g < h
               for i in ix for j in jx]
    return {"within": within, "within_mean": float(np.mean(list(within.values()))),
            "between_mean": float(np.mean(between))}


def random_baseline(hidden: int, n: int = 200, seed: int = 0) -> dict:
    """Spread of |cosine| between random directions of this size (what 'unrelated' looks like)."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, hidden))
    c = cosine_matrix(v)[np.triu_indices(n, 1)]
    return {"mean_abs_cos": float(np.abs(c).mean()), "p95_abs_cos": float(np.quantile(np.abs(c), .95))}


def mds_2d(cos: np.ndarray, seed: int = 0) -> np.ndarray:
    """``[10, 2]`` metric MDS of the distances ``1 − cos``."""
    import inspect
    from sklearn.manifold import MDS
    d = np.clip(1 - cos, 0, None)
    np.fill_diagonal(d, 0)
    if "metric_mds" in inspect.signature(MDS).parameters:   # scikit-learn >= 1.8
        mds = MDS(n_components=2, metric="precomputed", init="classical_mds",
                  random_state=seed, n_init=1)
    else:
        mds = MDS(n_components=2, dissimilarity="precomputed", random_state=seed, n_init=4)
    return mds.fit_transform((d + d.T) / 2)
