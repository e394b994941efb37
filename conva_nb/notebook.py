"""One call that sets a chapter up: ``nb = conva_nb.setup(MODEL)``.

It applies the book's figure style, quiets library warnings that are not the reader's
concern, seeds torch, loads the model (``"embedded"``, a Hugging Face id or a local
directory) and says what it loaded. Two environment variables change every chapter at
once without editing it:

- ``CONVA_MODEL``: the model to load instead of the notebook's ``MODEL``;
- ``CONVA_QUICK=1``: quick mode — each chapter cuts its work (fewer values, prompts and
  grid points, see :meth:`Session.pick`), so any model gets through in minutes.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch

from .models import EMBEDDED, decoder_layers, load_model, load_tokenizer
from .plots import set_style

__all__ = ["Session", "setup", "quick_mode", "QUICK_ENV", "MODEL_ENV"]

QUICK_ENV, MODEL_ENV = "CONVA_QUICK", "CONVA_MODEL"


def quick_mode() -> bool:
    """Whether ``$CONVA_QUICK`` asks for quick mode (1, true, yes, on)."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Session:
    """What :func:`setup` made: ``model`` and ``tok`` (``None`` when not loaded), the model
    name, and whether quick mode is on."""
    model: object
    tok: object
    name: str
    quick: bool

    @property
    def embedded(self) -> bool:
        return self.name == EMBEDDED

    def pick(self, items, quick: int):
        """``items`` as a list, cut to its first ``quick`` in quick mode."""
        items = list(items)
        return items[:quick] if self.quick else items


def setup(model: str | None = EMBEDDED, quick: bool | None = None, seed: int = 0,
          load: bool = True) -> Session:
    """Style, quiet logs, seed, and the model (``load=False``: only its tokenizer)."""
    from transformers.utils import logging as hf_logging
    set_style()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()          # no "Loading weights" bar in the page
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.manual_seed(seed)
    name = os.environ.get(MODEL_ENV) or model or EMBEDDED
    quick = quick_mode() if quick is None else bool(quick)
    if load:
        m, tok = load_model(name)
        where = next(m.parameters()).device
        print(f"model {name}: {len(decoder_layers(m))} decoder layers, "
              f"{next(m.parameters()).dtype} on {where}" + ("; quick mode" if quick else ""))
    else:
        m, tok = None, load_tokenizer(name)
        print(f"model {name}: tokenizer only" + ("; quick mode" if quick else ""))
    return Session(m, tok, name, quick)
