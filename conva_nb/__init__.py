"""conva_nb: Controlled Value Vector Activation (ConVA, Jin et al., ACL 2025), for teaching.

The front door: everything a chapter needs is a name here (figures live in
:mod:`conva_nb.plots`). Names are imported on first use, so ``import conva_nb`` is quick.

Data flows one way: values -> datasets -> activations -> probes -> operators -> steering
(+ gates) -> methods -> runner -> experiment -> circle / plots.
"""
from __future__ import annotations

import importlib

__version__ = "0.2.0"

# name -> module that defines it
_EXPORTS = {
    "VALUES": "values", "VALUE_NAMES": "values", "GROUPS": "values", "get_value": "values",
    "canonical": "values", "opposite": "values", "circle_distance": "values",
    "load_model": "models", "load_tokenizer": "models", "decoder_layers": "models",
    "load_pairs": "datasets", "load_naive_pairs": "datasets", "load_prompts": "datasets",
    "load_touche": "datasets", "check_data": "datasets", "BOUNDS": "datasets",
    "has_negation": "datasets", "data_dir": "datasets",
    "get_bank": "probes", "train_probes": "probes", "fit_layer": "probes",
    "pair_arrays": "probes", "middle_layers": "probes", "transfer_accuracy": "probes",
    "negation_control_accuracy": "probes",
    "steer": "steering", "token_edits": "steering", "closed_form": "operators",
    "caa_shift": "operators",
    "min_norm_shift": "operators",
    "make_gate": "gates", "touche_detector": "gates", "embed": "gates",
    "generate": "prompting", "frame": "prompting",
    "METHODS": "methods", "MethodConfig": "methods", "steering_context": "methods",
    "question_for": "methods",
    "load_settings": "settings", "config_for": "settings", "load_evaluation": "settings",
    "gate_threshold_for": "settings",
    "Runner": "runner", "make_judge": "judges",
    "evaluate": "experiment", "calibrate": "experiment", "sweep": "experiment",
    "ScriptedChatServer": "local_server", "playground": "widgets", "run_once": "widgets",
    "result_html": "widgets", "setup": "notebook", "quick_mode": "notebook",
}
_MODULES = ("circle", "generation", "plots", "stats", "metrics")

__all__ = sorted(_EXPORTS) + list(_MODULES) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'conva_nb' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
