"""Do the value vectors reproduce Schwartz's circle?

Cosine similarity of the ten value vectors at one layer, compared with closeness
on the circle (neighbours close, opposites far): a Spearman correlation over the
45 value pairs with a permutation p-value (values relabelled at random), the
four higher-order groups' within- vs between-group similarity, and a 2-D MDS map.
"""
from __future__ import annotations

import inspect

import numpy as np

from .errors import UsageError
from .probes import middle_layers
from .values import GROUPS, VALUE_NAMES, VALUES, circle_distance

__all__ = ["cosine_matrix", "circle_closeness", "agreement", "group_similarity", "mds_2d",
           "random_baseline", "circle_layer", "value_vectors", "circle_positions",
           "align_to_circle"]


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
    from sklearn.manifold import MDS
    d = np.clip(1 - cos, 0, None)
    np.fill_diagonal(d, 0)
    if "metric_mds" in inspect.signature(MDS).parameters:   # scikit-learn >= 1.8
        mds = MDS(n_components=2, metric="precomputed", init="classical_mds",
                  random_state=seed, n_init=1)
    else:
        mds = MDS(n_components=2, dissimilarity="precomputed", random_state=seed, n_init=4)
    return mds.fit_transform((d + d.T) / 2)


def circle_layer(banks, exclude_last: int = 5) -> int:
    """The layer ``conva-nb circle`` uses by default: among the middle layers
    (:func:`~conva_nb.probes.middle_layers`), the one where the banks' mean selection-twin
    accuracy is highest."""
    mids = middle_layers(banks[0], exclude_last)
    return max(mids, key=lambda l: float(np.mean([b.acc(l) for b in banks])))


def value_vectors(banks, layer: int | None = None) -> tuple[int, np.ndarray]:
    """``(layer, vectors [10, H])``: the unit value vectors of ``banks`` at one layer.

    banks: ten :class:`~conva_nb.probes.ProbeBank` in circle order (``VALUE_NAMES``).
    layer: ``None`` picks :func:`circle_layer`. ValueError if a bank lacks the layer
    or the banks are not the ten values in circle order.
    """
    names = [b.value for b in banks]
    if names != list(VALUE_NAMES):
        raise UsageError(f"need the ten banks in circle order {list(VALUE_NAMES)}, got {names}")
    layer = circle_layer(banks) if layer is None else int(layer)
    for b in banks:
        if layer not in b.layers:
            raise UsageError(f"layer {layer} has no {b.value} probe; probed layers: {b.layers}")
    return layer, np.stack([b.v[b.layers.index(layer)] for b in banks])


def circle_positions() -> np.ndarray:
    """``[10, 2]`` unit-circle coordinates of the values at their circle angles."""
    ang = np.deg2rad([v.angle_deg for v in VALUES])
    return np.c_[np.cos(ang), np.sin(ang)]


def align_to_circle(xy: np.ndarray, target: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Procrustes-align a ``[10, 2]`` map to the circle, for display only.

    Centres ``xy``, then finds the rotation or reflection and the uniform scale that
    bring it closest (least squares) to ``target`` (default :func:`circle_positions`).
    Distances between points keep their ratios, so the map's shape is unchanged.
    Returns ``(aligned [10, 2], disparity)``: disparity is the residual sum of squares
    after alignment relative to ``target``'s (0 = a perfect circle in the right order,
    about 1 = no relation).
    """
    from scipy.linalg import orthogonal_procrustes
    target = circle_positions() if target is None else np.asarray(target, float)
    a = np.asarray(xy, float) - np.mean(xy, axis=0)
    t = target - target.mean(0)
    R, sv = orthogonal_procrustes(a, t)
    scale = sv / (a ** 2).sum() if (a ** 2).sum() > 0 else 0.0
    aligned = scale * a @ R + target.mean(0)
    disparity = float(((aligned - target) ** 2).sum() / (t ** 2).sum())
    return aligned, disparity
