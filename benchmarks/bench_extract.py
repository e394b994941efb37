"""Batched vs one-at-a-time extraction of 1,000 short sentences over all layers; peak RSS."""
import time

import numpy as np

from _common import peak_rss_gb, report, short_sentences
from conva_nb.activations import extract
from conva_nb.models import load_model

if __name__ == "__main__":
    model, tok = load_model("embedded")
    texts = short_sentences(1000)
    t0 = time.perf_counter()
    batched = extract(model, tok, texts, batch_size=32, cache=False, progress=False)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = np.stack([extract(model, tok, [t], batch_size=1, cache=False, progress=False)[0]
                       for t in texts])
    t_single = time.perf_counter() - t0
    rel = np.linalg.norm(batched - single, axis=-1) / np.linalg.norm(single, axis=-1)
    report("extract", {"n_texts": len(texts), "shape": list(batched.shape),
                       "batched_s": round(t_batched, 2), "one_by_one_s": round(t_single, 2),
                       "speedup": round(t_single / t_batched, 2), "target_speedup": 5.0,
                       "max_rel_error": float(rel.max()), "peak_rss_gb": round(peak_rss_gb(), 2),
                       "target_rss_gb": 3.0})
