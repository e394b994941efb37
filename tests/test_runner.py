"""The evaluation runner: caching, gated composition, choice scoring, LLM judge over HTTP."""
import json
import math

import numpy as np
import pytest
import torch

from conva_nb.cache import RunStore
from conva_nb.experiment import gate_threshold, summarize
from conva_nb.judges import LLMJudge
from conva_nb.local_server import ScriptedChatServer
from conva_nb.methods import MethodConfig
from conva_nb.prompting import generate, question_of
from conva_nb.runner import Runner, answer_match
from conva_nb.scoring import continuation_logprobs
from conva_nb.settings import config_for, load_settings, save_settings
from conva_nb.steering import steer

from test_steering import Gate, random_bank
from tiny import tiny_model

QS = ["what did the friend do ?", "how old is the city ?", "why did she help my family ?"]


def make_runner(tmp_path, arch="llama"):
    model, tok = tiny_model(arch)
    bank = random_bank(model, layers=(1, 2))
    r = Runner(model, tok, store=RunStore(tmp_path / "records.jsonl"), batch_size=4,
               max_new_tokens=6, progress=False, banks={("benevolence", "controlled"): bank})
    return r, bank


def test_rerun_is_served_from_cache(tmp_path):
    r, _ = make_runner(tmp_path)
    cfg = MethodConfig("conva-nogate", "benevolence", logit=3.0, layers=(1, 2))
    first, _ = r.outputs(cfg, QS)
    assert r.counters["generated"] == 3
    again = Runner(r.model, r.tok, store=RunStore(tmp_path / "records.jsonl"), batch_size=4,
                   max_new_tokens=6, progress=False, banks=r.banks)
    second, _ = again.outputs(cfg, QS)
    assert second == first and again.counters["generated"] == 0
    # a changed setting is new work; the unchanged ones are not recomputed
    third, _ = again.outputs(MethodConfig("conva-nogate", "benevolence", logit=5.0,
                                          layers=(1, 2)), QS)
    assert again.counters["generated"] == 3


def test_steering_changes_output_and_none_is_unsteered(tmp_path):
    r, _ = make_runner(tmp_path)
    plain = generate(r.model, r.tok, QS, batch_size=4, max_new_tokens=6)
    none, opened = r.outputs(MethodConfig("none", "benevolence"), QS)
    assert none == plain and opened == [False] * 3
    steered, _ = r.outputs(MethodConfig("conva-nogate", "benevolence", logit=8.0,
                                        layers=(1, 2)), QS)
    assert steered != none


def test_gated_rows_compose_exactly_like_a_gated_generate(tmp_path):
    r, bank = make_runner(tmp_path)
    decisions = [True, False, True]
    cfg = MethodConfig("conva", "benevolence", logit=6.0, layers=(1, 2))
    composed, opened = r.outputs(cfg, QS, gate=Gate(decisions))
    assert opened == decisions
    with steer(r.model, bank, p0=None, logit=6.0, layers=[1, 2], gate=Gate(decisions),
               rule="token", tokenizer=r.tok, gate_text=question_of):
        direct = generate(r.model, r.tok, QS, batch_size=4, max_new_tokens=6)
    assert composed == direct


def test_choice_logliks_match_a_manual_forward(tmp_path):
    r, _ = make_runner(tmp_path)
    texts, conts = ["the friend", "i won the"], ["helped my family", "city"]
    got, _ = continuation_logprobs(r.model, r.tok, texts, conts, 4, share_prefix=True)
    for t, c, g in zip(texts, conts, got):
        a = r.tok(t).input_ids
        b = r.tok(" " + c, add_special_tokens=False).input_ids
        with torch.no_grad():
            logp = torch.log_softmax(r.model(torch.tensor([a + b])).logits[0].float(), -1)
        ref = sum(float(logp[len(a) - 1 + i, tok]) for i, tok in enumerate(b))
        assert math.isclose(g, ref, rel_tol=1e-4, abs_tol=1e-4)


