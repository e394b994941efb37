"""Chapter 4 and 8's figures: where and how much steering edits."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

__all__ = ["edit_profile", "token_edit_profile", "strength_sweep"]


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
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title, y=1.02)
    fig.tight_layout()
    return fig


def token_edit_profile(edits, title: str = ""):
    """The closed-form edit on each token of one sentence at one layer (Chapter 4).

    edits: a DataFrame, one row per token, with columns ``token``, ``epsilon`` (the
    edit length), ``P before`` and ``P after`` (the probe's probability), e.g. built
    from :func:`conva_nb.token_edits`. Top: ε per token; bottom: P before and after.
    """
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    x = np.arange(len(edits))
    axes[0].bar(x, edits["epsilon"], color="C0")
    axes[0].set_ylabel(r"edit $\epsilon$")
    axes[1].plot(x, edits["P before"], "o-", label="before")
    axes[1].plot(x, edits["P after"], "s--", label="after")
    axes[1].set_ylabel("probe P(value)")
    axes[1].set_ylim(-0.05, 1.05)
    axes[1].legend(loc="lower right")
    axes[1].set_xticks(x, [t.replace("▁", "") for t in edits["token"]], rotation=60,
                       ha="right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def strength_sweep(search):
    """The CSR–fluency trade-off of one value's calibration search (Chapter 4).

    search: a DataFrame, one row per tried setting, with columns ``method``
    (``"conva"``, ``"caa"`` or ``"none"``), ``csr`` and ``fr``; ConVA rows also need
    ``logit`` and ``layer_set``. Draws one line per ConVA layer set (points annotated
    with the target logit), CAA's multipliers as triangles, the unsteered model as a star.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    conva = search[search["method"] == "conva"]
    for name, g in conva.groupby("layer_set"):
        ax.plot(g["fr"], g["csr"], "o-", label=f"ConVA, layers: {name}")
        for _, row in g.iterrows():
            ax.annotate(f"{row['logit']:.1f}", (row["fr"], row["csr"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
    caa = search[search["method"] == "caa"]
    if len(caa):
        ax.plot(caa["fr"], caa["csr"], "^:", label="CAA (multipliers)")
    none = search[search["method"] == "none"]
    if len(none):
        ax.scatter(none["fr"], none["csr"], marker="*", s=150, color="black",
                   label="unsteered", zorder=5)
    ax.set_xlabel("fluency rate (dev prompts)")
    ax.set_ylabel("control success rate (dev prompts)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
