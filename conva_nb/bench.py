"""``conva-nb bench``: steering overhead per generated token and gate latency.

Each ratio is measured in one run, plain and steered generations interleaved,
the fastest of ``repeats`` tries of each (the least disturbed by other load).
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from .datasets import DataError, load_pairs, load_prompts
from .errors import UsageError
from .gates import AlwaysOpen, ValueDetector, ValueDetectorGate, touche_detector
from .models import load_model
from .probes import ProbeBank, get_bank
from .prompting import frame
from .steering import steer
from .values import VALUE_NAMES

__all__ = ["run_bench", "overhead"]


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def overhead(model, enc: dict, make_ctx, tokens: int, repeats: int, pad_id: int) -> dict:
    """Generation time with the steering context ÷ without, same prompts, same run."""
    kw = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=pad_id)

    def plain():
        model.generate(**enc, **kw)

    def steered():
        with make_ctx():
            model.generate(**enc, **kw)

    plain()  # warm-up
    steered()
    t_plain, t_steer = [], []
    for _ in range(repeats):
        t_plain.append(_timed(plain))
        t_steer.append(_timed(steered))
    return {"ratio": round(min(t_steer) / min(t_plain), 4), "plain_s": round(min(t_plain), 3),
            "steered_s": round(min(t_steer), 3)}


def _cpu(model_name: str, tokens: int, repeats: int) -> dict:
    model, tok = load_model(model_name, device="cpu")
    bank = get_bank(model, tok, "achievement", progress=False)
    layers = bank.select_layers()
    questions = [r["prompt"] for r in load_prompts("value", split="test")][:16]
    res = {"model": model_name, "device": "cpu", "steered_layers": layers, "new_tokens": tokens}
    for b in (1, 16):
        enc = tok([frame(tok, q) for q in questions[:b]], return_tensors="pt", padding=True)
        enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        r = overhead(model, enc, lambda: steer(model, bank, p0=0.99, gate=AlwaysOpen(),
                                               tokenizer=tok, layers=layers),
                     tokens, repeats, tok.pad_token_id)
        res[f"steer_overhead_b{b}"] = r["ratio"]
        res[f"plain_s_b{b}"], res[f"steered_s_b{b}"] = r["plain_s"], r["steered_s"]
    res.update(_gate_latency(questions * 4))
    return res


def _gate_latency(texts: list[str]) -> dict:
    try:
        det, source = touche_detector(os.environ.get("CONVA_NB_TOUCHE")), "touche23"
    except DataError:  # Touché23 not available here: same latency, other training data
        pairs = load_pairs(split="train")
        y = np.array([[int(p["value"] == v) for v in VALUE_NAMES] for p in pairs])
        det, source = ValueDetector().fit([p["positive"] for p in pairs], y), "shipped pairs"
    gate = ValueDetectorGate(det, "achievement")
    gate.decide(texts[:4])  # warm-up (loads the encoder)
    t = min(_timed(lambda: gate.decide(texts)) for _ in range(3))
    return {"gate_ms_per_prompt": round(1000 * t / len(texts), 3), "gate_detector": source}


def _cuda(tokens: int, repeats: int) -> dict:
    """A random-initialised 7B-shaped Llama in bf16 (no download) with a random bank."""
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    rng = np.random.default_rng(0)
    n, h = 32, 4096
    bank = ProbeBank("achievement", "random-7b", h, n, "last", "controlled", list(range(n)),
                     rng.normal(size=(n, h)).astype(np.float32) * 0.01, np.zeros(n, np.float32),
                     np.ones(n), np.array([1.0 if 8 <= i < 20 else 0.5 for i in range(n)]),
                     np.ones(n))
    res = {"model": "random-init Llama 7B shape", "device": "cuda",
           "steered_layers": bank.select_layers(), "new_tokens": tokens}
    for b in (1, 16):
        ids = torch.randint(3, 32000, (b, 64), device="cuda")
        enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        r = overhead(model, enc, lambda: steer(model, bank, p0=0.99), tokens, repeats, 0)
        res[f"steer_overhead_b{b}"] = r["ratio"]
        res[f"plain_s_b{b}"], res[f"steered_s_b{b}"] = r["plain_s"], r["steered_s"]
    return res


def run_bench(model_name: str = "embedded", device: str = "cpu", tokens: int = 24,
              repeats: int = 3) -> dict:
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda asked for, but torch sees no CUDA device")
        return _cuda(tokens, repeats)
    if device != "cpu":
        raise UsageError(f"unknown device {device!r}; valid: cpu, cuda")
    return _cpu(model_name, tokens, repeats)
