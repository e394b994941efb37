"""Batched hidden-state extraction from every decoder layer, pooled per text.

Hidden states are read with forward hooks on the decoder blocks, so layer ``i``
here is exactly what a steering hook on block ``i`` sees (the model's own
``output_hidden_states`` puts the final norm's output in its last entry).
The BOS token and padding are never pooled.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from .cache import cache_dir, fingerprint
from .errors import UsageError
from .models import decoder_layers, model_identity

__all__ = ["POOLINGS", "encode", "position_ids", "extract"]

POOLINGS = ("last", "mean")


def encode(tokenizer, texts: list[str], device) -> dict[str, torch.Tensor]:
    """Tokenise a batch with padding; adds ``content_mask`` (no BOS/EOS/pad)."""
    enc = tokenizer(list(texts), return_tensors="pt", padding=True,
                    return_special_tokens_mask=True)
    special = enc.pop("special_tokens_mask").bool()
    enc["content_mask"] = enc["attention_mask"].bool() & ~special
    return {k: v.to(device) for k, v in enc.items()}


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that ignore left padding, so padded and unpadded runs agree."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.clamp(min=0)


def _pool(h: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """h ``[b, t, d]``, mask ``[b, t]`` -> ``[b, d]`` float32."""
    h = h.float()
    if pooling == "mean":
        m = mask.unsqueeze(-1).float()
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)
    idx = (mask.long() * torch.arange(mask.shape[1], device=mask.device)).argmax(-1)
    return h[torch.arange(h.shape[0], device=h.device), idx]


@torch.no_grad()
def _extract_batch(model, tokenizer, texts, pooling, layers) -> np.ndarray:
    """``[len(texts), n_layers, hidden]`` float32 for one batch."""
    blocks = decoder_layers(model)
    enc = encode(tokenizer, texts, model.get_input_embeddings().weight.device)
    mask = enc.pop("content_mask")
    if not bool(mask.any(-1).all()):
        empty = [t for t, m in zip(texts, mask.any(-1).tolist()) if not m]
        raise UsageError(f"texts with no content tokens cannot be pooled: {empty[:3]}")
    out: dict[int, torch.Tensor] = {}

    def make_hook(i):
        def hook(_module, _args, output):
            h = output[0] if isinstance(output, tuple) else output
            out[i] = _pool(h, mask.to(h.device), pooling)
        return hook

    handles = [blocks[i].register_forward_hook(make_hook(i)) for i in layers]
    try:
        # the base model skips the LM head: logits over a 262k vocabulary would cost
        # more than all the decoder layers together
        getattr(model, "base_model", model)(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
            position_ids=position_ids(enc["attention_mask"]), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return torch.stack([out[i].cpu() for i in layers], 1).numpy()


def _store(model, pooling: str, layers: list[int]) -> Path:
    key = [model_identity(model), pooling, layers]
    d = cache_dir() / "activations" / fingerprint(key)
    d.mkdir(parents=True, exist_ok=True)
    (d / "key.json").write_text(json.dumps(key))
    return d


def _read_store(d: Path, wanted: set[str]) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    for shard in sorted(d.glob("shard-*.safetensors")):
        try:
            with safe_open(str(shard), "np") as f:
                hashes = json.loads(f.metadata()["hashes"])
                rows = [i for i, h in enumerate(hashes) if h in wanted and h not in found]
                if rows:
                    acts = f.get_tensor("acts")
                    for i in rows:
                        found[hashes[i]] = acts[i]
        except Exception:  # a shard cut short by a crash: ignore it, recompute its rows
            continue
    return found


def extract(model, tokenizer, texts: list[str], pooling: str = "last", batch_size: int = 16,
            layers: list[int] | None = None, cache: bool = True, progress: bool = True,
            chunk: int = 256) -> np.ndarray:
    """Pooled hidden states of ``texts`` at every (or the given) decoder layer.

    Returns float32 ``[n_texts, n_layers, hidden]``. ``pooling``: ``"last"`` (last
    content token) or ``"mean"`` (mean over content tokens). Texts are sorted by
    length into batches; results are cached on disk per text, in shards written
    every ``chunk`` texts, so an interrupted run resumes where it stopped.
    """
    if pooling not in POOLINGS:
        raise UsageError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
    texts = list(texts)
    if not texts:
        raise UsageError("no texts to extract")
    n_layers = len(decoder_layers(model))
    layers = list(range(n_layers)) if layers is None else [int(i) for i in layers]
    hashes = [fingerprint(t) for t in texts]
    store = _store(model, pooling, layers) if cache else None
    found = _read_store(store, set(hashes)) if store else {}
    todo = sorted({h: t for h, t in zip(hashes, texts) if h not in found}.items(),
                  key=lambda kv: len(kv[1]))
    bar = tqdm(total=len(todo), desc=f"activations ({pooling})", disable=not progress or not todo,
               leave=False)
    for c0 in range(0, len(todo), chunk):
        part = todo[c0:c0 + chunk]
        acts = []
        for b0 in range(0, len(part), batch_size):
            batch = [t for _, t in part[b0:b0 + batch_size]]
            acts.append(_extract_batch(model, tokenizer, batch, pooling, layers))
            bar.update(len(batch))
        acts = np.concatenate(acts)
        part_hashes = [h for h, _ in part]
        found.update(zip(part_hashes, acts))
        if store:
            name = fingerprint(part_hashes)
            tmp = store / f".tmp-{name}"
            save_file({"acts": np.ascontiguousarray(acts)}, str(tmp),
                      metadata={"hashes": json.dumps(part_hashes)})
            tmp.replace(store / f"shard-{name}.safetensors")
    bar.close()
    return np.stack([found[h] for h in hashes]).astype(np.float32, copy=False)
