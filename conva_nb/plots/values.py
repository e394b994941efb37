"""Chapter 0's figures: Schwartz's circle of ten basic values."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..values import GROUPS, VALUES
from .style import value_palette

__all__ = ["value_circle"]


def value_circle(values=None, groups: dict | None = None):
    """Schwartz's circle: one wedge per value, shaded by its higher-order group, a dot
    and a label per value (angle 0 at the top, clockwise) and each group's name at the
    mean angle of its members.

    values: ``Value`` records with ``name``, ``group`` and ``angle_deg`` (default: the
    package's ``VALUES``); groups: ``{group: (value names, ...)}`` (default ``GROUPS``).
    """
    values = list(VALUES if values is None else values)
    groups = GROUPS if groups is None else groups
    palette = value_palette()
    group_colours = dict(zip(groups, plt.get_cmap("Pastel2").colors))
    fig, ax = plt.subplots(figsize=(6.2, 6.2))
    ax.set_aspect("equal")
    ax.axis("off")
    step = 360 / len(values)
    for v in values:  # one wedge per value, coloured by its higher-order group
        theta = np.deg2rad(np.linspace(v.angle_deg - step / 2, v.angle_deg + step / 2, 30))
        ax.fill(np.r_[0, np.sin(theta), 0], np.r_[0, np.cos(theta), 0],
                color=group_colours[v.group], lw=0)
    for v in values:  # a dot and a label per value
        a = np.deg2rad(v.angle_deg)
        ax.scatter(0.78 * np.sin(a), 0.78 * np.cos(a), s=140, color=palette[v.name],
                   edgecolor="black", zorder=3)
        ax.text(1.08 * np.sin(a), 1.08 * np.cos(a), v.name, ha="center", va="center",
                fontsize=10)
    for group, names in groups.items():  # group label at the mean angle of its members
        a = np.deg2rad(np.mean([v.angle_deg for v in values if v.name in names]))
        ax.text(0.42 * np.sin(a), 0.42 * np.cos(a),
                group.replace(" ", "\n").replace("-", "-\n"),
                ha="center", va="center", fontsize=9, style="italic")
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="grey"))
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-1.3, 1.3)
    ax.set_title("Schwartz's circle of ten basic values")
    return fig
