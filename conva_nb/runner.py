"""The experiment runner behind ``conva-nb evaluate`` and ``conva-nb calibrate``.

Every generation, choice log-likelihood and perplexity is stored in one JSON Lines
file per model (``<cache>/runs/<model>/records.jsonl``), keyed by what decides it
(method settings, question, decoding), so a re-run computes only what changed and an
interrupted run resumes where it stopped.

Gated methods are composed row by row: the gate reads each question once; where it
is closed the steering hooks are an exact no-op (a property the tests check), so the
row's output *is* the unsteered output and is taken from the ``none`` records;
where it is open the row is generated with the same steering and no gate. ConVA and
ConVA-without-gate therefore share their open rows' generations.

The runner puts no gate in the hooks and steers every token (``positions="all"``), so
each token's edit depends on that token alone: the few-shot preamble every prompt starts
with is computed once per batch and its KV cache reused (:mod:`conva_nb.prefix`), and a
multiple-choice question runs once for its four choices.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .methods import GATED, MethodConfig, question_for, steering_context
from .models import cache_dir, model_identity
from .prompting import GEN_DEFAULTS, frame, generate

__all__ = ["RunStore", "Runner", "answer_match"]


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


class RunStore:
    """Append-only JSONL store of computed records (``{"k": key, "v": value}``)."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.data: dict[str, object] = {}
        if self.path.exists():
            with self.path.open(encoding="utf-8") as fh:
                for line in fh:
                    try:
                        r = json.loads(line)
                    except json.JSONDecodeError:   # a line cut by an interrupted write
                        continue
                    self.data[r["k"]] = r["v"]

    def __contains__(self, k) -> bool:
        return k in self.data

    def __getitem__(self, k):
        return self.data[k]

    def put_many(self, items: dict) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            for k, v in items.items():
                fh.write(json.dumps({"k": k, "v": v}) + "\n")
        self.data.update(items)


def _chunks(items: list, size: int) -> list[list]:
    """``items`` in batches of ``size``; a last batch of at most ``size // 4`` joins the one
    before it: a decode step costs a fixed part plus a part per row, so 40 prompts run
    faster as one batch of 40 than as 32 + 8."""
    out = [items[i:i + size] for i in range(0, len(items), size)]
    if len(out) > 1 and len(out[-1]) <= size // 4:
        tail = out.pop()
        out[-1] = out[-1] + tail
    return out


def _token_local(cfg: MethodConfig) -> bool:
    """Whether ``cfg``'s hooks edit each token from its own hidden state alone, so a
    shared prefix can be computed once (the runner never puts a gate in the hooks)."""
    return cfg.positions == "all"


def answer_match(text: str, answer: str) -> bool:
    """Normalised answer match: the reference (lower case, no punctuation) occurs in the text."""
    import re
    norm = lambda s: " ".join(re.findall(r"[a-z0-9.]+", s.lower())).strip(" .")
    a = norm(answer)
    return bool(a) and f" {a} " in f" {norm(text)} "


