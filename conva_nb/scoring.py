"""Language-model scoring: log-probabilities of continuations, perplexities.

:func:`continuation_logprobs` scores each continuation given its context under the model
as it is now (unsteered, or inside a steering block). It picks the cheapest exact layout:

- the few-shot preamble every framed prompt starts with runs once and its KV cache is
  shared (:mod:`conva_nb.prefix`), when sharing is exact (:func:`~.prefix.sharing_exact`);
  contexts that repeat (a question and its four choices) then also run once each;
- otherwise, when a steering block needs each prompt whole (the per-prompt rule, a gate
  inside the hooks), each distinct context runs as a prompt (its prefill) and its
  continuations follow it through the KV cache, as generated tokens would;
- otherwise one right-padded forward per batch.

The LM head runs only at the positions that predict continuation tokens, which on Gemma's
262k-token vocabulary is most of a full forward's cost.
"""
from __future__ import annotations

import numpy as np
import torch

from .prefix import (
    cache_kwarg,
    cache_of,
    common_prefix_len,
    expand_cache,
    extend_cache,
    prefix_cache,
    sharing_exact,
    sliding_window,
)

__all__ = ["continuation_logprobs", "perplexities"]


def _logits_at(model, ids: torch.Tensor, mask: torch.Tensor, keep, **extra) -> torch.Tensor:
    """Logits at sequence positions ``keep`` only: ``[batch, len(keep), vocab]``."""
    pos = torch.tensor(keep, device=ids.device)
    try:
        return model(input_ids=ids, attention_mask=mask, logits_to_keep=pos, **extra).logits
    except TypeError:   # a model class without ``logits_to_keep``: full logits, then slice
        return model(input_ids=ids, attention_mask=mask, **extra).logits[:, pos]


def _summed_logprob(logits: torch.Tensor, tokens: list[int]) -> float:
    """Sum of log-softmax(``logits [t, vocab]``) at each of the ``t`` target ``tokens``."""
    logp = torch.log_softmax(logits.float(), -1)
    return float(logp.gather(1, torch.tensor(tokens, device=logp.device)[:, None]).sum())


