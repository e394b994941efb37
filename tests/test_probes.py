import numpy as np
import pytest

from conva_nb.probes import ProbeBank, fit_layer, train_probes

from tiny import tiny_model


def _synthetic(n=60, h=16, seed=0):
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=h)
    base = rng.normal(size=(n, h)) * 1.5
    pos = base + direction
    neg = base - direction
    x = np.r_[pos, neg].astype(np.float32)
    y = np.r_[np.ones(n), np.zeros(n)].astype(int)
    return x, y, np.r_[np.arange(n), np.arange(n)], direction


def test_fit_layer_recovers_direction_in_raw_space():
    x, y, g, d = _synthetic()
    w, b, C, scores = fit_layer(x * 1000.0, y, g)   # raw scale must not matter
    cos = w @ d / np.linalg.norm(w) / np.linalg.norm(d)
    assert cos > 0.9
    assert (((x * 1000.0) @ w + b > 0) == y).mean() > 0.95
    w1, b1, C1, _ = fit_layer(x, y, g)
    assert C1 == C
    np.testing.assert_allclose(w1, w * 1000.0, rtol=1e-3, atol=1e-4)
    assert C in scores and max(scores.values()) == scores[C]


def test_regularisation_sets_w_norm():
    x, y, g, _ = _synthetic()
    norms = [np.linalg.norm(fit_layer(x, y, g, C=C)[0]) for C in (1e-3, 1e-1, 10.0)]
    assert norms[0] < norms[1] < norms[2]


def test_bank_roundtrip_and_compatibility(tmp_path):
    model, tok = tiny_model("llama")
    pairs = [{"positive": f"the friend helped my family {w}", "negative": f"the boss won money {w}"}
             for w in ("today", "at home", "at work", "in the city", "always", "on time",
                       "with people", "at school", "for you", "and we")]
    bank = train_probes(model, tok, "benevolence", pairs=pairs[:6], select_pairs=pairs[6:8],
                        test_pairs=pairs[8:], progress=False, Cs=(0.1, 1.0))
    assert bank.W.shape == (4, 32) and bank.W.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(bank.v, axis=1), 1.0, rtol=1e-5)
    path = bank.save(tmp_path / "bank")
    assert sorted(p.name for p in path.iterdir()) == ["bank.json", "vectors.safetensors"]
    loaded = ProbeBank.load(path, model)
    np.testing.assert_array_equal(loaded.W, bank.W)
    assert loaded.select_layers(min_acc=0.9, exclude_last=1) == bank.select_layers(0.9, 1)
    other, _ = tiny_model("gpt2")
    other.config.n_embd = 48
    with pytest.raises(ValueError, match="hidden size 32"):
        ProbeBank.load(path, other)
    with pytest.raises(ValueError, match="not a probe bank"):
        ProbeBank.load(tmp_path)


def test_selection_rule_and_fallback():
    n = 10
    bank = ProbeBank("power", "m", 4, n, "last", "controlled", list(range(n)),
                     np.ones((n, 4), np.float32), np.zeros(n, np.float32), np.ones(n),
                     np.array([.5, .6, .95, .7, .92, .8, .99, .99, .99, .99]), np.ones(n))
    assert bank.select_layers(0.9, exclude_last=5) == [2, 4]
    low = ProbeBank(**{**bank.__dict__,
                       "select_acc": np.array([.5, .6, .7, .8, .75] + [.99] * 5)})
    assert low.select_layers(0.9, exclude_last=5) == [3]   # fallback: best allowed layer


def test_control_vector_export(tmp_path):
    import gguf

    from conva_nb.export import to_control_vector
    n = 6
    bank = ProbeBank("power", "m", 4, n, "last", "controlled", list(range(n)),
                     np.arange(24, dtype=np.float32).reshape(n, 4) + 1, np.zeros(n, np.float32),
                     np.ones(n), np.ones(n), np.ones(n))
    p = to_control_vector(bank, tmp_path / "cv.gguf", {0: 1.0, 2: 3.0}, layers=[0, 2])
    r = gguf.GGUFReader(str(p))
    names = [t.name for t in r.tensors]
    assert names == ["direction.2"]
    vec = np.array(r.tensors[0].data)
    np.testing.assert_allclose(vec, bank.v[2] * 3.0, rtol=1e-6)
    assert bytes(r.fields["general.architecture"].parts[-1]).decode() == "controlvector"
