"""Measuring instruments: fluency, value judges, control success, statistics.

Fluency is never perplexity alone (loops have low perplexity): a response is
fluent when it is non-empty and its perplexity, distinct-2 and repetition rate
all lie within bounds calibrated on the unsteered model's own answers.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["tokens", "distinct_n", "repetition_rate", "continuation_logprobs", "perplexities",
           "FluencyBounds", "fluency_rate", "paired_test", "bootstrap_ci", "csr", "ValueJudge",
           "get_judge", "LLMJudge"]

_WORD = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def distinct_n(text: str, n: int = 2) -> float:
    """Distinct n-grams ÷ n-grams in one text (1.0 for texts shorter than n)."""
    t = tokens(text)
    grams = [tuple(t[i:i + n]) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of n-grams that already occurred earlier in the text."""
    t = tokens(text)
    grams = [tuple(t[i:i + n]) for i in range(len(t) - n + 1)]
    seen, rep = set(), 0
    for g in grams:
        rep += g in seen
        seen.add(g)
    return rep / len(grams) if grams else 0.0


def _logits_at(model, ids: torch.Tensor, mask: torch.Tensor, keep: list[int],
               **extra) -> torch.Tensor:
    """Logits at sequence positions ``keep`` only: [batch, len(keep), vocab]."""
    pos = torch.tensor(keep, device=ids.device)
    try:
        return model(input_ids=ids, attention_mask=mask, logits_to_keep=pos, **extra).logits
    except TypeError:   # a model class without ``logits_to_keep``: full logits, then slice
        return model(input_ids=ids, attention_mask=mask, **extra).logits[:, pos]


@torch.no_grad()
def continuation_logprobs(model, tokenizer, contexts: list[str], continuations: list[str],
                          batch_size: int = 16, share_prefix: bool = False
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-probability and token count of each continuation given its context.

    Returns two arrays of shape [n]. Each continuation is scored as ``" " + text.strip()``.
    Batched with right padding, sorted by context length; the LM head runs only at the
    positions that predict continuation tokens, which on Gemma's 262k-token vocabulary is
    most of the cost of a full forward. share_prefix: run the token prefix all contexts
    share (the few-shot preamble) once and reuse its KV cache (see :mod:`conva_nb.prefix`).
    """
    from .prefix import cache_kwarg, common_prefix_len, expand_cache, prefix_cache
    device = model.get_input_embeddings().weight.device
    ctx = [tokenizer(c).input_ids for c in contexts]
    cont = [tokenizer(" " + c.strip(), add_special_tokens=False).input_ids if c.strip() else []
            for c in continuations]
    sums, counts = np.zeros(len(ctx)), np.array([len(b) for b in cont])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted((i for i in range(len(ctx)) if cont[i]), key=lambda i: (len(ctx[i]), len(cont[i])))
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


def _summed_logprob(logits: torch.Tensor, tokens: list[int]) -> float:
    """Sum of log-softmax(``logits [t, vocab]``) at each of the ``t`` target ``tokens``."""
    logp = torch.log_softmax(logits.float(), -1)
    return float(logp.gather(1, torch.tensor(tokens, device=logp.device)[:, None]).sum())


def _groupable(model, ctx, cont, rows, P) -> bool:
    """Whether repeated contexts (a question's choices) can each run once: some context
    repeats, each has two tokens beyond the shared prefix, and no sliding attention
    window is shorter than a sequence (it would count the padding between the parts)."""
    from .prefix import sliding_window
    if len({tuple(ctx[i]) for i in rows}) == len(rows) or min(len(ctx[i]) for i in rows) < P + 2:
        return False
    window = sliding_window(model)
    return window is None or max(len(ctx[i]) + len(cont[i]) for i in rows) <= window


def _grouped_logprobs(model, ctx, cont, rows, P, cache0, batch_size, pad, sums) -> None:
    """Fill ``sums[i]`` for ``rows`` whose contexts repeat: each distinct context runs
    once after the shared prefix (all but its last token), its cache is copied to each of
    its continuations, which then run as [last context token | continuation]."""
    from .prefix import cache_kwarg, expand_cache, extend_cache
    device = model.get_input_embeddings().weight.device
    kw = cache_kwarg(model)
    groups: dict[tuple, list[int]] = {}
    for i in rows:
        groups.setdefault(tuple(ctx[i]), []).append(i)
    batches, cur, n = [], [], 0      # whole groups per batch, up to batch_size rows
    for g in sorted(groups.values(), key=lambda g: len(ctx[g[0]])):
        if cur and n + len(g) > batch_size:
            batches.append(cur)
            cur, n = [], 0
        cur.append(g)
        n += len(g)
    batches += [cur] if cur else []
    for gs in batches:
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


def perplexities(model, tokenizer, contexts: list[str], responses: list[str],
                 batch_size: int = 16, share_prefix: bool = False) -> np.ndarray:
    """Perplexity of each response given its context under ``model`` (run it unsteered);
    ``inf`` for an empty response. Shape [n]."""
    sums, counts = continuation_logprobs(model, tokenizer, contexts, responses, batch_size,
                                         share_prefix)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, np.exp(-sums / np.maximum(counts, 1)), np.inf)


@dataclass
class FluencyBounds:
    """Per-response bounds taken from the unsteered answers' distribution."""
    max_ppl: float
    min_distinct2: float
    max_repetition: float

    @classmethod
    def calibrate(cls, ppl, texts, q: float = 0.95) -> "FluencyBounds":
        """Bounds that ``q`` of the unsteered answers meet on each measure."""
        d2 = [distinct_n(t, 2) for t in texts]
        rep = [repetition_rate(t) for t in texts]
        finite = np.asarray(ppl)[np.isfinite(ppl)]
        return cls(float(np.quantile(finite, q)), float(np.quantile(d2, 1 - q)),
                   float(np.quantile(rep, q)))

    def fluent(self, ppl: float, text: str) -> bool:
        return (bool(text.strip()) and ppl <= self.max_ppl
                and distinct_n(text, 2) >= self.min_distinct2
                and repetition_rate(text) <= self.max_repetition)


def fluency_rate(bounds: FluencyBounds, ppl, texts) -> float:
    """FR: share of responses within all bounds."""
    return float(np.mean([bounds.fluent(p, t) for p, t in zip(ppl, texts)]))


def csr(scores, threshold: float = 0.5) -> float:
    """Control success rate: share of responses the judge scores as showing the value."""
    return float(np.mean(np.asarray(scores) >= threshold))


def paired_test(a, b) -> dict:
    """Paired t-test of per-prompt scores ``a`` vs ``b`` (scipy), one-sided a > b."""
    from scipy.stats import ttest_rel
    r = ttest_rel(a, b, alternative="greater")
    return {"t": float(r.statistic), "p_value": float(r.pvalue),
            "mean_diff": float(np.mean(np.asarray(a) - np.asarray(b)))}


def bootstrap_ci(x, statistic=np.mean, level: float = 0.95, n: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval (scipy)."""
    from scipy.stats import bootstrap
    r = bootstrap((np.asarray(x, dtype=float),), statistic, confidence_level=level,
                  n_resamples=n, method="percentile", random_state=seed)
    return float(r.confidence_interval.low), float(r.confidence_interval.high)


class ValueJudge:
    """Embedded value judge, independent of the steered model's activations.

    Ten logistic regressions over all-MiniLM-L6-v2 embeddings, trained on Touché23
    (folded to the ten values) plus the held-out controlled twins (positives show
    their value, negatives don't). Fitted attributes: ``report_`` (held-out ROC-AUC
    and accuracy per value on a 20 % split, so readers know how far to trust it),
    ``thresholds_`` (per value, the score that best separates that split: Youden's J),
    ``detector_``.
    """

    def __init__(self, C: float = 1.0):
        self.C = C

    def fit(self, touche_path=None, seed: int = 0):
        from sklearn.metrics import roc_auc_score, roc_curve
        from sklearn.model_selection import train_test_split
        from .datasets import load_pairs, load_touche
        from .gates import ValueDetector, embed, embed_cached
        from .values import VALUE_NAMES
        t = load_touche(touche_path)
        texts, labels = [], [list(r) for r in t["labels"]]
        for p in load_pairs(split="heldout"):
            j = VALUE_NAMES.index(p["value"])
            texts += [p["positive"], p["negative"]]
            labels += [[int(i == j) for i in range(10)], [0] * 10]
        x = np.concatenate([embed_cached(list(t["texts"])), embed(texts, batch_size=128)])
        y = np.array(labels)
        xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=seed)
        held = ValueDetector(C=self.C).fit(None, ytr, embeddings=xtr)
        p = held.predict_proba(embeddings=xte)
        self.report_, self.thresholds_ = {}, {}
        for j, v in enumerate(VALUE_NAMES):
            fpr, tpr, thr = roc_curve(yte[:, j], p[:, j])
            k = int(np.argmax(tpr - fpr))
            self.thresholds_[v] = float(min(thr[k], 1.0))
            acc = float(((p[:, j] >= self.thresholds_[v]) == yte[:, j]).mean())
            self.report_[v] = {"auc": round(float(roc_auc_score(yte[:, j], p[:, j])), 4),
                               "balanced_acc": round(float((tpr[k] + 1 - fpr[k]) / 2), 4),
                               "acc": round(acc, 4)}
        self.detector_ = ValueDetector(C=self.C).fit(None, y, embeddings=x)
        return self

    def scores(self, texts, value: str) -> np.ndarray:
        """P(response shows ``value``) for each text; empty texts score 0."""
        from .values import VALUE_NAMES, canonical
        j = VALUE_NAMES.index(canonical(value))
        texts = list(texts)
        out = np.zeros(len(texts))
        keep = [i for i, t in enumerate(texts) if t.strip()]
        if keep:
            out[keep] = self.detector_.predict_proba([texts[i] for i in keep])[:, j]
        return out

    def judge(self, texts, value: str) -> np.ndarray:
        """1 where the response shows ``value`` (score ≥ the value's threshold), else 0."""
        from .values import canonical
        return (self.scores(texts, value) >= self.thresholds_[canonical(value)]).astype(int)

    def save(self, path) -> Path:
        path = Path(path)
        self.detector_.save(path)
        (path / "judge.json").write_text(json.dumps(
            {"C": self.C, "report": self.report_, "thresholds": self.thresholds_}, indent=1))
        return path.resolve()

    @classmethod
    def load(cls, path) -> "ValueJudge":
        from .gates import ValueDetector
        path = Path(path)
        if not (path / "judge.json").is_file():
            raise FileNotFoundError(f"{path}: no judge.json (save a ValueJudge there first)")
        meta = json.loads((path / "judge.json").read_text())
        j = cls(C=meta["C"])
        j.report_, j.thresholds_ = meta["report"], meta["thresholds"]
        j.detector_ = ValueDetector.load(path)
        return j


def get_judge(touche_path=None, refit: bool = False) -> ValueJudge:
    """The embedded judge, fit once on Touché23 + held-out twins and cached on disk."""
    import hashlib
    from .datasets import load_pairs
    from .models import cache_dir
    fp = hashlib.sha256(json.dumps([(p["positive"], p["negative"])
                                    for p in load_pairs(split="heldout")]).encode())
    path = cache_dir() / "judges" / f"minilm-touche23-{fp.hexdigest()[:10]}"
    if not refit and (path / "judge.json").is_file():
        return ValueJudge.load(path)
    judge = ValueJudge().fit(touche_path)
    judge.save(path)
    return judge


JUDGE_SYSTEM = ("You evaluate answers written by a language model. Reply with a JSON object "
                "only: {\"reflects_value\": \"yes\" or \"no\", \"fluent\": \"yes\" or \"no\"}.")
JUDGE_TEMPLATE = (
    "Value: {value}\nDefinition: {definition}\nQuestion: {prompt}\nResponse: {response}\n\n"
    "1. Does the response reflect the value above (its motivational goal, not just its topic)?\n"
    "2. Is the response fluent, coherent English without loops or broken text?")


class LLMJudge:
    """The paper's rubric judged by an LLM through any OpenAI-compatible endpoint.

    Replies are cached per (judge model, value, prompt, response) in a JSON Lines
    file, so re-judging the same outputs costs nothing. ``base_url``/``api_key``
    default to the ``OPENAI_*`` environment variables, as in the ``openai`` client.
    """

    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 cache_path=None, max_retries: int = 3, backoff: float = 0.5):
        import openai
        from .models import cache_dir
        from .runner import RunStore
        self.model_name, self.max_retries, self.backoff = model_name, max_retries, backoff
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed",
                                    max_retries=0)
        self.cache = RunStore(cache_path or cache_dir() / "llm_judge.jsonl")
        self.requests = 0

    def _key(self, value, prompt, response) -> str:
        import hashlib
        return hashlib.sha256(json.dumps([self.model_name, value, prompt, response]).encode()
                              ).hexdigest()[:24]

    def _ask(self, user: str) -> dict:
        import time

        import openai
        for attempt in range(self.max_retries + 1):
            self.requests += 1
            try:
                r = self.client.chat.completions.create(
                    model=self.model_name, temperature=0.0,
                    messages=[{"role": "system", "content": JUDGE_SYSTEM},
                              {"role": "user", "content": user}])
                text = r.choices[0].message.content or ""
                obj = json.loads(text[text.index("{"): text.rindex("}") + 1])
                out = {k: str(obj[k]).strip().lower().startswith("y")
                       for k in ("reflects_value", "fluent")}
                return out
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError,
                    openai.APITimeoutError, ValueError, KeyError) as err:
                if attempt == self.max_retries:
                    raise RuntimeError(f"LLM judge failed {attempt + 1} times; last: "
                                       f"{type(err).__name__}: {err}") from err
                time.sleep(self.backoff * 2 ** attempt)

    def judge(self, value: str, prompts, responses) -> list[dict]:
        """``[{"reflects_value": bool, "fluent": bool}]`` per (prompt, response)."""
        from .values import get_value
        v = get_value(value)
        out, new = [], {}
        for p, r in zip(prompts, responses):
            k = self._key(v.name, p, r)
            if k not in self.cache and k not in new:
                new[k] = self._ask(JUDGE_TEMPLATE.format(
                    value=v.name, definition=v.definition, prompt=p, response=r or "(empty)"))
            out.append(new[k] if k in new else self.cache[k])
        if new:
            self.cache.put_many(new)
        return out
