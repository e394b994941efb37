import math

import numpy as np
import pytest
import torch
from scipy.stats import bootstrap, ttest_rel

from conva_nb import metrics as E
from conva_nb import stats as S
from conva_nb.judges import EmbeddedJudge
from conva_nb.scoring import perplexities

from tiny import ARCHS


def test_distinct_and_repetition_by_hand():
    assert E.distinct_n("a b a b", 2) == 2 / 3            # (a b) (b a) (a b)
    assert E.distinct_n("a b c d", 1) == 1.0
    assert E.distinct_n("hi", 2) == 1.0
    # trigrams: (i was tired) (was tired .) (tired . i) (. i was) (i was tired)* (was tired .)*
    assert E.repetition_rate("i was tired . i was tired .") == 2 / 6
    assert E.repetition_rate("one two three four") == 0.0


def test_fluency_bounds_and_rate():
    texts = ["I would read a good book and walk the dog.", "Call your mother today.",
             "Plan a trip to the coast with friends."]
    bounds = E.FluencyBounds.calibrate([10.0, 12.0, 14.0], texts, q=1.0)
    assert bounds.max_ppl == 14.0 and bounds.max_repetition == 0.0
    assert bounds.fluent(11.0, texts[0])
    assert not bounds.fluent(20.0, texts[0])
    assert not bounds.fluent(5.0, "")
    assert not bounds.fluent(5.0, "i was tired . i was tired . i was tired .")
    fr = E.fluency_rate(bounds, [11.0, 30.0, 12.0, 5.0], texts + ["no no no no no no"])
    assert fr == 0.5


def test_csr_and_statistics_match_scipy():
    assert E.csr([False, True, True, True]) == 0.75
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.6, 0.1, 30), rng.normal(0.5, 0.1, 30)
    r = S.paired_test(a, b)
    ref = ttest_rel(a, b, alternative="greater")
    assert math.isclose(r["p_value"], ref.pvalue) and math.isclose(r["t"], ref.statistic)
    lo, hi = S.bootstrap_ci(a, seed=1)
    ref = bootstrap((a,), np.mean, n_resamples=2000, method="percentile", random_state=1)
    assert math.isclose(lo, ref.confidence_interval.low)
    assert lo < a.mean() < hi


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_perplexity_equals_one_by_one_loss(arch):
    """Batched, length-sorted scoring with logits only at the response positions gives
    the same perplexity as an unpadded forward's mean loss over the response tokens."""
    from tiny import tiny_model
    model, tok = tiny_model(arch)
    ctx = ["the friend", "i won the city and", "we", "she helped"]
    resp = ["helped my family", "", "won the home of my friend", "work"]
    ppl = perplexities(model, tok, ctx, resp, batch_size=3)
    assert math.isinf(ppl[1])
    for c, r, got in zip(ctx, resp, ppl):
        if not r:
            continue
        a = tok(c, return_tensors="pt").input_ids
        b = tok(" " + r, add_special_tokens=False, return_tensors="pt").input_ids
        ids = torch.cat([a, b], 1)
        labels = ids.clone()
        labels[:, : a.shape[1]] = -100
        with torch.no_grad():
            ref = math.exp(model(ids, labels=labels).loss.item())
        assert got > 1 and math.isclose(got, ref, rel_tol=1e-4)


def test_embedded_judge_on_touche(touche_dir):
    judge = EmbeddedJudge().fit(touche_dir)
    print("judge held-out AUC:", judge.report_)
    # AUC on Touché23 conclusions the judge never saw (grouped: harder than a row split,
    # measured mean 0.72 over the ten values); 0.5 would be chance
    assert np.mean([r["auc"] for r in judge.report_.values()]) > 0.68
    assert set(judge.thresholds_) == set(judge.report_)
    answers = ["We must protect nature and treat every stranger fairly.",
               "I want to be the boss and control everyone's money.", ""]
    s = judge.scores("universalism", ["q"] * 3, answers)
    assert s[0] > s[1] and s[2] == 0.0
    assert list(judge.success("universalism", s)) == [bool(x >= judge.thresholds_[
        "universalism"]) for x in s]
    assert judge.report()["report"] == judge.report_