class Runner:
    """Cached generation, scoring and gating for one model.

    counters: ``generated`` (new generations), ``scored`` (new choice sets),
    ``perplexities`` (new perplexities) — what a re-run had to compute.
    """

    def __init__(self, model, tokenizer, store: RunStore | None = None, batch_size: int = 32,
                 max_new_tokens: int = GEN_DEFAULTS["max_new_tokens"], progress: bool = True,
                 banks: dict | None = None):
        self.model, self.tok = model, tokenizer
        mid = model_identity(model)
        self.store = store or RunStore(cache_dir() / "runs" / _hash(mid)[:16] / "records.jsonl")
        self.batch_size, self.max_new_tokens, self.progress = batch_size, max_new_tokens, progress
        self.banks = banks if banks is not None else {}
        self.counters = {"generated": 0, "scored": 0, "perplexities": 0}
        self._gates: dict = {}

    # --- banks and gates ------------------------------------------------------------------
    def bank(self, value: str, data: str = "controlled"):
        from .probes import get_bank
        if (value, data) not in self.banks:
            self.banks[(value, data)] = get_bank(self.model, self.tok, value, data=data,
                                                 progress=False)
        return self.banks[(value, data)]

    def _banks_for(self, cfg: MethodConfig) -> dict:
        if cfg.method in ("none", "ica"):
            return {}
        data = "naive" if cfg.method == "conva-naive" else "controlled"
        return {data: self.bank(cfg.value, data)}

    def gate_open(self, gate, cfg: MethodConfig, questions: list[str]) -> list[bool]:
        """One gate decision per question (``True`` for ungated methods)."""
        if cfg.method not in GATED or cfg.extra.get("always_on") or gate is None:
            return [cfg.method not in ("none", "ica")] * len(questions)
        return [bool(x) for x in gate.decide(questions)]

    # --- generation -----------------------------------------------------------------------
    def _gen_key(self, cfg: MethodConfig, q: str, max_new_tokens: int) -> str:
        return _hash(["gen", cfg.key(), q, max_new_tokens, GEN_DEFAULTS])

    def _generate_missing(self, cfg: MethodConfig, questions: list[str], max_new_tokens: int,
                          desc: str) -> None:
        keys = {q: self._gen_key(cfg, q, max_new_tokens) for q in questions}
        todo = [q for q in dict.fromkeys(questions) if keys[q] not in self.store]
        if not todo:
            return
        from tqdm.auto import tqdm
        bs = self.batch_size
        with tqdm(total=len(todo), desc=desc, disable=not self.progress, leave=False) as bar:
            for chunk in _chunks(todo, bs):
                with steering_context(self.model, self.tok, cfg, gate=None,
                                      banks=self._banks_for(cfg)):
                    texts = generate(self.model, self.tok, [question_for(cfg, q) for q in chunk],
                                     batch_size=len(chunk), max_new_tokens=max_new_tokens,
                                     share_prefix=_token_local(cfg))
                self.store.put_many({keys[q]: t for q, t in zip(chunk, texts)})
                self.counters["generated"] += len(chunk)
                bar.update(len(chunk))

    def outputs(self, cfg: MethodConfig, questions: list[str], gate=None,
                max_new_tokens: int | None = None) -> tuple[list[str], list[bool]]:
        """Answers of ``cfg`` to ``questions`` and the gate decision per question."""
        mnt = max_new_tokens or self.max_new_tokens
        opened = self.gate_open(gate, cfg, questions)
        run_cfg = cfg.ungated() if cfg.method in GATED else cfg
        none = MethodConfig("none", cfg.value)
        steered = [q for q, o in zip(questions, opened) if o]
        plain = [q for q, o in zip(questions, opened) if not o] if cfg.method in GATED else []
        self._generate_missing(run_cfg, steered if cfg.method not in ("none", "ica")
                               else questions, mnt, f"{cfg.method} {cfg.value}")
        if plain:
            self._generate_missing(none, plain, mnt, f"none {cfg.value}")
        out = []
        for q, o in zip(questions, opened):
            use = run_cfg if (o or cfg.method not in GATED) else none
            out.append(self.store[self._gen_key(use, q, mnt)])
        return out, opened

    # --- capability -----------------------------------------------------------------------
    def _choice_logliks(self, texts: list[str], conts: list[str],
                        share_prefix: bool = True) -> list[float]:
        """Sum log-prob of each continuation given its text (batched, right padding)."""
        from .evaluation import continuation_logprobs
        sums, _ = continuation_logprobs(self.model, self.tok, texts, conts, self.batch_size,
                                        share_prefix)
        return [float(x) for x in sums]

    def choice_scores(self, cfg: MethodConfig, rows: list[dict], gate=None) -> list[list[float]]:
        """Log-likelihood of each choice of each multiple-choice row under ``cfg``."""
        opened = self.gate_open(gate, cfg, [r["prompt"] for r in rows])
        run_cfg = cfg.ungated() if cfg.method in GATED else cfg
        none = MethodConfig("none", cfg.value)
        use = [run_cfg if (o or cfg.method not in GATED) else none for o in opened]
        keys = [_hash(["mc", u.key(), r["prompt"], r["choices"]]) for u, r in zip(use, rows)]
        for u in {u.key().__repr__(): u for u in use}.values():
            todo = [(k, r) for k, r, uu in zip(keys, rows, use)
                    if uu.key() == u.key() and k not in self.store]
            todo = list({k: (k, r) for k, r in todo}.values())
            per = max(1, self.batch_size // 4)
            for i in range(0, len(todo), per):
                chunk = todo[i:i + per]
                texts, conts = [], []
                for _, r in chunk:
                    t = frame(self.tok, question_for(u, r["prompt"]))
                    texts += [t] * len(r["choices"])
                    conts += list(r["choices"])
                with steering_context(self.model, self.tok, u, gate=None,
                                      banks=self._banks_for(u)):
                    ll = self._choice_logliks(texts, conts, _token_local(u))
                items, j = {}, 0
                for k, r in chunk:
                    items[k] = ll[j:j + len(r["choices"])]
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
        from .evaluation import perplexities
        keys = [_hash(["ppl", q, t]) for q, t in zip(questions, texts)]
        todo = {k: (q, t) for k, q, t in zip(keys, questions, texts) if k not in self.store}
        if todo:
            qs, ts = zip(*todo.values())
            ppl = perplexities(self.model, self.tok, [frame(self.tok, q) for q in qs], list(ts),
                               self.batch_size, share_prefix=True)
            self.store.put_many({k: (float(p) if np.isfinite(p) else None)
                                 for k, p in zip(todo, ppl)})
            self.counters["perplexities"] += len(todo)
        return np.array([np.inf if self.store[k] is None else self.store[k] for k in keys])

