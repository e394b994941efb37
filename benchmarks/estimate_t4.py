"""Each chapter's time on a Colab T4 with Qwen2.5-1.5B-Instruct: an estimate (one JSON line).

There is no T4 here, so the figure is built from what this CPU measures, in one run:

- ``embedded``: each chapter's seconds on the embedded model (``bench_book.py`` JSON lines
  given with ``--book-quick`` and ``--book-full``);
- ``tiny``: each chapter's seconds in quick mode on a tiny random-init Llama (hidden 32)
  with an empty cache: the work that does not grow with the model (kernel, imports, judge
  and detector training on Touché23, plots, the generation loop's Python);
- ``step_cpu``: one decode step of the embedded model at batch 16 on this CPU;
- ``bank_fit``: one probe bank's fits (GridSearchCV over C at every layer) on the embedded
  model's real activations, and on the same activations mapped into 1536 dimensions (the
  1.5B model's width; cost per iteration, not convergence, is what the map changes),
  scaled to 28 layers. Probes are fitted with scikit-learn on Colab's 2 vCPUs, taken to be
  as fast as these 2 cores.

Assumed (stated in the output): a decode step of the 1.5B model in fp16 on a T4 at batch
<= 16 takes ``STEP_T4_S`` (its 3.1 GB of weights over the T4's 320 GB/s is >= 10 ms; eager
PyTorch adds per-layer overhead). Then per chapter

    T4 = tiny + max(0, embedded - tiny) * STEP_T4_S / step_cpu + new_banks * bank_fit_1.5B
         (+ the evaluation the embedded book reads from the package, in Chapter 6)

where ``new_banks`` are the banks that the embedded book reads from the package and another
model must train (each once; the cache keeps them for later chapters).

    python benchmarks/estimate_t4.py --book-quick Q.json --book-full F.json [--tiny T.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import report

ROOT = Path(__file__).resolve().parents[1]
STEP_T4_S = 0.030
QWEN_LAYERS, QWEN_HIDDEN = 28, 1536
# Banks another model trains in each chapter, running the chapters in order with one cache
# (the embedded model reads them all from the package): Chapter 1's naive banks, Chapter 3's
# controlled ones, Chapter 4's achievement bank where Chapter 3 skipped it, Chapter 6's
# naive banks for its w/o-CCD rows, Chapter 7's ten controlled banks.
NEW_BANKS = {"quick": {"01_context_bias": 2, "03_probing": 3, "04_steering": 1,
                       "06_evaluation": 1, "07_value_circle": 6},
             "full": {"01_context_bias": 4, "03_probing": 10, "06_evaluation": 6}}
# Share of a full cold evaluate that Chapter 6 runs for a model without a shipped table:
# 2 of 10 values and 5 of 30 prompts in quick mode, everything in full.
EVAL_SHARE = {"quick": 2 / 10 * 5 / 30, "full": 1.0}


def last_json(path: Path) -> dict:
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])


def tiny_chapters() -> dict:
    """Quick-mode seconds per chapter on a tiny random-init Llama, empty cache."""
    import nbformat
    from nbclient import NotebookClient

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import save_reader_model
    work = Path(tempfile.mkdtemp(prefix="conva-tiny-"))
    save_reader_model(work / "model")
    saved = dict(os.environ)                 # the kernels inherit this environment
    os.environ.update(CONVA_MODEL=str(work / "model"), CONVA_QUICK="1",
                      CONVA_NB_CACHE=str(work / "cache"), HF_HUB_OFFLINE="1",
                      TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    out = {}
    try:
        for path in sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            t0 = time.perf_counter()
            NotebookClient(nb, timeout=1800, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            out[path.stem] = round(time.perf_counter() - t0, 1)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return out


def step_cpu(model, tok) -> float:
    """Seconds per decode step of ``model`` at batch 16 (fastest of two runs)."""
    import torch

    from conva_nb.datasets import load_prompts
    from conva_nb.prompting import frame
    qs = [frame(tok, r["prompt"]) for r in load_prompts("value", split="test")[:16]]
    enc = tok(qs, return_tensors="pt", padding=True, add_special_tokens=False)
    kw = dict(do_sample=False, pad_token_id=tok.pad_token_id)
    best = {}
    for n in (1, 33):
        runs = []
        for _ in range(2):
            t0 = time.perf_counter()
            with torch.no_grad():
                model.generate(**enc, max_new_tokens=n, min_new_tokens=n, **kw)
            runs.append(time.perf_counter() - t0)
        best[n] = min(runs)
    return (best[33] - best[1]) / 32          # prefill cancels out


def bank_fit(model, tok, value: str = "power", layers=(4, 10)) -> dict:
    """Seconds of one layer's grid fit at the embedded width and at 1536 (mean of layers)."""
    from conva_nb.datasets import load_pairs
    from conva_nb.probes import fit_layer, pair_arrays
    x, y, g = pair_arrays(model, tok, load_pairs(value, "train"), progress=False)
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((QWEN_HIDDEN, x.shape[-1])))
    secs = {"embedded": [], "wide": []}
    for layer in layers:
        xl = x[:, layer]
        for name, feats in (("embedded", xl), ("wide", xl @ q.T.astype(np.float32))):
            t0 = time.perf_counter()
            fit_layer(feats, y, g)
            secs[name].append(time.perf_counter() - t0)
    return {k: float(np.mean(v)) for k, v in secs.items()} | {"n_layers_embedded": x.shape[1],
                                                             "n_sentences": len(x)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--book-quick", type=Path, required=True, help="bench_book.py --quick output")
    ap.add_argument("--book-full", type=Path, required=True, help="bench_book.py output")
    ap.add_argument("--tiny", type=Path, default=None,
                    help="a JSON {chapter: seconds} from an earlier run (else measured now)")
    ap.add_argument("--evaluate-cpu-s", type=float, default=None,
                    help="a cold evaluate of all values on this CPU (bench_experiments.py)")
    args = ap.parse_args()
    from conva_nb.models import load_model
    book = {"quick": last_json(args.book_quick)["chapters_s"],
            "full": last_json(args.book_full)["chapters_s"]}
    tiny = json.loads(args.tiny.read_text()) if args.tiny else tiny_chapters()
    model, tok = load_model("embedded")
    step = step_cpu(model, tok)
    fit = bank_fit(model, tok)
    bank_wide_s = fit["wide"] * QWEN_LAYERS
    rho = STEP_T4_S / step
    est = {}
    for mode in ("quick", "full"):
        rows = {}
        for ch, cpu_s in book[mode].items():
            base = tiny.get(ch, 0.0)
            t = base + max(0.0, cpu_s - base) * rho + NEW_BANKS[mode].get(ch, 0) * bank_wide_s
            if ch == "06_evaluation" and args.evaluate_cpu_s:
                t += args.evaluate_cpu_s * EVAL_SHARE[mode] * rho
            rows[ch] = round(t)
        rows["total"] = sum(rows.values())
        est[mode] = rows
    report("estimate_t4", {
        "assumed_step_t4_s": STEP_T4_S, "step_cpu_embedded_s": round(step, 4),
        "model_speedup_t4_vs_cpu": round(1 / rho, 1),
        "bank_fit_embedded_s": round(fit["embedded"] * fit["n_layers_embedded"], 1),
        "bank_fit_1p5b_s": round(bank_wide_s, 1), "tiny_s": tiny,
        "embedded_cpu_s": book, "t4_estimate_s": est})


if __name__ == "__main__":
    main()
