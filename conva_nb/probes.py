"""Per-layer logistic probes and value vectors.

At every decoder layer a logistic regression ``P(e) = sigmoid(w·e + b)`` is fit
on pooled activations of positive vs negative twins; ``v = w / ‖w‖`` is the
layer's value vector. Features are divided by one scalar per layer (the mean
activation norm) before fitting, so one grid of regularisation strengths suits
every layer; ``w`` and ``b`` are folded back into raw activation space.

Note for steering: the closed-form edit is ``(logit(P0) − w·e − b) / ‖w‖``, so
the edit size scales with ``1/‖w‖`` — stronger regularisation (smaller ``C``)
means a smaller ``‖w‖`` and larger edits at the same ``P0``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from threadpoolctl import threadpool_limits

from .activations import extract
from .cache import cache_dir, fingerprint
from .datasets import SPLITS, load_naive_pairs, load_negation_control, load_pairs
from .errors import UsageError
from .models import EMBEDDED_IDENTITY, decoder_layers, model_identity
from .values import canonical

__all__ = ["ProbeBank", "fit_layer", "middle_layers", "transfer_accuracy", "train_probes",
           "pair_arrays", "bank_path", "get_bank", "negation_control_accuracy", "DEFAULT_CS",
           "data_fingerprint", "SHIPPED_BANKS", "shipped_bank_path"]

DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass
class ProbeBank:
    """Probes of one value at every layer of one model.

    Attributes (all per layer, in ``layers`` order): ``W`` ``[L, H]`` float32,
    ``b`` ``[L]``, ``train_acc``, ``select_acc``, ``test_acc``, ``C``. ``v`` is ``W``
    row-normalised. Three disjoint sets of twins: ``train`` fits the probes,
    ``select`` makes every choice (C, layers, bands), ``heldout`` gives ``test_acc`` and is
    used for nothing else.
    """
    value: str
    model_id: str
    hidden_size: int
    n_layers: int
    pooling: str
    data: str
    layers: list[int]
    W: np.ndarray
    b: np.ndarray
    train_acc: np.ndarray
    test_acc: np.ndarray
    C: np.ndarray
    meta: dict = field(default_factory=dict)
    select_acc: np.ndarray | None = None

    def __post_init__(self):
        if self.select_acc is None:   # a bank built by hand (no twins): one accuracy for both
            self.select_acc = np.asarray(self.test_acc).copy()

    @property
    def v(self) -> np.ndarray:
        """Unit value vectors ``[L, H]``."""
        return self.W / np.linalg.norm(self.W, axis=1, keepdims=True)

    @property
    def w_norm(self) -> np.ndarray:
        return np.linalg.norm(self.W, axis=1)

    def probe(self, layer: int) -> tuple[np.ndarray, float]:
        """``(w, b)`` of one layer (decoder layer index, not row)."""
        i = self.layers.index(layer)
        return self.W[i], float(self.b[i])

    def acc(self, layer: int, split: str = "select") -> float:
        """Accuracy of one layer's probe on the ``select`` (choices) or ``test`` twins."""
        arr = {"select": self.select_acc, "test": self.test_acc, "train": self.train_acc}[split]
        return float(arr[self.layers.index(layer)])

    def best_layer(self, layers=None) -> int:
        """The layer (of ``layers``, default all) whose probe is best on the selection twins."""
        return max(list(layers or self.layers), key=self.acc)

    def select_layers(self, min_acc: float = 0.9, exclude_last: int = 5) -> list[int]:
        """Layers with selection accuracy ``> min_acc``, not among the last ``exclude_last``.

        Fallback when none passes: the single best allowed layer (so a weak value is still
        steerable, at its best layer; check ``test_acc``).
        """
        allowed = [l for l in self.layers if l < self.n_layers - exclude_last] or list(self.layers)
        chosen = [l for l in allowed if self.acc(l) > min_acc]
        return chosen or [self.best_layer(allowed)]

    def predict_proba(self, acts: np.ndarray, layer: int) -> np.ndarray:
        """P(value) for activations ``[n, H]`` at ``layer``."""
        w, b = self.probe(layer)
        return 1.0 / (1.0 + np.exp(-(acts.astype(np.float32) @ w + b)))

    def check_compatible(self, model) -> None:
        """UsageError if ``model`` has another layer count or hidden size."""
        n = len(decoder_layers(model))
        h = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.n_embd
        if (n, h) != (self.n_layers, self.hidden_size):
            raise UsageError(
                f"this {self.value} bank was trained on {self.model_id} ({self.n_layers} layers, "
                f"hidden size {self.hidden_size}); the model given has {n} layers, hidden size {h}."
                " Train a bank for this model (conva-nb probe --model ...)")

    def to_dict(self) -> dict:
        keys = ("value", "model_id", "hidden_size", "n_layers", "pooling", "data", "layers")
        d = {k: getattr(self, k) for k in keys}
        d.update(train_acc=self.train_acc.tolist(), select_acc=self.select_acc.tolist(),
                 test_acc=self.test_acc.tolist(), C=self.C.tolist(),
                 w_norm=self.w_norm.tolist(), meta=self.meta)
        return d

    def save(self, path) -> Path:
        """Write ``path/vectors.safetensors`` and ``path/bank.json``; returns the directory."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({"W": self.W.astype(np.float32), "b": self.b.astype(np.float32)},
                  str(path / "vectors.safetensors"))
        (path / "bank.json").write_text(json.dumps(self.to_dict(), indent=1))
        return path.resolve()

    @classmethod
    def load(cls, path, model=None) -> "ProbeBank":
        path = Path(path)
        if not (path / "bank.json").is_file() or not (path / "vectors.safetensors").is_file():
            raise UsageError(f"{path}: not a probe bank (needs bank.json and "
                                    "vectors.safetensors)")
        d = json.loads((path / "bank.json").read_text())
        if "select_acc" not in d:
            raise UsageError(f"{path}: a probe bank saved by an older conva_nb (its layers were "
                             "chosen on the held-out twins); retrain it with conva-nb probe")
        t = load_file(str(path / "vectors.safetensors"))
        bank = cls(value=d["value"], model_id=d["model_id"], hidden_size=d["hidden_size"],
                   n_layers=d["n_layers"], pooling=d["pooling"], data=d["data"],
                   layers=d["layers"], W=t["W"], b=t["b"], train_acc=np.array(d["train_acc"]),
                   test_acc=np.array(d["test_acc"]), C=np.array(d["C"]),
                   select_acc=np.array(d["select_acc"]), meta=d.get("meta", {}))
        if model is not None:
            bank.check_compatible(model)
        return bank


def fit_layer(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None, Cs=DEFAULT_CS,
              C=None, seed: int = 0, x_sel: np.ndarray | None = None,
              y_sel: np.ndarray | None = None):
    """Fit one probe with ``C`` fixed, or chosen over ``Cs``: on the selection twins
    ``x_sel [m, H]``, ``y_sel [m]`` when given (what :func:`train_probes` does; ties go to
    the smaller C), else by grouped 5-fold CV over ``groups [n]`` (twins share a group).

    x ``[n, H]``, y ``[n]`` 0/1. Returns raw-space ``(w [H], b, C, {C: score})``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, GroupKFold
    if C is None and x_sel is None and groups is None:
        raise UsageError("fit_layer needs a fixed C, selection twins or pair groups")
    scale = float(np.linalg.norm(x, axis=1).mean()) / np.sqrt(x.shape[1])
    xs = x / scale
    base = dict(max_iter=5000, random_state=seed)
    scores: dict = {}
    # One BLAS thread: LBFGS on a few hundred rows spends most of a multi-threaded
    # OpenBLAS call waking threads (8x slower per iteration at width 1536 on 2 cores).
    with threadpool_limits(limits=1, user_api="blas"):
        if C is not None:
            clf = LogisticRegression(C=float(C), **base).fit(xs, y)
        elif x_sel is not None:
            fits = {float(c): LogisticRegression(C=float(c), **base).fit(xs, y) for c in Cs}
            scores = {c: float(f.score(x_sel / scale, y_sel)) for c, f in fits.items()}
            C = max(fits, key=lambda c: (scores[c], -c))
            clf = fits[C]
        else:
            search = GridSearchCV(LogisticRegression(**base), {"C": list(Cs)},
                                  cv=GroupKFold(5), n_jobs=1).fit(xs, y, groups=groups)
            C = float(search.best_params_["C"])
            scores = dict(zip(map(float, Cs), search.cv_results_["mean_test_score"].tolist()))
            clf = search.best_estimator_
    w = (clf.coef_[0] / scale).astype(np.float32)
    return w, float(clf.intercept_[0]), float(C), scores


