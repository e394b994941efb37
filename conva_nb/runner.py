"""The experiment runner behind ``conva-nb evaluate`` and ``conva-nb calibrate``.

Every generation, choice log-likelihood and perplexity is stored in one JSON Lines
file per model (``<cache>/runs/<model fingerprint>/records.jsonl``), keyed by what
decides it (method settings, question, decoding), so a re-run computes only what changed
and an interrupted run resumes where it stopped.

Gated methods are composed row by row: the gate reads each question once; where it
is closed the steering hooks are an exact no-op (a property the tests check), so the
row's output *is* the unsteered output and is taken from the ``none`` records; where it
is open the row is generated with the same steering and no gate. A gated method and its
ungated twin therefore share their open rows' generations.

The runner asks for shared-prefix computation everywhere; :mod:`conva_nb.prefix` uses it
only where it is exact (no edit that needs each prompt whole).
"""
from __future__ import annotations

import re

import numpy as np
from tqdm.auto import tqdm

from .cache import RunStore, cache_dir, fingerprint
from .methods import MethodConfig, question_for, steering_context
from .models import model_identity
from .probes import get_bank
from .prompting import GEN_DEFAULTS, frame, generate
from .scoring import continuation_logprobs, perplexities

__all__ = ["Runner", "answer_match"]


def _chunks(items: list, size: int) -> list[list]:
    """``items`` in batches of ``size``; a last batch of at most ``size // 4`` joins the one
    before it: a decode step costs a fixed part plus a part per row, so 40 prompts run
    faster as one batch of 40 than as 32 + 8."""
    out = [items[i:i + size] for i in range(0, len(items), size)]
    if len(out) > 1 and len(out[-1]) <= size // 4:
        tail = out.pop()
        out[-1] = out[-1] + tail
    return out


def _norm_answer(s: str) -> str:
    return " ".join(re.findall(r"[a-z0-9.]+", s.lower())).strip(" .")


def answer_match(text: str, answer: str) -> bool:
    """Normalised answer match: the reference (lower case, no punctuation) occurs in the text."""
    a = _norm_answer(answer)
    return bool(a) and f" {a} " in f" {_norm_answer(text)} "


