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