def pair_arrays(model, tokenizer, pairs: list[dict], pooling: str = "last", layers=None,
                progress: bool = True):
    """Activations ``[2n, L, H]``, labels (1 = positive) and pair groups for twins."""
    texts = [p["positive"] for p in pairs] + [p["negative"] for p in pairs]
    x = extract(model, tokenizer, texts, pooling=pooling, layers=layers, progress=progress)
    n = len(pairs)
    return x, np.r_[np.ones(n), np.zeros(n)].astype(int), np.r_[np.arange(n), np.arange(n)]


def _split_naive(pairs, seed=0):
    """Naive pairs in 60 / 20 / 20 train / select / test parts (random: they have no
    scenarios worth grouping, each pair is its own)."""
    idx = np.random.default_rng(seed).permutation(len(pairs))
    a, b = int(0.6 * len(pairs)), int(0.8 * len(pairs))
    return tuple([pairs[i] for i in idx[lo:hi]] for lo, hi in ((0, a), (a, b), (b, None)))


def train_probes(model, tokenizer, value: str, data: str = "controlled", pooling: str = "last",
                 layers=None, Cs=DEFAULT_CS, C: float | None = None, pairs=None,
                 select_pairs=None, test_pairs=None, progress: bool = True) -> ProbeBank:
    """Fit a probe at every (or the given) decoder layer for ``value``.

    data: ``"controlled"`` (its ``train``, ``select`` and ``heldout`` splits) or
    ``"naive"`` (a 60/20/20 split). ``C`` is chosen per layer on the selection twins,
    which also give ``select_acc`` (what layer choices read); ``test_acc`` comes from the
    held-out twins alone. ``pairs``/``select_pairs``/``test_pairs`` override the data.
    """
    value = canonical(value)
    if data not in ("controlled", "naive"):
        raise UsageError(f"unknown data {data!r}; valid: controlled, naive")
    if pairs is None:
        if data == "controlled":
            pairs, select_pairs, test_pairs = (load_pairs(value, s) for s in SPLITS)
        else:
            pairs, select_pairs, test_pairs = _split_naive(load_naive_pairs(value))
    if not select_pairs or not test_pairs:
        raise UsageError("train_probes needs training, selection and test twins "
                         f"(got {len(pairs)}, {len(select_pairs or [])}, {len(test_pairs or [])})")
    n_layers = len(decoder_layers(model))
    layers = list(range(n_layers)) if layers is None else list(layers)
    t0 = time.time()
    arr = [pair_arrays(model, tokenizer, p, pooling, layers, progress)
           for p in (pairs, select_pairs, test_pairs)]
    (xtr, ytr, _), (xse, yse, _), (xte, yte, _) = arr
    acc = lambda x, y, w, b: float((((x @ w + b) > 0).astype(int) == y).mean())
    W, b, tr, se, te, Cl, cv = [], [], [], [], [], [], []
    for i in range(len(layers)):
        w, bi, c, scores = fit_layer(xtr[:, i], ytr, Cs=Cs, C=C, x_sel=xse[:, i], y_sel=yse)
        W.append(w); b.append(bi); Cl.append(c); cv.append(scores)
        tr.append(acc(xtr[:, i], ytr, w, bi))
        se.append(acc(xse[:, i], yse, w, bi))
        te.append(acc(xte[:, i], yte, w, bi))
    return ProbeBank(value=value, model_id=model_identity(model), hidden_size=xtr.shape[-1],
                     n_layers=n_layers, pooling=pooling, data=data, layers=layers,
                     W=np.stack(W), b=np.array(b, np.float32), train_acc=np.array(tr),
                     test_acc=np.array(te), C=np.array(Cl), select_acc=np.array(se),
                     meta={"n_train_pairs": len(pairs), "n_select_pairs": len(select_pairs),
                           "n_test_pairs": len(test_pairs), "select_scores": cv,
                           "seconds": round(time.time() - t0, 1)})


