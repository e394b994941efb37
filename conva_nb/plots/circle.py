"""Chapter 7's figures: value vectors against Schwartz's circle, joint-edit sizes."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from ..values import VALUE_NAMES
from .style import value_palette

__all__ = ["cosine_heatmaps", "circle_map", "agreement_scatter", "agreement_by_layer",
           "joint_edit_sizes"]


def cosine_heatmaps(cos_raw, cos_centred, names=None):
    """Two annotated heatmaps: cosine similarity of the value vectors, raw (left) and with
    the shared component removed (right).

    cos_raw, cos_centred: ``[10, 10]`` matrices in ``names`` order (default: circle order).
    """
    names = list(VALUE_NAMES) if names is None else names
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, c, title in ((axes[0], cos_raw, "raw"), (axes[1], cos_centred, "shared part removed")):
        sns.heatmap(c, ax=ax, vmin=-1, vmax=1, center=0, cmap="vlag", square=True,
                    xticklabels=names, yticklabels=names, annot=True, fmt=".1f",
                    annot_kws={"size": 7}, cbar=ax is axes[1])
        ax.set_title(title)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


def circle_map(aligned, target, disparity: float | None = None):
    """An MDS map (already aligned to the circle) drawn over Schwartz's circle.

    aligned: ``[10, 2]`` map positions (filled dots), target: ``[10, 2]`` circle positions
    (open dots), both in circle order; a line joins each value's two points. disparity:
    shown in the title.
    """
    pal = value_palette()
    fig, ax = plt.subplots(figsize=(6.2, 6.2))
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(t), np.sin(t), color="0.8", lw=1)
    for (x, y), (tx, ty), v in zip(aligned, target, VALUE_NAMES):
        ax.plot([tx, x], [ty, y], color=pal[v], lw=1, alpha=0.6)
        ax.scatter([tx], [ty], marker="o", facecolor="white", edgecolor=pal[v], s=60, zorder=3)
        ax.scatter([x], [y], color=pal[v], s=70, zorder=4)
        ax.annotate(v, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=9)
    ax.set_aspect("equal")
    ax.set(xticks=[], yticks=[], title="MDS of value vectors vs Schwartz's circle"
           + (f" (disparity {disparity:.2f})" if disparity is not None else ""))
    fig.tight_layout()
    return fig


def agreement_scatter(cos, closeness, rho: float, p: float):
    """Similarity of each value pair against its distance on the circle, with the mean
    per distance.

    cos: ``[10, 10]`` cosines; closeness: ``[10, 10]`` circle closeness (5 − steps apart,
    ``circle.circle_closeness()``); rho, p: shown in the title.
    """
    iu = np.triu_indices(cos.shape[0], 1)
    steps = 5 - closeness[iu]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    rng = np.random.default_rng(0)
    ax.scatter(steps + rng.uniform(-0.08, 0.08, len(steps)), cos[iu], alpha=0.7)
    means = [cos[iu][steps == s].mean() for s in range(1, 6)]
    ax.plot(range(1, 6), means, "s-", color="C3", label="mean per distance")
    ax.set(xlabel="steps apart on the circle (1 = neighbours, 5 = opposites)",
           ylabel="cosine similarity", xticks=range(1, 6),
           title=f"Spearman ρ = {rho:.2f}, permutation p = {p:.3f}")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def agreement_by_layer(rhos: dict, acc: dict | None = None):
    """Circle agreement (Spearman ρ) per layer, above the probes' mean held-out accuracy.

    rhos: ``{layer: rho}``; acc: ``{layer: mean held-out accuracy}`` (optional lower panel).
    """
    layers = list(rhos)
    fig, axes = plt.subplots(1 if acc is None else 2, 1, figsize=(7, 3 if acc is None else 5),
                             sharex=True, squeeze=False)
    axes = axes[:, 0]
    axes[0].plot(layers, [rhos[l] for l in layers], "o-")
    axes[0].axhline(0, color="0.6", lw=1)
    axes[0].set(ylabel="Spearman ρ", title="agreement with the circle per layer")
    if acc is not None:
        axes[1].plot(layers, [acc[l] for l in layers], "o-", color="C2")
        axes[1].set(ylabel="mean held-out acc.")
    axes[-1].set_xlabel("layer")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def joint_edit_sizes(stats, p0: float):
    """Horizontal bars: mean ConVA edit relative to ‖e‖ for single- and two-value runs.

    stats: a DataFrame indexed by run name with a column ``"mean edit / ‖e‖"``; a run
    named after a value (``"benevolence (neighbours)"``) gets that value's colour, others
    (the two-value runs) grey. Drawn top to bottom in the DataFrame's order.
    """
    pal = value_palette()
    colours = [pal.get(n.split(" (")[0], "0.35") for n in stats.index]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    ax.barh(stats.index[::-1], stats["mean edit / ‖e‖"][::-1], color=colours[::-1])
    ax.set(xlabel="mean edit relative to the hidden-state norm (steered tokens, mean over "
           "layers)", title=f"single- and two-value steering, P0 = {p0}")
    return fig