def test_capability_rows_and_retention_inputs(tmp_path):
    r, _ = make_runner(tmp_path)
    rows = [{"prompt": "what is the city ?", "choices": ["home", "city", "work", "school"],
             "answer": "city"}, {"prompt": "who won ?", "choices": ["i", "you", "she", "we"],
                                 "answer": "we"}]
    cap = r.capability(MethodConfig("none", "benevolence"), rows)
    assert 0.0 <= cap["mc_acc"] <= 1.0 and len(cap["per_row_mc"]) == 2
    assert r.counters["scored"] == 2
    r.capability(MethodConfig("none", "benevolence"), rows)
    assert r.counters["scored"] == 2          # cached


def test_answer_match_by_hand():
    assert answer_match("The capital is Paris.", "Paris")
    assert answer_match("It is 12.5 metres", "12.5")
    assert not answer_match("Parisian food", "Paris")
    assert not answer_match("anything", "")


def test_summary_counts_wins_by_hand():
    def row(v, m, fcsr, fr=1.0, ret=1.0, **p):
        return {"value": v, "method": m, "fcsr": fcsr, "csr": fcsr, "fr": fr, "fr_ratio": fr,
                "retention": ret, "fluent_setting": True, **p}
    rows = [row("power", "none", 0.1), row("power", "ica", 0.2), row("power", "caa", 0.3),
            row("power", "conva", 0.5, p_vs_none_holm=0.01, p_vs_caa_holm=0.2,
                p_vs_ica_holm=0.04, diff_vs_best_baseline=0.2,
                diff_vs_best_baseline_ci=[-0.05, 0.4]),
            row("security", "none", 0.1), row("security", "ica", 0.6), row("security", "caa", 0.2),
            row("security", "conva", 0.7, p_vs_none_holm=0.2, p_vs_caa_holm=0.01,
                p_vs_ica_holm=0.6, diff_vs_best_baseline=0.1,
                diff_vs_best_baseline_ci=[0.02, 0.2])]
    s = summarize(rows)
    assert s["conva_significant_vs_none"] == ["power"]    # Holm-corrected p < 0.05 only
    assert s["conva_significant_vs_caa"] == ["security"]
    assert s["conva_significant_vs_ica"] == ["power"]
    assert s["conva_at_least_best_baseline"] == ["power", "security"]
    assert s["conva_ci_above_best_baseline"] == ["security"]
    assert math.isclose(s["mean_fcsr"]["conva"], 0.6)
    assert math.isclose(s["conva_relative_fcsr_gain_vs_best_baseline"], (0.6 - 0.45) / 0.45,
                        rel_tol=1e-3)


def test_settings_roundtrip_and_mismatch(tmp_path):
    doc = {"model_id": "tiny-x", "values": {"power": {"conva": {"logit": 9.0, "layers": [2]},
                                                      "caa": {"multiplier": 0.25}, "g0": 0.3}}}
    p = save_settings(doc, tmp_path / "s.json")
    s = load_settings("tiny-x", p)
    cfg = config_for(s, "conva", "Power")
    assert cfg["logit"] == 9.0 and cfg["layers"] == (2,)
    from conva_nb.settings import gate_threshold_for
    assert gate_threshold_for(s, "power") == 0.3 and gate_threshold_for(s, "security") == 0.5
    assert config_for(s, "caa", "power")["multiplier"] == 0.25
    assert config_for(s, "conva", "security")["logit"] == pytest.approx(4.595)   # defaults
    with pytest.raises(ValueError, match="made for 'tiny-x'"):
        load_settings("another-model", p)


def test_method_config_rejects_unknown_method():
    with pytest.raises(ValueError, match="valid: none, ica, caa"):
        MethodConfig("steer-harder", "power")
    with pytest.raises(ValueError, match="unknown value"):
        MethodConfig("conva", "bravery")