def negation_control_accuracy(model, tokenizer, bank: ProbeBank, layer: int) -> dict:
    """How well ``bank``'s probe at ``layer`` separates affirmative from negated sentences.

    Accuracy and ROC-AUC are reported orientation-free (``max(a, 1 − a)``): 0.5 means
    the probe ignores negation.
    """
    from sklearn.metrics import roc_auc_score
    rows = load_negation_control()
    x = extract(model, tokenizer, [r["affirmative"] for r in rows] + [r["negated"] for r in rows],
                pooling=bank.pooling, layers=[layer], progress=False)[:, 0]
    y = np.r_[np.ones(len(rows)), np.zeros(len(rows))]
    p = bank.predict_proba(x, layer)
    acc = float(((p > 0.5) == y).mean())
    auc = float(roc_auc_score(y, p))
    return {"layer": layer, "acc": max(acc, 1 - acc), "auc": max(auc, 1 - auc)}


def middle_layers(bank: ProbeBank, exclude_last: int = 5) -> list[int]:
    """Layers from a quarter of the depth up to (not including) the last ``exclude_last``."""
    lo, hi = bank.n_layers // 4, bank.n_layers - exclude_last
    return [l for l in bank.layers if lo <= l < hi] or list(bank.layers)


def transfer_accuracy(model, tokenizer, bank: ProbeBank, pairs=None) -> dict:
    """Per-layer accuracy of ``bank`` on the held-out controlled twins of its value."""
    pairs = load_pairs(bank.value, "heldout") if pairs is None else pairs
    x, y, _ = pair_arrays(model, tokenizer, pairs, bank.pooling, bank.layers, progress=False)
    return {str(l): round(float(((x[:, i] @ bank.W[i] + bank.b[i] > 0) == y).mean()), 4)
            for i, l in enumerate(bank.layers)}


