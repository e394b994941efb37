"""Figures for the book: one style, one function per figure, grouped by what they show.

Every function returns the matplotlib ``Figure``; the notebook cell that shows it carries
the caption (a Markdown caption right below the figure).

============  =====================================================================
style         the one style and colour set (:func:`set_style`, :func:`value_palette`)
values        Chapter 0: Schwartz's circle
data          Chapters 1–2: context bias, data quality
probing       Chapter 3: probe accuracy, regularisation
steering      Chapters 4 and 8: edits per token and per layer, strength sweeps
gating        Chapter 5: gate scores and open rates
evaluation    Chapter 6: the comparison table's figures
circle        Chapter 7: value vectors against the circle
============  =====================================================================
"""
from . import circle, data, evaluation, gating, probing, steering, style, values
from .circle import *  # noqa: F403
from .data import *  # noqa: F403
from .evaluation import *  # noqa: F403
from .gating import *  # noqa: F403
from .probing import *  # noqa: F403
from .steering import *  # noqa: F403
from .style import *  # noqa: F403
from .values import *  # noqa: F403

__all__ = [*style.__all__, *values.__all__, *data.__all__, *probing.__all__,
           *steering.__all__, *gating.__all__, *evaluation.__all__, *circle.__all__]
