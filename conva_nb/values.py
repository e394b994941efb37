"""Schwartz's ten basic human values: names, definitions, circle geometry, groups.

Definitions follow Schwartz (1992, 2012). The circle order is the usual one
(self-direction next to universalism and stimulation); the ten values are
placed at equal 36-degree steps, so the value opposite index ``i`` is ``i + 5``.
Tradition and conformity share one wedge in Schwartz's drawing; equal steps
keep them neighbours, which is what the analyses use.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Value", "VALUES", "VALUE_NAMES", "GROUPS", "get_value", "canonical",
           "opposite", "circle_distance"]


@dataclass(frozen=True)
class Value:
    name: str
    definition: str
    angle_deg: float
    group: str


_DEFS = [
    ("self-direction", "Independent thought and action: choosing, creating, exploring.",
     "openness to change"),
    ("stimulation", "Excitement, novelty and challenge in life.", "openness to change"),
    ("hedonism", "Pleasure and sensuous gratification for oneself.", "openness to change"),
    ("achievement", "Personal success through demonstrating competence according to social standards.",
     "self-enhancement"),
    ("power", "Social status and prestige, control or dominance over people and resources.",
     "self-enhancement"),
    ("security", "Safety, harmony and stability of society, of relationships, and of self.",
     "conservation"),
    ("conformity", "Restraint of actions, inclinations and impulses likely to upset or harm others "
     "and violate social expectations or norms.", "conservation"),
    ("tradition", "Respect, commitment and acceptance of the customs and ideas that one's culture "
     "or religion provides.", "conservation"),
    ("benevolence", "Preserving and enhancing the welfare of those with whom one is in frequent "
     "personal contact.", "self-transcendence"),
    ("universalism", "Understanding, appreciation, tolerance and protection for the welfare of all "
     "people and for nature.", "self-transcendence"),
]

VALUES: tuple[Value, ...] = tuple(
    Value(name, definition, 36.0 * i, group) for i, (name, definition, group) in enumerate(_DEFS)
)
VALUE_NAMES: tuple[str, ...] = tuple(v.name for v in VALUES)
GROUPS: dict[str, tuple[str, ...]] = {}
for _v in VALUES:
    GROUPS.setdefault(_v.group, ())
    GROUPS[_v.group] += (_v.name,)

_BY_KEY = {re.sub(r"[-_\s]+", "", v.name): v for v in VALUES}


def canonical(name: str) -> str:
    """Return the canonical value name; tolerant of case and '-', '_' or spaces.

    Raises ValueError naming the valid values for anything else.
    """
    key = re.sub(r"[-_\s]+", "", str(name)).lower()
    if key not in _BY_KEY:
        raise ValueError(f"unknown value {name!r}; valid values are: {', '.join(VALUE_NAMES)}")
    return _BY_KEY[key].name


def get_value(name: str) -> Value:
    """The :class:`Value` called ``name`` (see :func:`canonical`)."""
    return _BY_KEY[re.sub(r"[-_\s]+", "", canonical(name))]


def opposite(name: str) -> str:
    """The value across the circle (five steps away)."""
    i = VALUE_NAMES.index(canonical(name))
    return VALUE_NAMES[(i + 5) % 10]


def circle_distance(a: str, b: str) -> int:
    """Steps between two values around the circle, 0..5."""
    d = abs(VALUE_NAMES.index(canonical(a)) - VALUE_NAMES.index(canonical(b)))
    return min(d, 10 - d)