BANK_SCHEME = "train-select-heldout"   # how banks split their twins; part of every bank name


def data_fingerprint(value: str, data: str = "controlled") -> str:
    """Short hash of the pairs a bank is trained on and of how it splits them (cached and
    shipped banks follow data edits and a change of :data:`BANK_SCHEME`)."""
    rows = load_pairs(value) if data == "controlled" else load_naive_pairs(value)
    return fingerprint([BANK_SCHEME] + [[r.get("split", ""), r["positive"], r["negative"]]
                                        for r in rows])


def bank_path(model, value: str, data: str = "controlled", pooling: str = "last") -> Path:
    """Where a trained bank is cached (its name carries the data fingerprint)."""
    value = canonical(value)
    return (cache_dir() / "banks" / fingerprint(model_identity(model))
            / f"{value}-{data}-{pooling}-{data_fingerprint(value, data)}")


SHIPPED_BANKS = Path(__file__).parent / "banks"


def shipped_bank_path(model, value: str, data: str = "controlled", pooling: str = "last") -> Path:
    """Where the package ships this bank (embedded model only; the name carries the data
    fingerprint, so a bank trained on other data is never picked up)."""
    if model_identity(model) != EMBEDDED_IDENTITY:
        return SHIPPED_BANKS / "none"
    value = canonical(value)
    return SHIPPED_BANKS / "embedded" / f"{value}-{data}-{pooling}-{data_fingerprint(value, data)}"


def get_bank(model, tokenizer, value: str, data: str = "controlled", pooling: str = "last",
             retrain: bool = False, progress: bool = True, **kwargs) -> ProbeBank:
    """The bank for (model, value, data, pooling): shipped with the package (the embedded
    model's banks, as ``conva-nb probe`` trains them), cached, or trained on first use."""
    path = bank_path(model, value, data, pooling)
    if not retrain and not kwargs:
        shipped = shipped_bank_path(model, value, data, pooling)
        for p in (shipped, path):
            if (p / "bank.json").exists():
                return ProbeBank.load(p, model)
    bank = train_probes(model, tokenizer, value, data, pooling, progress=progress, **kwargs)
    bank.save(path)
    return bank
