"""The compared methods, built the same way for the runner, the CLI and the book.

A method turns a question into the text the model sees (ICA adds an instruction)
and supplies a context manager around generation (CAA and ConVA install hooks).
Every method uses the same prompt frame and decoding (``prompting.GEN_DEFAULTS``).

=============  ==========================================================
none           the unsteered model
ica            in-context alignment: an instruction naming the value
caa            mean-difference vector × fixed multiplier, every token
conva-naive    ConVA with probes trained on the naive (context-biased) pairs
conva-nogate   ConVA with every row steered (the gate ablation)
conva          ConVA: controlled-data probes, closed-form shift, value gate
=============  ==========================================================
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field

import numpy as np

from .prompting import ica_question, question_of
from .values import canonical

__all__ = ["METHODS", "GATED", "MethodConfig", "question_for", "steering_context", "caa_for"]

METHODS = ("none", "ica", "caa", "conva-naive", "conva-nogate", "conva")
GATED = ("conva", "conva-naive")


@dataclass(frozen=True)
class MethodConfig:
    """Everything that decides a method's output for one value (hashable, JSON-able).

    logit: the probe's target logit (``logit(P0)``; 4.6 = P0 0.99). layers: decoder
    layers to steer (``None``: the bank's selection rule). multiplier: CAA strength in
    units of the layer's mean activation norm. ica_style: see ``prompting.ICA_STYLES``.
    """
    method: str
    value: str
    logit: float = 4.595
    layers: tuple | None = None
    positions: str = "all"
    multiplier: float = 0.5
    ica_style: str = "definition"
    g0: float = 0.5
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        object.__setattr__(self, "value", canonical(self.value))
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(l) for l in self.layers))

    def key(self) -> dict:
        """The fields that change this method's generations (for caching)."""
        if self.method == "none":
            return {"method": "none"}
        d = {"method": self.method, "value": self.value}
        if self.method == "ica":
            d["ica_style"] = self.ica_style
        elif self.method == "caa":
            d.update(multiplier=self.multiplier, layers=self.layers)
        elif self.method != "none":
            d.update(logit=round(self.logit, 4), layers=self.layers, positions=self.positions)
        return d

    def ungated(self) -> "MethodConfig":
        """What an open gate runs: the same steering with every row on."""
        if self.method == "conva":
            return MethodConfig(**{**asdict(self), "method": "conva-nogate"})
        if self.method == "conva-naive":
            return MethodConfig(**{**asdict(self), "extra": {**self.extra, "always_on": True}})
        return self


def question_for(cfg: MethodConfig, question: str) -> str:
    return ica_question(cfg.value, question, cfg.ica_style) if cfg.method == "ica" else question


def caa_for(model, tokenizer, value: str, layers):
    """CAA vectors at ``layers`` from the controlled training twins (cached activations)."""
    from .datasets import load_pairs
    from .probes import pair_arrays
    from .steering import caa_vector
    x, y, _ = pair_arrays(model, tokenizer, load_pairs(value, "train"), progress=False)
    return caa_vector(x, y, value, list(layers))


def steering_context(model, tokenizer, cfg: MethodConfig, gate=None, banks=None):
    """The context manager that applies ``cfg`` (a null context for none/ICA).

    gate: used by ``conva`` and ``conva-naive`` (``None`` = always on). banks: optional
    ``{"controlled": bank, "naive": bank}`` to skip the on-disk cache lookup.
    """
    from .probes import get_bank
    from .steering import steer
    banks = banks or {}
    if cfg.method in ("none", "ica"):
        return contextlib.nullcontext()
    if cfg.method == "caa":
        bank = banks.get("controlled") or get_bank(model, tokenizer, cfg.value, progress=False)
        layers = cfg.layers or tuple(bank.select_layers())
        return steer(model, None, caa=caa_for(model, tokenizer, cfg.value, layers),
                     multiplier=cfg.multiplier, tokenizer=tokenizer)
    data = "naive" if cfg.method == "conva-naive" else "controlled"
    bank = banks.get(data) or get_bank(model, tokenizer, cfg.value, data=data, progress=False)
    use_gate = gate if cfg.method in GATED and not cfg.extra.get("always_on") else None
    return steer(model, bank, p0=None, logit=cfg.logit, tokenizer=tokenizer,
                 layers=list(cfg.layers) if cfg.layers else None, positions=cfg.positions,
                 gate=use_gate, gate_text=question_of)


def layer_band(bank, width: int, min_acc: float = 0.0, exclude_last: int = 5) -> tuple:
    """``width`` contiguous allowed layers centred on the most accurate one."""
    allowed = [l for l in bank.layers if l < bank.n_layers - exclude_last]
    best = max(allowed, key=lambda l: bank.test_acc[bank.layers.index(l)])
    lo = max(allowed[0], min(best - width // 2, allowed[-1] - width + 1))
    return tuple(l for l in range(lo, lo + width) if l in allowed)


def logit_of(p0: float) -> float:
    return float(np.log(p0 / (1 - p0)))