class Runner:
    """Cached generation, scoring and gating for one model.

    counters: ``generated`` (new generations), ``scored`` (new choice sets),
    ``perplexities`` (new perplexities) — what a re-run had to compute.
    banks: ``{(value, data): ProbeBank}`` to use instead of the cache lookup.
    """

    def __init__(self, model, tokenizer, store: RunStore | None = None, batch_size: int = 32,
                 max_new_tokens: int = GEN_DEFAULTS["max_new_tokens"], progress: bool = True,
                 banks: dict | None = None):
        self.model, self.tok = model, tokenizer
        self.store = store or RunStore(cache_dir() / "runs" / fingerprint(model_identity(model))
                                       / "records.jsonl")
        self.batch_size, self.max_new_tokens, self.progress = batch_size, max_new_tokens, progress
        self.banks = banks if banks is not None else {}
        self.counters = {"generated": 0, "scored": 0, "perplexities": 0}

    # --- banks and gates ------------------------------------------------------------------
    def bank(self, value: str, data: str = "controlled"):
        if (value, data) not in self.banks:
            self.banks[(value, data)] = get_bank(self.model, self.tok, value, data=data,
                                                 progress=False)
        return self.banks[(value, data)]

    def _bank_for(self, cfg: MethodConfig):
        data = cfg.spec.probe_data
        return self.bank(cfg.value, data) if data else None

    def gate_open(self, gate, cfg: MethodConfig, questions: list[str]) -> list[bool]:
        """One gate decision per question: the gate's for gated methods, else whether the
        method steers at all."""
        m = cfg.spec
        if not m.gated or gate is None:
            return [m.steers] * len(questions)
        return [bool(x) for x in gate.decide(questions)]

    def _context(self, cfg: MethodConfig):
        return steering_context(self.model, self.tok, cfg, gate=None, bank=self._bank_for(cfg))

    # --- generation -----------------------------------------------------------------------
    def _gen_key(self, cfg: MethodConfig, q: str, max_new_tokens: int) -> str:
        return fingerprint(["gen", cfg.key(), q, max_new_tokens, GEN_DEFAULTS])

    def _generate_missing(self, cfg: MethodConfig, questions: list[str], max_new_tokens: int,
                          desc: str) -> None:
        keys = {q: self._gen_key(cfg, q, max_new_tokens) for q in questions}
        todo = [q for q in dict.fromkeys(questions) if keys[q] not in self.store]
        if not todo:
            return
        with tqdm(total=len(todo), desc=desc, disable=not self.progress, leave=False) as bar:
            for chunk in _chunks(todo, self.batch_size):
                with self._context(cfg):
                    texts = generate(self.model, self.tok, [question_for(cfg, q) for q in chunk],
                                     batch_size=len(chunk), max_new_tokens=max_new_tokens,
                                     share_prefix=True)
                self.store.put_many({keys[q]: t for q, t in zip(chunk, texts)})
                self.counters["generated"] += len(chunk)
                bar.update(len(chunk))

    def outputs(self, cfg: MethodConfig, questions: list[str], gate=None,
                max_new_tokens: int | None = None) -> tuple[list[str], list[bool]]:
        """Answers of ``cfg`` to ``questions`` and the gate decision per question."""
        mnt = max_new_tokens or self.max_new_tokens
        m = cfg.spec
        opened = self.gate_open(gate, cfg, questions)
        none = MethodConfig("none", cfg.value)
        if m.steers:
            self._generate_missing(cfg, [q for q, o in zip(questions, opened) if o], mnt,
                                   f"{cfg.method} {cfg.value}")
            closed = [q for q, o in zip(questions, opened) if not o]
            if closed:
                self._generate_missing(none, closed, mnt, f"none {cfg.value}")
        else:
            self._generate_missing(cfg, questions, mnt, f"{cfg.method} {cfg.value}")
        use = [cfg if (o or not m.steers) else none for o in opened]
        return [self.store[self._gen_key(u, q, mnt)] for u, q in zip(use, questions)], opened

    # --- capability -----------------------------------------------------------------------
    def choice_scores(self, cfg: MethodConfig, rows: list[dict], gate=None) -> list[list[float]]:
        """Log-likelihood of each choice of each multiple-choice row under ``cfg``."""
        m = cfg.spec
        opened = self.gate_open(gate, cfg, [r["prompt"] for r in rows])
        none = MethodConfig("none", cfg.value)
        use = [cfg if (o or not m.steers) else none for o in opened]
        keys = [fingerprint(["mc", u.key(), r["prompt"], r["choices"]]) for u, r in zip(use, rows)]
        for u in {repr(u.key()): u for u in use}.values():
            todo = {k: r for k, r, uu in zip(keys, rows, use)
                    if uu.key() == u.key() and k not in self.store}
            todo = list(todo.items())
            per = max(1, self.batch_size // 4)
            for i in range(0, len(todo), per):
                chunk = todo[i:i + per]
                texts, conts = [], []
                for _, r in chunk:
                    t = frame(self.tok, question_for(u, r["prompt"]))
                    texts += [t] * len(r["choices"])
                    conts += list(r["choices"])
                with self._context(u):
                    ll, _ = continuation_logprobs(self.model, self.tok, texts, conts,
                                                  self.batch_size, share_prefix=True)
                items, j = {}, 0
                for k, r in chunk:
                    items[k] = [float(x) for x in ll[j:j + len(r["choices"])]]
                    j += len(r["choices"])
                self.store.put_many(items)
                self.counters["scored"] += len(chunk)
        return [self.store[k] for k in keys]

    def capability(self, cfg: MethodConfig, rows: list[dict], gate=None,
                   answers: bool = False) -> dict:
        """Multiple-choice accuracy (log-likelihood), reference log-likelihood, gate-open rate;
        with ``answers=True`` also the normalised answer match of a short generated answer."""
        ll = self.choice_scores(cfg, rows, gate)
        acc = [r["choices"][int(np.argmax(s))] == r["answer"] for s, r in zip(ll, rows)]
        ref = [s[r["choices"].index(r["answer"])] for s, r in zip(ll, rows)]
        out = {"mc_acc": float(np.mean(acc)), "ref_loglik": float(np.mean(ref)),
               "gate_open_rate": float(np.mean(self.gate_open(gate, cfg,
                                                              [r["prompt"] for r in rows]))),
               "per_row_mc": [bool(a) for a in acc]}
        if answers:
            texts, _ = self.outputs(cfg, [r["prompt"] for r in rows], gate, max_new_tokens=12)
            out["answer_match"] = float(np.mean([answer_match(t, r["answer"])
                                                 for t, r in zip(texts, rows)]))
        return out

    # --- fluency --------------------------------------------------------------------------
    def perplexities(self, questions: list[str], texts: list[str]) -> np.ndarray:
        """Perplexity of each answer under the unsteered model (cached)."""
        keys = [fingerprint(["ppl", q, t]) for q, t in zip(questions, texts)]
        todo = {k: (q, t) for k, q, t in zip(keys, questions, texts) if k not in self.store}
        if todo:
            qs, ts = zip(*todo.values())
            ppl = perplexities(self.model, self.tok, [frame(self.tok, q) for q in qs], list(ts),
                               self.batch_size, share_prefix=True)
            self.store.put_many({k: (float(p) if np.isfinite(p) else None)
                                 for k, p in zip(todo, ppl)})
            self.counters["perplexities"] += len(todo)
        return np.array([np.inf if self.store[k] is None else self.store[k] for k in keys])
