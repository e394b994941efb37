"""Figures for the book: one seaborn/matplotlib style, one function per figure.

Every function returns the matplotlib ``Figure``; the notebook cell that shows it
carries the caption (a ``{glue:figure}`` or a Markdown caption right below).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

from .values import VALUES

__all__ = ["set_style", "value_palette", "PALETTE"]

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