def test_llm_judge_over_real_http_with_cache_and_retries(tmp_path):
    with ScriptedChatServer(faults=["429", "malformed"]) as srv:
        judge = LLMJudge("scripted-judge", base_url=srv.base_url, cache_path=tmp_path / "j.jsonl",
                         backoff=0.01)
        out = judge.verdicts("benevolence", ["q1", "q2"],
                             ["I helped my friend carry her boxes home.", "The sky is blue."])
        assert [o["reflects_value"] for o in out] == [True, False]
        assert all(o["fluent"] for o in out)
        n = srv.requests
        assert n == 4                                 # two faults retried, two answers
        again = LLMJudge("scripted-judge", base_url=srv.base_url,
                         cache_path=tmp_path / "j.jsonl")
        assert again.verdicts("benevolence", ["q1"],
                              ["I helped my friend carry her boxes home."]) == out[:1]
        assert list(again.scores("benevolence", ["q1"],
                                 ["I helped my friend carry her boxes home."])) == [1.0]
        assert srv.requests == n                      # served from the cache file
    lines = (tmp_path / "j.jsonl").read_text().splitlines()
    from conva_nb.cache import STORE_FORMAT
    assert json.loads(lines[0]) == STORE_FORMAT     # the header names the store's version
    assert len(lines) == 3 and all("k" in json.loads(l) for l in lines[1:])


def test_gate_threshold_caps_the_irrelevant_open_rate():
    # separable scores: the threshold opens on every value prompt and no irrelevant one
    sep = gate_threshold([0.9, 0.8, 0.7], [0.1, 0.2, 0.3, 0.4])
    assert sep == {"g0": 0.7, "open_value_dev": 1.0, "open_irrelevant_dev": 0.0}
    # a detector that ranks irrelevant prompts higher: plain Youden J picks 0.6 (J = 1/3 − 3/10)
    # and opens on 30 % of irrelevant prompts; the cap keeps the gate shut instead
    val, irr = [0.6, 0.1, 0.05], [0.9, 0.8, 0.7, 0.5, 0.4, 0.3, 0.2, 0.15, 0.12, 0.11]
    capped = gate_threshold(val, irr, max_irrelevant_open=0.15)
    assert capped["open_irrelevant_dev"] <= 0.15
    loose = gate_threshold(val, irr, max_irrelevant_open=1.0)
    assert loose["g0"] == 0.6 and loose["open_irrelevant_dev"] == 0.3
    assert capped["open_value_dev"] == 0.0
    # the capped choice is the best J among allowed thresholds, checked by brute force
    def j(t):
        return np.mean(np.array(val) >= t) - np.mean(np.array(irr) >= t)
    allowed = [t for t in val + irr + [np.inf] if np.mean(np.array(irr) >= t) <= 0.15]
    assert np.isclose(j(capped["g0"]), max(j(t) for t in allowed))


def test_evaluate_reuses_the_calibrated_fluency_bounds(tmp_path, touche_dir):
    """With settings that hold fluency bounds, evaluate generates only the test prompts'
    answers (no unsteered dev answers to re-derive the same bounds)."""
    from conva_nb.experiment import evaluate
    from conva_nb.judges import EmbeddedJudge
    r, _ = make_runner(tmp_path)
    bounds = {"max_ppl": 1e9, "min_distinct2": 0.0, "max_repetition": 1.0}
    settings = {"model_id": "tiny", "values": {}, "fluency_bounds": bounds}
    res = evaluate(r, EmbeddedJudge.cached(touche_dir), values=["benevolence"], methods=["none"],
                   settings=settings, n_capability=2, opposing=False, progress=False)
    n_test = res["rows"][0]["n_prompts"]
    assert res["fluency_bounds"] == bounds and res["rows"][0]["fr"] == 1.0
    assert r.counters["generated"] == n_test


def test_generation_batches_fold_a_small_tail_into_the_last_batch():
    from conva_nb.runner import _chunks
    assert [len(c) for c in _chunks(list(range(40)), 32)] == [40]
    assert [len(c) for c in _chunks(list(range(41)), 32)] == [32, 9]
    assert [len(c) for c in _chunks(list(range(70)), 32)] == [32, 38]
    assert [len(c) for c in _chunks(list(range(5)), 32)] == [5]
    assert sum(_chunks(list(range(73)), 32), []) == list(range(73))
