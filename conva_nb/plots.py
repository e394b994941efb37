"""Figures for the book: one seaborn/matplotlib style, one function per figure.

Every function returns the matplotlib ``Figure``; the notebook cell that shows it
carries the caption (a ``{glue:figure}`` or a Markdown caption right below).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

from .values import VALUES

__all__ = ["PALETTE", "set_style", "value_palette", "probe_accuracy_heatmaps", "regularisation_effect", "cosine_heatmaps", "circle_map", "agreement_scatter", "edit_profile"]

PALETTE = "colorblind"


def set_style() -> None:
    """The book's single figure style (call once per notebook)."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE,
                  rc={"figure.dpi": 110, "savefig.dpi": 110, "figure.figsize": (7.0, 4.0),
                      "axes.titleweight": "bold", "axes.spines.top": False,
                      "axes.spines.right": False})


def value_palette() -> dict:
    """One fixed colour per value (same colour for a value in every chapter)."""
    colours = sns.color_palette("husl", len(VALUES))
    return {v.name: colours[i] for i, v in enumerate(VALUES)}


# --- chapters 3, 7 and 8 (probing, value circle, playground) ---------------------------

def probe_accuracy_heatmaps(banks, selected: dict | None = None):
    """Held-out (left) and train (right) probe accuracy, value × layer.

    banks: ProbeBanks of the same model; selected: ``{value: [layers]}`` outlined
    in the test panel (e.g. from ``bank.select_layers()``).
    """
    import numpy as np
    from matplotlib.patches import Rectangle
    layers = banks[0].layers
    names = [b.value for b in banks]
    test = np.array([b.test_acc for b in banks])
    train = np.array([b.train_acc for b in banks])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True,
                             gridspec_kw={"width_ratios": [1, 1]})
    for ax, acc, title in ((axes[0], test, "held-out test accuracy"),
                           (axes[1], train, "train accuracy")):
        sns.heatmap(acc, ax=ax, vmin=0.5, vmax=1.0, cmap="viridis", cbar=ax is axes[1],
                    xticklabels=layers, yticklabels=names,
                    cbar_kws={"label": "accuracy"} if ax is axes[1] else None)
        ax.set_title(title)
        ax.set_xlabel("layer")
        ax.tick_params(axis="x", labelsize=8, rotation=0)
    for i, v in enumerate(names):
        for l in (selected or {}).get(v, []):
            axes[0].add_patch(Rectangle((layers.index(l), i), 1, 1, fill=False,
                                        edgecolor="white", lw=1.8))
    fig.tight_layout()
    return fig


def regularisation_effect(Cs, w_norms, edits, test_acc=None, value: str = "", layer=None):
    """‖w‖ and the closed-form edit size for one token against the regularisation C."""
    fig, axes = plt.subplots(1, 2 if test_acc is None else 3, figsize=(12, 3.6))
    axes[0].loglog(Cs, w_norms, "o-")
    axes[0].set(xlabel="C (inverse regularisation)", ylabel="‖w‖", title="probe norm")
    for p0, e in edits.items():
        axes[1].loglog(Cs, e, "o-", label=f"P0 = {p0:g}")
    axes[1].set(xlabel="C (inverse regularisation)", ylabel="edit size ‖δ‖",
                title="edit for one negative example")
    axes[1].legend(frameon=False)
    if test_acc is not None:
        axes[2].semilogx(Cs, test_acc, "o-", color="C2")
        axes[2].set(xlabel="C (inverse regularisation)", ylabel="accuracy", ylim=(0.45, 1.02),
                    title="held-out accuracy")
    if value:
        fig.suptitle(f"{value}, layer {layer}", y=1.02)
    fig.tight_layout()
    return fig


def cosine_heatmaps(cos_raw, cos_centred, names=None):
    """Cosine similarity of the value vectors, raw and with the shared component removed."""
    from .values import VALUE_NAMES
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
    """An MDS map (already aligned to the circle) drawn over Schwartz's circle."""
    import numpy as np
    from .values import VALUE_NAMES
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
    """Similarity of each value pair against its closeness on the circle."""
    import numpy as np
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


def edit_profile(summary: dict, n_layers: int | None = None, title: str = ""):
    """Per-layer steered fraction and mean edit norm from ``SteerStats.summary()``."""
    layers = sorted(summary) if n_layers is None else list(range(n_layers))
    frac = [summary.get(l, {}).get("steered_fraction", 0.0) for l in layers]
    norm = [summary.get(l, {}).get("mean_edit_norm", 0.0) for l in layers]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharex=True)
    axes[0].bar(layers, frac, color="C0")
    axes[0].set(xlabel="layer", ylabel="share of tokens", title="steered fraction", ylim=(0, 1))
    axes[1].bar(layers, norm, color="C1")
    axes[1].set(xlabel="layer", ylabel="‖δ‖", title="mean edit norm (steered tokens)")
    from matplotlib.ticker import MaxNLocator
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title, y=1.02)
    fig.tight_layout()
    return fig
