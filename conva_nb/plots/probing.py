"""Chapter 3's figures: probe accuracy per layer, the effect of regularisation."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.patches import Rectangle

__all__ = ["probe_accuracy_heatmaps", "regularisation_effect"]


def probe_accuracy_heatmaps(banks, selected: dict | None = None):
    """Held-out (left) and train (right) probe accuracy as value × layer heatmaps.

    banks: ProbeBanks of one model (one row each, in the order given; all with the same
    ``layers``); selected: ``{value: [layers]}`` outlined in white in the held-out panel
    (e.g. from ``bank.select_layers()``).
    """
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


def regularisation_effect(Cs, w_norms, edits, test_acc=None, value: str = "", layer=None,
                          chosen_C: float | None = None):
    """Probe norm ‖w‖, closed-form edit size and (optionally) held-out accuracy against C.

    Cs, w_norms, test_acc: one number per refit (same length); edits: ``{P0: [edit per
    C]}``, one line each in the middle panel. value, layer: for the title. chosen_C: the C
    the bank's cross-validation picked, marked by a dashed line in the first two panels.
    """
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
    if chosen_C is not None:
        for ax in axes[:2]:
            ax.axvline(chosen_C, color="0.5", ls="--", lw=1)
    if value:
        fig.suptitle(f"{value}, layer {layer}", y=1.02)
    fig.tight_layout()
    return fig
