"""The compared methods, one registry entry each.

A :class:`Method` declares everything the rest of the package asks of a method: its
default configuration and calibration grid, which probe data it needs, whether the value
gate applies, how it rewrites the question (ICA) and how it builds its edit operator
(CAA, ConVA). The CLI's ``--method`` choices, the settings defaults, the calibration
loops, the runner's bank lookup, the summary's baselines and the book's method lists all
read :data:`METHODS`; a new method is one :func:`register` call.

A gated method and its ungated twin share a ``steer_id``: the runner generates the
ungated steering once and composes the gated rows from it (open rows) and from the
unsteered model (closed rows), which is exact because a closed row's hooks are a no-op.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable

from .datasets import load_pairs
from .errors import UsageError
from .operators import caa_shift, caa_vector, closed_form
from .probes import get_bank, pair_arrays
from .prompting import ICA_STYLES, ica_question, question_of
from .steering import Steerer
from .values import canonical

__all__ = ["Method", "MethodConfig", "GridPoint", "METHODS", "register", "unregister",
           "get_method", "method_names", "baselines", "steering_context", "question_for",
           "layer_band", "caa_for"]


@dataclass(frozen=True)
class GridPoint:
    """One calibration setting: ``params`` for the method, ``meta`` for the search log
    (``strength`` breaks ties toward the weakest setting; ``layer_set`` names the rule)."""
    params: dict
    strength: float = 0.0
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """One compared method.

    role: ``reference`` (unsteered), ``baseline``, ``conva`` (the paper's method),
    ``ablation`` or ``extension``. settings_key: the entry of a value's calibrated
    settings it reads (methods that differ only in the gate share one). defaults: its
    parameters before calibration. key_fields: the parameters that change its outputs
    (cache keys). steer_id: the name its generations are cached under (default: name).
    probe_data: ``None``, ``"controlled"`` or ``"naive"``. gated: the value gate decides
    per prompt whether it applies. opposing: also evaluated on opposing-value prompts.
    build: ``(model, tokenizer, cfg, bank) -> EditOperator``. rewrite: ``(cfg, question)
    -> question``. grid: ``(bank) -> [GridPoint]``, weakest first.
    """
    name: str
    label: str
    role: str
    settings_key: str | None = None
    defaults: dict = field(default_factory=dict)
    key_fields: tuple = ()
    steer_id: str | None = None
    probe_data: str | None = None
    gated: bool = False
    opposing: bool = False
    build: Callable | None = None
    rewrite: Callable | None = None
    grid: Callable | None = None

    @property
    def steers(self) -> bool:
        """Whether it edits activations (and so has hooks to gate)."""
        return self.build is not None

    @property
    def cache_name(self) -> str:
        return self.steer_id or self.name


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the registry (its name must be new)."""
    if method.name in METHODS:
        raise UsageError(f"a method called {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    METHODS.pop(name, None)


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name]


def baselines() -> list[str]:
    """The baseline methods ConVA is compared against."""
    return [m.name for m in METHODS.values() if m.role == "baseline"]


def _norm(v):
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, (list, tuple)):
        return tuple(int(x) for x in v)
    return v


class MethodConfig:
    """Everything that decides a method's output for one value: ``method``, ``value`` and
    its ``params`` (read-only; ``cfg["logit"]``). Layers are kept as a tuple or ``None``
    (the bank's selection rule)."""

    __slots__ = ("method", "value", "params")

    def __init__(self, method: str, value: str, params: dict | None = None, **kw):
        m = get_method(method)
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "value", canonical(value))
        p = {**m.defaults, **(params or {}), **kw}
        p = {k: (tuple(int(x) for x in v) if k == "layers" and v is not None else v)
             for k, v in p.items()}
        object.__setattr__(self, "params", MappingProxyType(p))

    def __setattr__(self, *_):
        raise AttributeError("MethodConfig is read-only; make a new one with replace()")

    def __getitem__(self, k):
        return self.params[k]

    def get(self, k, default=None):
        return self.params.get(k, default)

    @property
    def spec(self) -> Method:
        return get_method(self.method)

    def replace(self, **params) -> "MethodConfig":
        return MethodConfig(self.method, self.value, {**self.params, **params})

    def key(self) -> dict:
        """The fields that change this method's generations (for caching): a gated
        method's key names the generations it shares (``steer_id``)."""
        return {**self.describe(), "method": self.spec.cache_name}

    def describe(self) -> dict:
        """The method's name and the parameters that change its outputs (for tables)."""
        m = self.spec
        if m.build is None and m.rewrite is None:
            return {"method": self.method}
        return {"method": self.method, "value": self.value,
                **{k: _norm(self.params.get(k)) for k in m.key_fields}}

    def __eq__(self, other):
        return isinstance(other, MethodConfig) and (self.method, self.value, dict(self.params)) \
            == (other.method, other.value, dict(other.params))

    def __hash__(self):
        return hash((self.method, self.value, repr(sorted(self.params.items()))))

    def __repr__(self):
        return f"MethodConfig({self.method!r}, {self.value!r}, {dict(self.params)})"