@torch.no_grad()
def continuation_logprobs(model, tokenizer, contexts: list[str], continuations: list[str],
                          batch_size: int = 16, share_prefix: bool = False
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-probability and token count of each continuation given its context.

    Returns two arrays of shape ``[n]``; each continuation is scored as
    ``" " + text.strip()`` (an empty one scores 0 over 0 tokens). share_prefix: run the
    prefix all contexts share once, where that is exact (see the module docstring).
    """
    device = model.get_input_embeddings().weight.device
    ctx = [tokenizer(c).input_ids for c in contexts]
    cont = [tokenizer(" " + c.strip(), add_special_tokens=False).input_ids if c.strip() else []
            for c in continuations]
    sums, counts = np.zeros(len(ctx)), np.array([len(b) for b in cont])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted((i for i in range(len(ctx)) if cont[i]),
                   key=lambda i: (len(ctx[i]), len(cont[i])))
    if not order:
        return sums, counts
    exact = sharing_exact(model)
    if not exact:
        _prompt_then_continuation(model, ctx, cont, order, batch_size, pad, sums)
        return sums, counts
    P = common_prefix_len([ctx[i] for i in order]) if share_prefix else 0
    cache0 = prefix_cache(model, ctx[order[0]][:P]) if P else None
    if P and _groupable(model, ctx, cont, order, P):
        _grouped_logprobs(model, ctx, cont, order, P, cache0, batch_size, pad, sums)
        return sums, counts
    for s in range(0, len(order), batch_size):
        rows = order[s:s + batch_size]
        # positions below are relative to the end of the shared prefix
        spans = [range(len(ctx[i]) - 1 - P, len(ctx[i]) + len(cont[i]) - 1 - P) for i in rows]
        L = max(len(ctx[i]) + len(cont[i]) for i in rows) - P
        ids = torch.full((len(rows), L), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), P + L), dtype=torch.long)
        mask[:, :P] = 1
        for j, i in enumerate(rows):
            seq = ctx[i][P:] + cont[i]
            ids[j, :len(seq)] = torch.tensor(seq)
            mask[j, P:P + len(seq)] = 1
        keep = sorted(set().union(*spans))
        col = {p: k for k, p in enumerate(keep)}
        extra = {cache_kwarg(model): expand_cache(cache0, len(rows))} if P else {}
        logits = _logits_at(model, ids.to(device), mask.to(device), keep, **extra)
        for j, (i, span) in enumerate(zip(rows, spans)):
            sums[i] = _summed_logprob(logits[j, [col[p] for p in span]], cont[i])
    return sums, counts


def _groups(ctx, rows, batch_size) -> list[list[list[int]]]:
    """Rows grouped by identical context, whole groups per batch of up to ``batch_size``."""
    groups: dict[tuple, list[int]] = {}
    for i in rows:
        groups.setdefault(tuple(ctx[i]), []).append(i)
    batches, cur, n = [], [], 0
    for g in sorted(groups.values(), key=lambda g: len(ctx[g[0]])):
        if cur and n + len(g) > batch_size:
            batches.append(cur)
            cur, n = [], 0
        cur.append(g)
        n += len(g)
    return batches + ([cur] if cur else [])


def _groupable(model, ctx, cont, rows, P) -> bool:
    """Whether repeated contexts (a question's choices) can each run once: some context
    repeats, each has two tokens beyond the shared prefix, and no sliding attention
    window is shorter than a sequence (it would count the padding between the parts)."""
    if len({tuple(ctx[i]) for i in rows}) == len(rows) or min(len(ctx[i]) for i in rows) < P + 2:
        return False
    window = sliding_window(model)
    return window is None or max(len(ctx[i]) + len(cont[i]) for i in rows) <= window


def _grouped_logprobs(model, ctx, cont, rows, P, cache0, batch_size, pad, sums) -> None:
    """Fill ``sums[i]`` for ``rows`` whose contexts repeat: each distinct context runs
    once after the shared prefix (all but its last token), its cache is copied to each of
    its continuations, which then run as [last context token | continuation]."""
    device = model.get_input_embeddings().weight.device
    kw = cache_kwarg(model)
    for gs in _groups(ctx, rows, batch_size):
        rem = [ctx[g[0]][P:-1] for g in gs]
        Lq = max(map(len, rem))
        q_ids = torch.full((len(gs), Lq), pad, dtype=torch.long)
        q_mask = torch.zeros((len(gs), P + Lq), dtype=torch.long)
        q_mask[:, :P] = 1
        for u, r in enumerate(rem):
            q_ids[u, :len(r)], q_mask[u, P:P + len(r)] = torch.tensor(r), 1
        cache = extend_cache(model, q_ids.to(device), q_mask.to(device),
                             expand_cache(cache0, len(gs)))
        sel = [u for u, g in enumerate(gs) for _ in g]
        members = [i for g in gs for i in g]
        cache.batch_select_indices(torch.tensor(sel, device=device))
        seqs = [[ctx[i][-1]] + cont[i] for i in members]
        Lc = max(map(len, seqs))
        ids = torch.full((len(members), Lc), pad, dtype=torch.long)
        mask = torch.cat([q_mask[sel], torch.zeros((len(members), Lc), dtype=torch.long)], 1)
        pos = torch.zeros((len(members), Lc), dtype=torch.long)
        for j, (u, seq) in enumerate(zip(sel, seqs)):
            ids[j, :len(seq)], mask[j, P + Lq:P + Lq + len(seq)] = torch.tensor(seq), 1
            pos[j] = P + len(rem[u]) + torch.arange(Lc)
        keep = list(range(max(len(cont[i]) for i in members)))
        logits = _logits_at(model, ids.to(device), mask.to(device), keep,
                            position_ids=pos.to(device), **{kw: cache})
        for j, i in enumerate(members):
            sums[i] = _summed_logprob(logits[j, :len(cont[i])], cont[i])


def _prompt_then_continuation(model, ctx, cont, rows, batch_size, pad, sums) -> None:
    """Fill ``sums[i]`` the way generation would see it: each distinct context runs as a
    left-padded prompt (a prefill, so steering and gates act as they do on a prompt), its
    KV cache and the active steerer's per-row state are copied to each of its
    continuations, which then run after it as later tokens do."""
    device = model.get_input_embeddings().weight.device
    kw = cache_kwarg(model)
    steerer = getattr(model, "_conva_steerer", None)
    for gs in _groups(ctx, rows, batch_size):
        q = [ctx[g[0]] for g in gs]
        Lq = max(map(len, q))
        q_ids = torch.full((len(gs), Lq), pad, dtype=torch.long)
        q_mask = torch.zeros((len(gs), Lq), dtype=torch.long)
        for u, r in enumerate(q):
            q_ids[u, Lq - len(r):], q_mask[u, Lq - len(r):] = torch.tensor(r), 1
        q_pos = (q_mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=q_ids.to(device), attention_mask=q_mask.to(device),
                    position_ids=q_pos.to(device), use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1].float(), -1)        # predicts cont[0]
        sel = torch.tensor([u for u, g in enumerate(gs) for _ in g], device=device)
        members = [i for g in gs for i in g]
        cache = cache_of(out)
        cache.batch_select_indices(sel)
        if steerer is not None:
            steerer.select_rows(sel)
        Lc = max(len(cont[i]) for i in members)
        ids = torch.full((len(members), Lc), pad, dtype=torch.long)
        mask = torch.cat([q_mask[sel.cpu()], torch.zeros((len(members), Lc), dtype=torch.long)],
                         1)
        pos = torch.zeros((len(members), Lc), dtype=torch.long)
        for j, (u, i) in enumerate(zip(sel.tolist(), members)):
            ids[j, :len(cont[i])], mask[j, Lq:Lq + len(cont[i])] = torch.tensor(cont[i]), 1
            pos[j] = len(q[u]) + torch.arange(Lc)
        rest = None
        if Lc > 1:
            rest = _logits_at(model, ids.to(device), mask.to(device), list(range(Lc - 1)),
                              position_ids=pos.to(device), **{kw: cache})
        for j, (u, i) in enumerate(zip(sel.tolist(), members)):
            total = float(first[u, cont[i][0]])
            if len(cont[i]) > 1:
                total += _summed_logprob(rest[j, :len(cont[i]) - 1], cont[i][1:])
            sums[i] = total


def perplexities(model, tokenizer, contexts: list[str], responses: list[str],
                 batch_size: int = 16, share_prefix: bool = False) -> np.ndarray:
    """Perplexity of each response given its context under ``model`` (run it unsteered);
    ``inf`` for an empty response. Shape ``[n]``."""
    sums, counts = continuation_logprobs(model, tokenizer, contexts, responses, batch_size,
                                         share_prefix)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, np.exp(-sums / np.maximum(counts, 1)), np.inf)
