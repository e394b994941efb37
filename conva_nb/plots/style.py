"""The book's one figure style and colours."""
from __future__ import annotations

import io

import matplotlib.pyplot as plt
import seaborn as sns

from ..values import VALUES

__all__ = ["PALETTE", "set_style", "value_palette", "figure_png"]

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


def figure_png(fig) -> bytes:
    """The figure as PNG bytes (for widgets), closing it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
