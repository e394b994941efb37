"""Chapters 1 and 2's figures: context bias of naive data, quality of the twins."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .style import value_palette

__all__ = ["bow_top_words", "bow_accuracy", "naive_probe_transfer", "data_quality"]


def bow_top_words(words: dict):
    """The words with the largest coefficients of each value's bag-of-words classifier,
    one horizontal bar panel per value (five panels a row), the largest on top.

    words: ``{value: pd.Series}``, each indexed by word with the coefficient as value,
    sorted from the largest coefficient down.
    """
    palette = value_palette()
    n = len(words)
    ncols = min(5, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(13, 2.6 * nrows), squeeze=False)
    for ax, (v, coef) in zip(axes.flat, words.items()):
        ax.barh(coef.index[::-1], coef.to_numpy()[::-1], color=palette[v])
        ax.set_title(v, fontsize=10)
        ax.tick_params(axis="y", labelsize=9)
        ax.tick_params(axis="x", labelsize=8)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.supxlabel("logistic-regression coefficient (bag of words, naive pairs)")
    fig.tight_layout()
    return fig


def bow_accuracy(bow: pd.DataFrame):
    """Bag-of-words accuracy per value, one bar per setting, with chance as a dashed line.

    bow: one row per value (the index, named ``value``), one column per setting
    (e.g. ``"naive CV accuracy"``), accuracies in [0, 1].
    """
    long = bow.reset_index().melt(id_vars="value", var_name="setting",
                                  value_name="accuracy")
    fig, ax = plt.subplots(figsize=(10, 4))
    sns.barplot(data=long, x="value", y="accuracy", hue="setting", ax=ax)
    ax.axhline(0.5, color="black", ls="--", lw=1, label="chance")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=4, fontsize=9)
    return fig


def naive_probe_transfer(probe_acc: pd.DataFrame):
    """Per-layer probe accuracy, one panel per value, one line per evaluation set, with
    chance as a dashed line.

    probe_acc: long table with columns ``value``, ``layer`` and one accuracy column per
    evaluation set (e.g. ``"naive test split"``, ``"controlled twins"``).
    """
    long = probe_acc.melt(id_vars=["value", "layer"], var_name="evaluated on",
                          value_name="accuracy")
    g = sns.relplot(data=long, x="layer", y="accuracy", hue="evaluated on", col="value",
                    col_wrap=probe_acc["value"].nunique(), kind="line", marker="o",
                    height=3.0, aspect=1.0)
    for ax in g.axes.flat:
        ax.axhline(0.5, color="black", ls="--", lw=1)
        ax.set_ylim(0.3, 1.05)
    g.set_titles("{col_name}")
    return g.figure


def data_quality(quality: pd.DataFrame, bounds: dict):
    """Negation gap, length gap (tokens) and twin Jaccard overlap per value, one bar
    panel each, with the enforced bound as a dashed line where there is one.

    quality: one row per value (the index) with columns ``negation_gap``,
    ``length_gap_tokens`` and ``twin_jaccard``; bounds: ``check_data``'s ``BOUNDS``
    (uses ``max_negation_gap`` and ``max_length_gap_tokens``).
    """
    palette = value_palette()
    panels = [("negation_gap", "negation gap", bounds["max_negation_gap"]),
              ("length_gap_tokens", "length gap (tokens)", bounds["max_length_gap_tokens"]),
              ("twin_jaccard", "twin Jaccard overlap", None)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, (col, label, bound) in zip(axes, panels):
        sns.barplot(x=quality[col].astype(float), y=quality.index, hue=quality.index,
                    palette=palette, legend=False, ax=ax)
        if bound is not None:
            ax.axvline(bound, color="crimson", ls="--", lw=1.5, label="bound")
            ax.legend(loc="lower right", fontsize=9)
        ax.set_xlabel(label)
        ax.set_ylabel("")
    fig.tight_layout()
    return fig
