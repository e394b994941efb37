"""Batched extraction of 1,000 short sentences over all layers vs one-sentence-at-a-time
loops (same outputs); peak RSS of loading the model and extracting.

Two loops are timed: the usual one a reader writes first (the full model with
``output_hidden_states=True``, one sentence per call) and ``extract`` itself with
batch size 1 (which already skips the LM head: the batching gain alone).
"""
import time

import numpy as np
import torch

from conva_nb.activations import extract
from conva_nb.models import load_model

from _common import peak_rss_gb, report, short_sentences


@torch.no_grad()
def usual_loop(model, tok, texts):
    """Per sentence: full forward, hidden states of every layer, last token pooled."""
    out = []
    for t in texts:
        enc = tok(t, return_tensors="pt")
        hs = model(**enc, output_hidden_states=True).hidden_states
        # hidden_states[i + 1] is decoder layer i; the last entry is after the final norm,
        # so the last layer is compared on layers 0 .. n-2 only
        out.append(torch.stack([h[0, -1] for h in hs[1:-1]]).numpy())
    return np.stack(out)


if __name__ == "__main__":
    model, tok = load_model("embedded")
    texts = short_sentences(1000)
    t0 = time.perf_counter()
    batched = extract(model, tok, texts, batch_size=32, cache=False, progress=False)
    t_batched = time.perf_counter() - t0
    rss_after_batched = peak_rss_gb()   # loading + batched extraction only
    t0 = time.perf_counter()
    single = np.stack([extract(model, tok, [t], batch_size=1, cache=False, progress=False)[0]
                       for t in texts])
    t_single = time.perf_counter() - t0
    t0 = time.perf_counter()
    usual = usual_loop(model, tok, texts)
    t_usual = time.perf_counter() - t0
    rel = np.linalg.norm(batched - single, axis=-1) / np.linalg.norm(single, axis=-1)
    rel_usual = (np.linalg.norm(batched[:, :-1] - usual, axis=-1)
                 / np.linalg.norm(usual, axis=-1))
    report("extract", {"n_texts": len(texts), "shape": list(batched.shape),
                       "batched_s": round(t_batched, 2),
                       "usual_loop_s": round(t_usual, 2),
                       "speedup_vs_usual_loop": round(t_usual / t_batched, 2),
                       "extract_batch1_loop_s": round(t_single, 2),
                       "speedup_vs_extract_batch1": round(t_single / t_batched, 2),
                       "target_speedup": 5.0,
                       "max_rel_error_vs_batch1": float(rel.max()),
                       "max_rel_error_vs_usual_loop": float(rel_usual.max()),
                       "peak_rss_gb_load_and_extract": round(rss_after_batched, 2),
                       "peak_rss_gb_incl_loops": round(peak_rss_gb(), 2), "target_rss_gb": 3.0})
