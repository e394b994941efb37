import numpy as np
import pytest

from conva_nb.gates import AlwaysOpen, ProbeGate, ValueDetector, ValueDetectorGate, embed
from conva_nb.values import VALUE_NAMES


def test_embedded_encoder_is_real():
    e = embed(["The train arrived on time.", "The train was punctual.", "I love my grandmother."])
    assert e.shape == (3, 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-4)
    assert e[0] @ e[1] > e[0] @ e[2]


@pytest.fixture(scope="module")
def touche_fit(touche_dir):
    """The package's Touché23 detector (5-fold CV inside), as the chapters and ``evaluate``
    get it: fitted once per cache, so the suite does not repeat the fit."""
    from conva_nb.datasets import load_touche
    from conva_nb.gates import embed_cached, touche_detector
    data = load_touche(touche_dir)
    return touche_detector(touche_dir), data, embed_cached(data["texts"])


def test_detector_cross_validated_auc_on_touche(touche_fit):
    det, _, _ = touche_fit
    aucs = det.cv_auc_
    print("Touché23 5-fold ROC-AUC per value:", {k: round(v, 3) for k, v in aucs.items()})
    assert set(aucs) == set(VALUE_NAMES)
    assert np.mean(list(aucs.values())) >= 0.75
    assert min(aucs.values()) > 0.6


def test_gate_decisions_and_save_load(touche_fit, tmp_path):
    det, _, _ = touche_fit
    path = det.save(tmp_path / "det")
    assert not list(path.glob("*.pkl"))
    loaded = ValueDetector.load(path)
    texts = ["We must protect the rainforest and the rights of refugees everywhere.",
             "What is 7 plus 8?"]
    np.testing.assert_allclose(loaded.predict_proba(texts), det.predict_proba(texts), rtol=1e-5)
    gate = ValueDetectorGate(loaded, "universalism", g0=0.5)
    s = gate.scores(texts)
    assert s[0] > s[1]
    assert gate.decide(texts) == [bool(x >= 0.5) for x in s]
    with pytest.raises(ValueError, match="g0"):
        ValueDetectorGate(loaded, "universalism", g0=1.5)
    with pytest.raises(ValueError, match="valid values"):
        ValueDetectorGate(loaded, "kindness")


def test_always_open():
    assert AlwaysOpen().decide(["a", "b"]) == [True, True]


def test_probe_gate_reads_model_probe():
    from test_steering import random_bank
    from tiny import tiny_model
    model, tok = tiny_model("llama")
    bank = random_bank(model, offset=0.0)
    gate = ProbeGate(model, tok, bank, layer=1, threshold=0.5)
    s = gate.scores(["the friend helped", "i won"])
    assert s.shape == (2,) and ((s >= 0) & (s <= 1)).all()
    assert gate.decide(["the friend helped", "i won"]) == [bool(x >= 0.5) for x in s]
