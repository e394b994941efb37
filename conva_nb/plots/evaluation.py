"""Chapter 6's figures: the comparison table's CSR, retention and opposing-prompt CSR."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

__all__ = ["csr_by_value", "retention_heatmap", "opposing_csr"]


def csr_by_value(rows, methods, order):
    """Control success rate per value and method, with its 95 % interval.

    rows: the evaluation table as a DataFrame (columns ``value``, ``method``, ``csr``
    and ``csr_ci``, a ``[low, high]`` pair); methods: the methods in legend order;
    order: the values along the x axis. One group of bars per value.
    """
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        sub = rows[rows["method"] == m].set_index("value").loc[order]
        x = np.arange(len(order)) + (k - (len(methods) - 1) / 2) * width
        err = np.array([sub["csr"] - sub["csr_ci"].str[0], sub["csr_ci"].str[1] - sub["csr"]])
        ax.bar(x, sub["csr"], width, label=m, yerr=err, capsize=2, error_kw={"lw": 0.8})
    ax.set_xticks(np.arange(len(order)), order, rotation=40, ha="right")
    ax.set(ylabel="CSR (test prompts)", ylim=(0, 1.25),   # room for the legend
           yticks=np.linspace(0, 1, 6))
    ax.legend(ncol=3, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def retention_heatmap(retention):
    """Capability retention as a value × method heat map (annotated).

    retention: a DataFrame indexed by value with one column per method.
    """
    fig, ax = plt.subplots(figsize=(8, 3.8))
    sns.heatmap(retention, annot=True, fmt=".2f", cmap="RdYlGn", vmin=0.5, vmax=1.1, ax=ax,
                cbar_kws={"label": "retention"})
    ax.set_ylabel("")
    fig.tight_layout()
    return fig


def opposing_csr(mean_csr):
    """Mean control success on opposing-value prompts, one bar per method.

    mean_csr: a Series indexed by method (the mean over values of each method's CSR).
    """
    fig, ax = plt.subplots(figsize=(7, 3.5))
    mean_csr.plot.bar(ax=ax, color=sns.color_palette()[: len(mean_csr)])
    ax.set_ylabel("mean CSR, opposing prompts")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig
