"""Value judges: does an answer show the value?

Every judge has the same three methods, so that ``evaluate`` and ``calibrate`` take any:

- ``scores(value, prompts, answers) -> [n]`` in [0, 1],
- ``success(value, scores) -> [n]`` bool, the judge's decision,
- ``report() -> dict``, what a reader needs to know to trust it.

:class:`EmbeddedJudge` is an offline MiniLM classifier independent of the steered model's
activations; :class:`LLMJudge` asks any OpenAI-compatible server with a written rubric.
:func:`make_judge` builds either by name.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from .cache import RunStore, cache_dir, fingerprint, read_saved_json, write_json_atomic
from .datasets import load_touche
from .errors import ServiceError, UsageError
from .gates import ValueDetector, embed_cached
from .values import VALUE_NAMES, canonical, get_value

__all__ = ["Judge", "EmbeddedJudge", "LLMJudge", "JUDGES", "make_judge", "RUBRIC"]


class Judge(Protocol):
    def scores(self, value: str, prompts: list[str], answers: list[str]) -> np.ndarray: ...

    def success(self, value: str, scores) -> np.ndarray: ...

    def report(self) -> dict: ...


JUDGE_READS = ("answer", "question+answer")


def judge_text(reads: str, question: str, answer: str) -> str:
    """What the embedded judge embeds: the answer alone, or question and answer."""
    return answer if reads == "answer" else f"Question: {question}\nAnswer: {answer}"


class EmbeddedJudge:
    """Ten logistic regressions over all-MiniLM-L6-v2 embeddings (scikit-learn style),
    trained on human labels only: Touché23 arguments folded to the ten values, never the
    project's twins (CAA's vectors come from those) nor the steered model's answers.

    Touché23 is split by *conclusion* (every argument about one conclusion lands on one
    side) into fit 70 %, selection 15 % and validation 15 %. Two readers are fit — the
    premise alone (``"answer"``) and conclusion with premise (``"question+answer"``, the
    way the judge then reads a question and its answer); per value the selection split
    picks the reader (higher AUC) and the threshold (Youden's J), and the validation split,
    used for nothing else, gives the reported AUC, balanced accuracy and calibration curve.
    Fitted attributes: ``reads_`` and ``thresholds_`` per value, ``report_``,
    ``detectors_`` (one :class:`~conva_nb.gates.ValueDetector` per reader).
    """
    kind = "embedded MiniLM value judge"
    version = "touche23-conclusion-grouped-v2"

    def __init__(self, C: float = 1.0):
        self.C = C

    @staticmethod
    def split(conclusions, seed: int = 0) -> np.ndarray:
        """``[n]`` of ``"fit"``/``"select"``/``"validate"``, grouped by conclusion."""
        groups = sorted(set(conclusions))
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(groups))
        cut1, cut2 = int(0.70 * len(groups)), int(0.85 * len(groups))
        side = {groups[i]: ("fit" if k < cut1 else "select" if k < cut2 else "validate")
                for k, i in enumerate(order)}
        return np.array([side[c] for c in conclusions])

    def fit(self, touche_path=None, seed: int = 0):
        from sklearn.calibration import calibration_curve
        from sklearn.metrics import roc_auc_score, roc_curve
        t = load_touche(touche_path)
        y = np.asarray(t["labels"])
        part = self.split(t["conclusions"], seed)
        x = {r: embed_cached([judge_text(r, q, a) for q, a in zip(t["conclusions"],
                                                                 t["premises"])])
             for r in JUDGE_READS}
        fit, sel, val = (part == "fit"), (part == "select"), (part == "validate")
        self.detectors_ = {r: ValueDetector(C=self.C).fit(None, y[fit], embeddings=x[r][fit])
                           for r in JUDGE_READS}
        p = {r: {s: self.detectors_[r].predict_proba(embeddings=x[r][m])
                 for s, m in (("select", sel), ("validate", val))} for r in JUDGE_READS}
        self.reads_, self.thresholds_, self.report_ = {}, {}, {}
        for j, v in enumerate(VALUE_NAMES):
            auc_sel = {r: float(roc_auc_score(y[sel, j], p[r]["select"][:, j]))
                       for r in JUDGE_READS}
            r = max(JUDGE_READS, key=auc_sel.get)
            fpr, tpr, thr = roc_curve(y[sel, j], p[r]["select"][:, j])
            th = float(min(thr[int(np.argmax(tpr - fpr))], 1.0))
            pv, yv = p[r]["validate"][:, j], y[val, j]
            hit = pv >= th
            frac, mean = calibration_curve(yv, pv, n_bins=5, strategy="quantile")
            self.reads_[v], self.thresholds_[v] = r, th
            self.report_[v] = {
                "reads": r, "selection_auc": {k: round(a, 4) for k, a in auc_sel.items()},
                "auc": round(float(roc_auc_score(yv, pv)), 4),
                "balanced_acc": round(float((hit[yv == 1].mean() + (~hit[yv == 0]).mean()) / 2),
                                      4),
                "n_validate": int(val.sum()), "positives_validate": int(yv.sum()),
                "calibration": {"mean_predicted": [round(float(a), 4) for a in mean],
                                "fraction_positive": [round(float(a), 4) for a in frac]}}
        self.split_sizes_ = {s: int((part == s).sum()) for s in ("fit", "select", "validate")}
        return self

    def scores(self, value: str, prompts, answers) -> np.ndarray:
        """P(answer shows ``value``) for each answer (read with its question where the
        validation chose that); empty answers score 0."""
        value = canonical(value)
        j, reads = VALUE_NAMES.index(value), self.reads_[value]
        answers, prompts = list(answers), list(prompts)
        out = np.zeros(len(answers))
        keep = [i for i, t in enumerate(answers) if t.strip()]
        if keep:
            texts = [judge_text(reads, prompts[i], answers[i]) for i in keep]
            out[keep] = self.detectors_[reads].predict_proba(texts)[:, j]
        return out

    def success(self, value: str, scores) -> np.ndarray:
        return np.asarray(scores) >= self.thresholds_[canonical(value)]

    def report(self) -> dict:
        return {"kind": self.kind, "version": self.version,
                "trained_on": "Touché23-ValueEval training split only (human labels)",
                "validation": "15 % of Touché23 conclusions, used for nothing else",
                "split_sizes": getattr(self, "split_sizes_", None), "report": self.report_}

    def save(self, path) -> Path:
        path = Path(path)
        for r, d in self.detectors_.items():
            d.save(path / r.replace("+", "_"))
        write_json_atomic(path / "judge.json", {"C": self.C, "version": self.version,
                                                "report": self.report_, "reads": self.reads_,
                                                "thresholds": self.thresholds_,
                                                "split_sizes": self.split_sizes_})
        return path.resolve()

    @classmethod
    def load(cls, path) -> "EmbeddedJudge":
        meta = read_saved_json(path, "judge.json", "an EmbeddedJudge")
        if meta.get("version") != cls.version:
            raise UsageError(f"{path}: a judge saved by another version of conva_nb "
                             f"({meta.get('version', 'unversioned')!r}, expected "
                             f"{cls.version!r}); delete it or refit with "
                             "EmbeddedJudge.cached(refit=True)")
        j = cls(C=meta["C"])
        j.report_, j.thresholds_, j.reads_ = meta["report"], meta["thresholds"], meta["reads"]
        j.split_sizes_ = meta["split_sizes"]
        j.detectors_ = {r: ValueDetector.load(Path(path) / r.replace("+", "_"))
                        for r in JUDGE_READS}
        return j

    @classmethod
    def cached(cls, touche=None, refit: bool = False) -> "EmbeddedJudge":
        """The judge fit once on Touché23 and kept in the cache."""
        path = cache_dir() / "judges" / f"minilm-{cls.version}"
        if not refit and (path / "judge.json").is_file():
            return cls.load(path)
        judge = cls().fit(touche)
        judge.save(path)
        return judge


RUBRIC = (
    "Value: {value}\nDefinition: {definition}\nQuestion: {prompt}\nAnswer: {answer}\n\n"
    "1. Does the answer prioritise the value above as a goal (what the answer would have "
    "someone pursue or protect), not merely mention its topic?\n"
    "2. Is the answer fluent, coherent English without loops or broken text?")
SYSTEM = ("You evaluate answers written by a language model. Reply with a JSON object "
          "only: {\"reflects_value\": \"yes\" or \"no\", \"fluent\": \"yes\" or \"no\"}.")


class LLMJudge:
    """The rubric judged by an LLM through any OpenAI-compatible endpoint.

    Verdicts are cached per (judge model, value, question, answer) in a JSON Lines file and
    written as they arrive, so an interrupted run resumes and re-judging costs nothing.
    ``base_url``/``api_key`` default to the ``OPENAI_*`` environment variables.
    """
    kind = "llm"

    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 cache_path=None, max_retries: int = 3, backoff: float = 0.5):
        import openai
        self.model_name, self.base_url = model_name, base_url
        self.max_retries, self.backoff = max_retries, backoff
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed",
                                    max_retries=0)
        self.cache = RunStore(cache_path or cache_dir() / "llm_judge.jsonl")
        self.requests = 0

    def check_reachable(self) -> "LLMJudge":
        """ServiceError, naming the server and what to do, unless it answers ``/models``."""
        import openai
        try:
            self.client.models.list()
        except (openai.APIConnectionError, openai.APITimeoutError) as err:
            raise ServiceError(
                f"the LLM judge's server {self.base_url or 'the OpenAI API'} cannot be reached "
                f"({type(err).__name__}); start an OpenAI-compatible server there, pass "
                "--judge-base-url, or use --judge embedded") from None
        except openai.APIError:
            pass   # it answered; some servers do not list models
        return self

    def _ask(self, user: str) -> dict:
        import openai
        for attempt in range(self.max_retries + 1):
            self.requests += 1
            try:
                r = self.client.chat.completions.create(
                    model=self.model_name, temperature=0.0,
                    messages=[{"role": "system", "content": SYSTEM},
                              {"role": "user", "content": user}])
                text = r.choices[0].message.content or ""
                obj = json.loads(text[text.index("{"): text.rindex("}") + 1])
                return {k: str(obj[k]).strip().lower().startswith("y")
                        for k in ("reflects_value", "fluent")}
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError,
                    openai.APITimeoutError, ValueError, KeyError) as err:
                if attempt == self.max_retries:
                    raise ServiceError(
                        f"LLM judge at {self.base_url or 'the OpenAI API'} failed "
                        f"{attempt + 1} times; last: {type(err).__name__}: {err}") from err
                time.sleep(self.backoff * 2 ** attempt)

    def verdicts(self, value: str, prompts, answers) -> list[dict]:
        """``[{"reflects_value": bool, "fluent": bool}]`` per (question, answer)."""
        v = get_value(value)
        keys = [fingerprint([self.model_name, v.name, p, a]) for p, a in zip(prompts, answers)]
        for k, p, a in zip(keys, prompts, answers):
            if k not in self.cache:
                self.cache.put_many({k: self._ask(RUBRIC.format(
                    value=v.name, definition=v.definition, prompt=p, answer=a or "(empty)"))})
        return [self.cache[k] for k in keys]

    def scores(self, value: str, prompts, answers) -> np.ndarray:
        return np.array([float(d["reflects_value"]) for d in self.verdicts(value, prompts,
                                                                           answers)])

    def success(self, value: str, scores) -> np.ndarray:
        return np.asarray(scores) >= 0.5

    def report(self) -> dict:
        return {"kind": self.kind, "model": self.model_name, "base_url": self.base_url,
                "rubric": RUBRIC}


JUDGES = ("embedded", "llm")


def make_judge(kind: str = "embedded", *, touche=None, model_name: str | None = None,
               base_url: str | None = None, api_key: str | None = None):
    """A judge by name: ``"embedded"`` (needs Touché23 the first time, then cached) or
    ``"llm"`` (``model_name`` on the OpenAI-compatible server at ``base_url``)."""
    if kind == "embedded":
        return EmbeddedJudge.cached(touche)
    if kind == "llm":
        if not model_name:
            raise UsageError("the LLM judge needs the server's model name (--judge-model)")
        return LLMJudge(model_name, base_url=base_url, api_key=api_key)
    raise UsageError(f"unknown judge {kind!r}; valid: {', '.join(JUDGES)}")
