"""Calibrated per-value settings for one model, as a small JSON file.

The embedded model's file ships with the package (``conva_nb/settings/embedded.json``,
written by ``conva-nb calibrate --value all``); any other model gets its own file in
the cache when someone calibrates it. Without a file, :data:`DEFAULTS` apply.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .methods import MethodConfig
from .models import EMBEDDED_IDENTITY, cache_dir, model_identity
from .values import canonical

__all__ = ["DEFAULTS", "settings_path", "load_settings", "save_settings", "config_for",
           "evaluation_path", "load_evaluation"]

DEFAULTS = {"conva": {"logit": 4.595, "layers": None, "positions": "all"},
            "caa": {"multiplier": 0.5, "layers": None},
            "ica": {"ica_style": "definition"},
            "g0": 0.5}
SHIPPED = Path(__file__).parent / "settings"


def settings_path(model_or_id) -> Path:
    """Where the settings of this model live (shipped for the embedded model)."""
    mid = model_or_id if isinstance(model_or_id, str) else model_identity(model_or_id)
    if mid == EMBEDDED_IDENTITY:
        return SHIPPED / "embedded.json"
    return cache_dir() / "settings" / f"{hashlib.sha256(mid.encode()).hexdigest()[:16]}.json"


def load_settings(model_or_id, path=None) -> dict:
    """The calibrated settings (``{"model_id", "values": {v: {...}}, ...}``) or defaults."""
    mid = model_or_id if isinstance(model_or_id, str) else model_identity(model_or_id)
    p = Path(path) if path else settings_path(mid)
    if p.is_file():
        s = json.loads(p.read_text())
        if s.get("model_id") != mid:
            raise ValueError(f"{p}: settings calibrated for {s.get('model_id')!r}, not {mid!r}; "
                             "run conva-nb calibrate for this model or pass its own file")
        s["path"] = str(p.resolve())
        return s
    return {"model_id": mid, "calibrated": False, "values": {}, "path": None}


def save_settings(settings: dict, path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    out = {k: v for k, v in settings.items() if k != "path"}
    p.write_text(json.dumps(out, indent=1, default=float) + "\n")
    return p.resolve()


def config_for(settings: dict, method: str, value: str, **override) -> MethodConfig:
    """The :class:`MethodConfig` of ``method`` for ``value`` under ``settings``."""
    value = canonical(value)
    per = settings.get("values", {}).get(value, {})
    conva = {**DEFAULTS["conva"], **per.get("conva", {})}
    caa = {**DEFAULTS["caa"], **per.get("caa", {})}
    ica = {**DEFAULTS["ica"], **per.get("ica", {})}
    kw = {"logit": conva["logit"], "positions": conva["positions"],
          "ica_style": ica["ica_style"], "multiplier": caa["multiplier"],
          "g0": per.get("g0", DEFAULTS["g0"])}
    layers = caa["layers"] if method == "caa" else conva["layers"]
    kw["layers"] = tuple(layers) if layers else None
    kw.update(override)
    return MethodConfig(method=method, value=value, **kw)



def evaluation_path(model_or_id) -> Path:
    """Where a full ``conva-nb evaluate`` run of this model is kept (shipped for embedded)."""
    p = settings_path(model_or_id)
    return p.with_name(p.stem + ".evaluation.json")


def load_evaluation(model_or_id) -> dict | None:
    """The saved full evaluation of this model (``None`` if it was never run)."""
    mid = model_or_id if isinstance(model_or_id, str) else model_identity(model_or_id)
    p = evaluation_path(mid)
    if not p.is_file():
        return None
    doc = json.loads(p.read_text())
    if doc.get("model_id") != mid:
        raise ValueError(f"{p}: evaluation of {doc.get('model_id')!r}, not {mid!r}")
    return doc
