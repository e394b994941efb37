"""Chapter 5's figures: the value detector, gate scores and capability retention."""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

from .style import value_palette

__all__ = ["detector_auc", "gate_scores", "capability_retention"]


def detector_auc(auc, ref: float = 0.75):
    """The value detector's cross-validated ROC-AUC, one bar per value.

    auc: a Series indexed by value name (e.g. ``pd.Series(detector.cv_auc_)``);
    ref: a dashed reference line.
    """
    pal = value_palette()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.barplot(x=auc.index, y=auc.values, hue=auc.index, palette=pal, legend=False, ax=ax)
    ax.axhline(ref, ls="--", color="grey", lw=1)
    ax.set_ylim(0.5, 1)
    ax.set(xlabel="", ylabel="5-fold ROC-AUC")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def gate_scores(scores, g0: float, value: str):
    """Distributions of the gate's scores per group of prompts, with the threshold.

    scores: a DataFrame with columns ``score`` (the detector's P(value | prompt)) and
    ``prompts`` (the group's name); g0: the gate threshold (dashed line); value: the
    value, for the axis label. Log-scaled score axis, one step histogram per group.
    """
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.histplot(scores, x="score", hue="prompts", stat="density", common_norm=False,
                 bins=30, element="step", ax=ax, log_scale=(True, False))
    ax.axvline(g0, color="black", ls="--", lw=1)
    ax.set_xlabel(f"detector P({value} | prompt)  (log scale)")
    fig.tight_layout()
    return fig


def capability_retention(table):
    """Capability retention per method (a line at 1 = the unsteered model's accuracy).

    table: a DataFrame with columns ``method`` and ``retention`` (steered ÷ unsteered
    multiple-choice accuracy), one row per method (rows of several values are averaged
    by seaborn's bar, with its confidence interval).
    """
    fig, ax = plt.subplots(figsize=(5, 3.5))
    sns.barplot(table, x="method", y="retention", ax=ax, color="C0")
    ax.axhline(1.0, color="black", lw=1)
    ax.set_ylim(0, 1.15)
    fig.tight_layout()
    return fig
