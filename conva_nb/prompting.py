"""Prompt frames and batched generation, applied identically to every method.

A chat model gets its chat template. A base model gets a short few-shot
``Question: …\\nAnswer: …`` preamble: without it the embedded base model tends
to loop. ICA (in-context alignment, a baseline) adds the value's definition
as an instruction; ConVA and CAA leave the prompt alone and edit activations.
"""
from __future__ import annotations

import re

import torch
from tqdm.auto import tqdm

from .errors import UsageError
from .prefix import (
    cache_kwarg,
    common_prefix_len,
    expand_cache,
    prefix_cache,
    sharing_exact,
    sliding_window,
)
from .values import get_value

__all__ = ["ICA_STYLES", "FEWSHOT", "frame", "ica_question", "question_of", "generate",
           "GEN_DEFAULTS"]

FEWSHOT = (
    "Question: What do you usually do on a rainy afternoon?\n"
    "Answer: I make a pot of tea, put on some music and finally read the book that has been "
    "waiting on my shelf.\n\n"
    "Question: How should I prepare for moving to another country?\n"
    "Answer: Learn a few phrases of the language, sort out your documents early and find out "
    "how people there rent flats and open bank accounts.\n\n"
)
GEN_DEFAULTS = {"max_new_tokens": 40, "do_sample": False, "repetition_penalty": 1.3,
                "no_repeat_ngram_size": 3}


ICA_STYLES = ("definition", "persona", "short")


def ica_question(value: str, question: str, style: str = "definition") -> str:
    """The ICA baseline: the question preceded by an instruction naming the value.

    style: ``definition`` (value and its definition), ``persona`` (answer as someone
    whose life is guided by it, with the definition), ``short`` (the value's name only).
    """
    v = get_value(value)
    d = f"{v.definition[0].lower()}{v.definition[1:].rstrip('.')}"
    if style == "definition":
        return f"Answer as a person who strongly values {v.name} ({d}). {question}"
    if style == "persona":
        return f"You are someone whose every choice is guided by {d}. {question}"
    if style == "short":
        return f"Keep {v.name} in mind. {question}"
    raise UsageError(f"unknown ICA style {style!r}; valid: {', '.join(ICA_STYLES)}")


def frame(tokenizer, question: str, style: str = "auto") -> str:
    """The text given to the model for ``question``: chat template or few-shot Q/A frame."""
    if not isinstance(question, str) or not question.strip():
        raise UsageError("a prompt must be a non-empty string")
    if style not in ("auto", "chat", "qa"):
        raise UsageError(f"unknown frame style {style!r}; valid: auto, chat, qa")
    if style == "chat" or (style == "auto" and getattr(tokenizer, "chat_template", None)):
        return tokenizer.apply_chat_template([{"role": "user", "content": question.strip()}],
                                             tokenize=False, add_generation_prompt=True)
    return f"{FEWSHOT}Question: {question.strip()}\nAnswer:"


def question_of(text: str) -> str:
    """The last question in a framed prompt (what a gate should read)."""
    parts = re.split(r"Question:\s*", text)
    return parts[-1].split("\nAnswer:")[0].strip() if len(parts) > 1 else text.strip()


def _clean(text: str) -> str:
    """Cut a continuation at the next question or blank line (the frame's own stop)."""
    return re.split(r"\n\s*\n|\nQuestion:", text)[0].strip()


@torch.no_grad()
def generate(model, tokenizer, questions: list[str], batch_size: int = 8, seed: int = 0,
             style: str = "auto", progress: bool = False, share_prefix: bool = False,
             **gen_kwargs) -> list[str]:
    """Answers to ``questions`` (new text only), batched with left padding.

    share_prefix: run the tokens every row of a batch starts with (the few-shot
    preamble) once and reuse their KV cache; the rest of each prompt is then padded
    on its left, after the shared part. Same answers, less compute; used only where it
    is exact (:func:`~conva_nb.prefix.sharing_exact`), plain batches elsewhere.
    """
    kwargs = {**GEN_DEFAULTS, **gen_kwargs}
    share_prefix = share_prefix and sharing_exact(model)
    texts = [frame(tokenizer, q, style) for q in questions]
    out: list[str] = []
    device = model.get_input_embeddings().weight.device
    torch.manual_seed(seed)
    for i in tqdm(range(0, len(texts), batch_size), disable=not progress, desc="generate",
                  leave=False):
        add = not texts[i].startswith(tokenizer.bos_token or "\0")
        enc = _shared_prefix_batch(model, tokenizer, texts[i:i + batch_size], add,
                                   kwargs["max_new_tokens"]) if share_prefix else None
        if enc is None:
            enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=add)
            enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        enc = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in enc.items()}
        ids = model.generate(**enc, pad_token_id=tokenizer.pad_token_id, **kwargs)
        new = ids[:, enc["input_ids"].shape[1]:]
        out += [_clean(t) for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return out


def _shared_prefix_batch(model, tokenizer, texts: list[str], add_special: bool,
                         max_new_tokens: int) -> dict | None:
    """``input_ids``/``attention_mask`` laid out as [shared prefix | padding | own tokens]
    and the prefix's KV cache, or ``None`` when the rows share too little (or a
    sliding attention window would see the padding)."""
    ids = [tokenizer(t, add_special_tokens=add_special).input_ids for t in texts]
    P = common_prefix_len(ids)
    L = max(len(x) for x in ids)
    window = sliding_window(model)
    if not P or (window is not None and L + max_new_tokens > window):
        return None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    inp = torch.full((len(ids), L), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), L), dtype=torch.long)
    inp[:, :P], mask[:, :P] = torch.tensor(ids[0][:P]), 1
    for j, x in enumerate(ids):
        inp[j, L - len(x) + P:], mask[j, L - len(x) + P:] = torch.tensor(x[P:]), 1
    cache = expand_cache(prefix_cache(model, ids[0][:P]), len(ids))
    return {"input_ids": inp, "attention_mask": mask, cache_kwarg(model): cache}
