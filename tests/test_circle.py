import numpy as np
from scipy.stats import spearmanr

from conva_nb import circle


def _circle_vectors(noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    ang = np.deg2rad(np.arange(10) * 36.0)
    v = np.zeros((10, 8))
    v[:, 0], v[:, 1] = np.cos(ang), np.sin(ang)
    return v + noise * rng.normal(size=v.shape)


def test_perfect_circle_agrees_and_shuffled_does_not():
    cos = circle.cosine_matrix(_circle_vectors())
    np.testing.assert_allclose(np.diag(cos), 1.0)
    a = circle.agreement(cos, n_perm=2000)
    assert a["spearman_rho"] > 0.95 and a["p_value"] < 0.01
    p = np.random.default_rng(3).permutation(10)
    b = circle.agreement(cos[np.ix_(p, p)], n_perm=2000)
    assert b["spearman_rho"] < a["spearman_rho"]


def test_agreement_rho_matches_scipy():
    cos = circle.cosine_matrix(_circle_vectors(noise=0.5))
    iu = np.triu_indices(10, 1)
    expected = spearmanr(cos[iu], circle.circle_closeness()[iu]).statistic
    assert abs(circle.agreement(cos, n_perm=10)["spearman_rho"] - expected) < 1e-12


def test_groups_and_shared_component():
    v = _circle_vectors()
    v[:, 5] = 3.0   # a direction every value shares
    raw = circle.cosine_matrix(v)
    centred = circle.cosine_matrix(v, remove_shared=True)
    assert raw.min() > 0.5 and centred.min() < -0.9
    g = circle.group_similarity(circle.cosine_matrix(_circle_vectors()))
    assert g["within_mean"] > g["between_mean"]
    assert set(g["within"]) == {"openness to change", "self-enhancement", "conservation",
                                "self-transcendence"}
    xy = circle.mds_2d(circle.cosine_matrix(_circle_vectors()))
    assert xy.shape == (10, 2)
    assert circle.random_baseline(640)["mean_abs_cos"] < 0.05


def _banks_from(vectors, accs):
    from conva_nb.probes import ProbeBank
    from conva_nb.values import VALUE_NAMES
    n_layers = vectors.shape[0]
    return [ProbeBank(value=v, model_id="toy", hidden_size=vectors.shape[-1], n_layers=n_layers,
                      pooling="last", data="controlled", layers=list(range(n_layers)),
                      W=3.0 * vectors[:, i].astype(np.float32), b=np.zeros(n_layers, np.float32),
                      train_acc=np.ones(n_layers), test_acc=np.asarray(accs[i], float),
                      C=np.ones(n_layers))
            for i, v in enumerate(VALUE_NAMES)]


def test_value_vectors_picks_best_middle_layer_and_normalises():
    rng = np.random.default_rng(0)
    n_layers = 12                                   # middle layers: 3 .. 6 (exclude last 5)
    vecs = rng.normal(size=(n_layers, 10, 16))
    accs = np.full((10, n_layers), 0.6)
    accs[:, 5] = 0.8                                # best middle layer
    accs[:, 10] = 0.99                              # better, but among the last five
    accs[:, 1] = 0.99                               # better, but below a quarter of the depth
    banks = _banks_from(vecs, accs)
    layer, v = circle.value_vectors(banks)
    assert layer == circle.circle_layer(banks) == 5
    assert v.shape == (10, 16)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(v[0], vecs[5, 0] / np.linalg.norm(vecs[5, 0]), rtol=1e-5)
    layer2, v2 = circle.value_vectors(banks, layer=2)
    assert layer2 == 2 and not np.allclose(v2, v)
    import pytest
    with pytest.raises(ValueError, match="no .* probe"):
        circle.value_vectors(banks, layer=99)
    with pytest.raises(ValueError, match="circle order"):
        circle.value_vectors(banks[::-1])


def test_align_to_circle_undoes_rotation_reflection_scale_and_shift():
    target = circle.circle_positions()
    assert target.shape == (10, 2)
    np.testing.assert_allclose(np.linalg.norm(target, axis=1), 1.0)
    th = 1.1
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    flip = np.diag([1.0, -1.0])
    xy = 0.37 * target @ R @ flip + np.array([2.0, -5.0])
    aligned, disparity = circle.align_to_circle(xy)
    np.testing.assert_allclose(aligned, target, atol=1e-9)
    assert disparity < 1e-12
    # a shuffled circle cannot be aligned well; the shape (distance ratios) is kept
    p = np.random.default_rng(1).permutation(10)
    shuffled, d2 = circle.align_to_circle(target[p])
    assert d2 > 0.2
    from scipy.spatial.distance import pdist
    r1, r2 = pdist(target[p]), pdist(shuffled)
    np.testing.assert_allclose(r2 / r2.sum(), r1 / r1.sum(), atol=1e-9)