def question_for(cfg: MethodConfig, question: str) -> str:
    """What the model is asked: the question, or the method's rewrite of it (ICA)."""
    rewrite = cfg.spec.rewrite
    return rewrite(cfg, question) if rewrite else question


def caa_for(model, tokenizer, value: str, layers):
    """CAA vectors at ``layers`` from the controlled training twins (cached activations)."""
    x, y, _ = pair_arrays(model, tokenizer, load_pairs(value, "train"), progress=False)
    return caa_vector(x, y, value, list(layers))


def steering_context(model, tokenizer, cfg: MethodConfig, gate=None, bank=None):
    """The context manager that applies ``cfg`` (a null context for methods that do not
    steer). gate: applied inside the hooks when the method is gated (``None``: always on).
    bank: the probe bank of the method's ``probe_data`` (default: :func:`get_bank`)."""
    m = cfg.spec
    if not m.steers:
        return contextlib.nullcontext()
    if bank is None and m.probe_data:
        bank = get_bank(model, tokenizer, cfg.value, data=m.probe_data, progress=False)
    edit = m.build(model, tokenizer, cfg, bank)
    return Steerer(model, edit, gate=gate if m.gated else None, tokenizer=tokenizer,
                   positions=cfg.get("positions", "all"), gate_text=question_of)


def layer_band(bank, width: int, exclude_last: int = 5) -> tuple:
    """``width`` contiguous allowed layers centred on the most accurate one."""
    allowed = [l for l in bank.layers if l < bank.n_layers - exclude_last]
    best = bank.best_layer(allowed)
    lo = max(allowed[0], min(best - width // 2, allowed[-1] - width + 1))
    return tuple(l for l in range(lo, lo + width) if l in allowed)


# --- the registered methods -----------------------------------------------------------------

# Grids of comparable size (four or five settings each), weakest first.
LOGIT_GRID = (4.595, 10.0, 14.0)    # P0 = 0.99 (the paper's default), 0.99995, 1 − 8e-7
BAND_LOGITS = (4.595, 10.0)          # the 3-layer band at the two weaker strengths
CAA_GRID = (0.01, 0.025, 0.05, 0.1)  # × the layer's mean hidden-state norm; the embedded
                                     # model's fluency cliff lies between 0.05 and 0.1
ICA_GRID = ("short", "definition", "persona")


def _conva_grid(bank) -> list[GridPoint]:
    rule = tuple(bank.select_layers())
    sets = {"rule": rule, "band3": layer_band(bank, 3)}
    out = []
    for name, layers in sets.items():
        if name != "rule" and layers == rule:
            continue
        for t in (LOGIT_GRID if name == "rule" else BAND_LOGITS):
            out.append(GridPoint({"logit": float(t), "layers": layers, "positions": "all"},
                                 strength=float(t) * len(layers), meta={"layer_set": name}))
    return out


def _caa_grid(bank) -> list[GridPoint]:
    layers = tuple(bank.select_layers())
    return [GridPoint({"multiplier": m, "layers": layers}, strength=m) for m in CAA_GRID]


def _ica_grid(bank) -> list[GridPoint]:
    return [GridPoint({"ica_style": s}) for s in ICA_GRID]


def _build_conva(model, tokenizer, cfg, bank):
    return closed_form(bank, p0=None, logit=cfg["logit"], rule="token",
                       layers=list(cfg["layers"]) if cfg["layers"] else None)


def _build_caa(model, tokenizer, cfg, bank):
    layers = cfg["layers"] or tuple(bank.select_layers())
    return caa_shift(caa_for(model, tokenizer, cfg.value, layers), cfg["multiplier"])


def _rewrite_ica(cfg, question):
    return ica_question(cfg.value, question, cfg["ica_style"])


assert set(ICA_GRID) <= set(ICA_STYLES)
_CONVA = dict(settings_key="conva", defaults={"logit": 4.595, "layers": None, "positions": "all"},
              key_fields=("logit", "layers", "positions"), build=_build_conva, grid=_conva_grid)

register(Method("none", "unsteered", "reference", opposing=True))
register(Method("ica", "ICA (prompting)", "baseline", settings_key="ica",
                defaults={"ica_style": "definition"}, key_fields=("ica_style",),
                rewrite=_rewrite_ica, grid=_ica_grid, opposing=True))
register(Method("caa", "CAA", "baseline", settings_key="caa",
                defaults={"multiplier": 0.5, "layers": None}, key_fields=("multiplier", "layers"),
                probe_data="controlled", build=_build_caa, grid=_caa_grid, opposing=True))
register(Method("conva-naive", "ConVA w/o CCD", "ablation", probe_data="naive", gated=True,
                **{**_CONVA, "settings_key": "conva-naive"}))
register(Method("conva-nogate", "ConVA w/o gate", "ablation", probe_data="controlled", **_CONVA))
register(Method("conva", "ConVA", "conva", probe_data="controlled", gated=True,
                steer_id="conva-nogate", opposing=True, **_CONVA))
