"""Shared-prefix KV caching: compute the tokens every row starts with once.

Every framed prompt of a base model begins with the same few-shot preamble (about
two thirds of its tokens), so generation and scoring run that preamble once per
call, copy its keys and values to each row, and feed only the rest.

This is exact whenever the forward pass treats the preamble the same in every
row: the unsteered model, and hooks that edit each token from its own hidden
state alone (per-token ConVA and CAA with ``positions="all"`` and no gate inside the
hooks). The per-prompt rule, a gate read from the prompt, or ``positions="prompt"`` /
``"generated"`` need the whole prompt in one forward: :func:`sharing_exact` tells, and
the callers fall back to plain batches when it says no.
"""
from __future__ import annotations

import copy
import inspect

import torch

__all__ = ["MIN_PREFIX", "common_prefix_len", "cache_kwarg", "cache_of", "prefix_cache",
           "extend_cache", "expand_cache", "sliding_window", "sharing_exact"]

MIN_PREFIX = 8   # below this, one extra forward costs more than it saves


def common_prefix_len(seqs: list[list[int]]) -> int:
    """Length of the longest token prefix that all ``seqs`` share, leaving every
    sequence at least one token of its own (0 if that is under ``MIN_PREFIX``)."""
    if not seqs:
        return 0
    limit = min(len(s) for s in seqs) - 1
    first, n = seqs[0], 0
    while n < limit and all(s[n] == first[n] for s in seqs):
        n += 1
    return n if n >= MIN_PREFIX else 0


def sharing_exact(model) -> bool:
    """Whether a prefix computed once gives every row what a full forward would: no
    steering is active on ``model``, or the active one edits each token on its own."""
    steerer = getattr(model, "_conva_steerer", None)
    return steerer is None or steerer.shareable


def sliding_window(model) -> int | None:
    """The model's local-attention window in tokens, if it has one in use.

    Generation pads between the shared prefix and each row's own tokens; a window
    counts those pad slots, so sharing is only exact while a whole sequence fits in it.
    """
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
        else model.config
    w = getattr(cfg, "sliding_window", None)
    if not w or getattr(cfg, "use_sliding_window", True) is False:
        return None
    return int(w)


def cache_kwarg(model) -> str:
    """The keyword under which ``model`` takes a KV cache (transformers 5: ``cache``)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters \
        else "past_key_values"


@torch.no_grad()
def prefix_cache(model, ids: list[int]):
    """KV cache of one row of token ``ids`` (run through the model, hooks included)."""
    return extend_cache(model, torch.tensor([ids], device=model.get_input_embeddings().weight.device))


@torch.no_grad()
def extend_cache(model, ids: torch.Tensor, mask: torch.Tensor | None = None, cache=None):
    """The KV cache after running ``ids [b, t]`` (after ``cache``, if given; ``mask``
    spans cache and ``ids``). Only the cache is wanted: the LM head runs at one position."""
    kw = {cache_kwarg(model): cache} if cache is not None else {}
    try:
        out = model(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1, **kw)
    except TypeError:   # a model class without ``logits_to_keep``
        out = model(input_ids=ids, attention_mask=mask, use_cache=True, **kw)
    return cache_of(out)


def cache_of(out):
    """The KV cache a forward returned (transformers 5: ``cache``, 4.x: ``past_key_values``)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def expand_cache(cache, batch: int):
    """A copy of a one-row ``cache`` repeated to ``batch`` rows (the original stays as is)."""
    c = copy.deepcopy(cache)
    if batch > 1:
        c.batch_repeat_interleave(batch)
    return c
