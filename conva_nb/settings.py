"""Calibrated per-value settings for one model, as a small JSON file.

The embedded model's file ships with the package (``conva_nb/settings/embedded.json``,
written by ``conva-nb calibrate --value all``); any other model gets its own file in the
cache when someone calibrates it. Without a file, each method's registered defaults apply
(:func:`defaults`). A value's entry holds one block per method ``settings_key`` and the
gate threshold ``g0``.
"""
from __future__ import annotations

import json
from pathlib import Path

from .cache import cache_dir, fingerprint, write_json_atomic
from .errors import UsageError
from .methods import METHODS, MethodConfig, get_method
from .models import EMBEDDED_IDENTITY, model_identity
from .values import canonical

__all__ = ["defaults", "DEFAULT_G0", "settings_path", "load_settings", "save_settings",
           "config_for", "gate_threshold_for", "evaluation_path", "load_evaluation",
           "save_evaluation"]

DEFAULT_G0 = 0.5
SHIPPED = Path(__file__).parent / "settings"


def defaults() -> dict:
    """Every registered method's default parameters, by settings key."""
    return {m.settings_key: dict(m.defaults) for m in METHODS.values() if m.settings_key}


def _identity(model_or_id) -> str:
    return model_or_id if isinstance(model_or_id, str) else model_identity(model_or_id)


def settings_path(model_or_id) -> Path:
    """Where the settings of this model live (shipped for the embedded model)."""
    mid = _identity(model_or_id)
    if mid == EMBEDDED_IDENTITY:
        return SHIPPED / "embedded.json"
    return cache_dir() / "settings" / f"{fingerprint(mid)}.json"


def _read(p: Path, mid: str, what: str) -> dict:
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UsageError(f"{p}: not a valid {what} file (JSON error: {err.msg})") from None
    if not isinstance(doc, dict) or "model_id" not in doc:
        raise UsageError(f"{p}: not a {what} file (no model_id)")
    if doc["model_id"] != mid:
        raise UsageError(f"{p}: {what} made for {doc['model_id']!r}, not {mid!r}; run "
                         f"conva-nb calibrate for this model or pass its own file")
    return doc


def load_settings(model_or_id, path=None) -> dict:
    """The calibrated settings (``{"model_id", "values": {v: {...}}, ...}``) or defaults."""
    mid = _identity(model_or_id)
    p = Path(path) if path else settings_path(mid)
    if p.is_file():
        s = _read(p, mid, "settings")
        s["path"] = str(p.resolve())
        return s
    if path:
        raise UsageError(f"no such settings file: {p}")
    return {"model_id": mid, "calibrated": False, "values": {}, "path": None}


def save_settings(settings: dict, path) -> Path:
    """Write the settings atomically (a half-written file is never left behind)."""
    return write_json_atomic(path, {k: v for k, v in settings.items() if k != "path"})


def config_for(settings: dict, method: str, value: str, **override) -> MethodConfig:
    """The :class:`MethodConfig` of ``method`` for ``value`` under ``settings``."""
    value = canonical(value)
    m = get_method(method)
    per = settings.get("values", {}).get(value, {})
    calibrated = per.get(m.settings_key, {}) if m.settings_key else {}
    params = {k: calibrated.get(k, d) for k, d in m.defaults.items()}
    return MethodConfig(method, value, {**params, **override})


def gate_threshold_for(settings: dict, value: str) -> float:
    """The calibrated gate threshold of ``value`` (:data:`DEFAULT_G0` without one)."""
    return settings.get("values", {}).get(canonical(value), {}).get("g0", DEFAULT_G0)


def evaluation_path(model_or_id) -> Path:
    """Where a full ``conva-nb evaluate`` run of this model is kept (shipped for embedded)."""
    p = settings_path(model_or_id)
    return p.with_name(p.stem + ".evaluation.json")


def load_evaluation(model_or_id) -> dict | None:
    """The saved full evaluation of this model (``None`` if it was never run)."""
    mid = _identity(model_or_id)
    p = evaluation_path(mid)
    return _read(p, mid, "evaluation") if p.is_file() else None


def save_evaluation(doc: dict, path) -> Path:
    return write_json_atomic(path, doc)
