"""The evaluation instruments: one fluency rule for every method, Holm, the paired bootstrap,
McNemar, the selection-split bookkeeping, the dilemma scorer and the judge's split."""
import json

import numpy as np
import pytest
from scipy import stats as ss

from conva_nb import stats as S
from conva_nb.datasets import SPLITS, check_prompts, load_dilemmas, load_pairs
from conva_nb.experiment import _best, dilemma_rows, summarize

from tiny import tiny_model


def test_holm_against_hand_computed_values():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(0.06, 1*0.04)
    assert np.allclose(S.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    out = S.holm([0.5, float("nan"), 0.2])
    assert np.isnan(out[1]) and np.allclose([out[0], out[2]], [0.5, 0.4])
    assert np.allclose(S.holm([0.3, 0.04]), [0.3, 0.08])
    assert S.holm([0.9, 0.8]) == [1.0, 1.0]          # capped at 1, then monotone
    assert S.holm([0.6, 0.7, 0.8]) == [1.0, 1.0, 1.0]


def test_paired_bootstrap_against_scipy():
    rng = np.random.default_rng(3)
    a = (rng.random(60) < 0.55).astype(float)
    b = np.where(rng.random(60) < 0.7, a, 1 - a)      # correlated with a: pairing matters
    ours = S.paired_bootstrap_ci(a, b, n=20000, seed=1)
    ref = ss.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis), paired=True,
                       n_resamples=20000, method="percentile", random_state=1,
                       vectorized=True).confidence_interval
    assert ours[0] == pytest.approx(ref.low, abs=0.02)
    assert ours[1] == pytest.approx(ref.high, abs=0.02)
    ratio = S.paired_bootstrap_ci(a, b, n=20000, seed=1, ratio=True)
    ref = ss.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis) / y.mean(axis), paired=True,
                       n_resamples=20000, method="percentile", random_state=1,
                       vectorized=True).confidence_interval
    assert ratio[0] == pytest.approx(ref.low, abs=0.04)
    assert ratio[1] == pytest.approx(ref.high, abs=0.04)
    unpaired = ss.bootstrap((a,), np.mean).confidence_interval   # sanity: CI holds mean(a)
    assert unpaired.low <= a.mean() <= unpaired.high
    with pytest.raises(ValueError, match="equal shapes"):
        S.paired_bootstrap_ci(a, b[:-1])


def test_mcnemar_by_hand():
    a = np.array([1, 1, 1, 1, 1, 0, 1, 0])
    b = np.array([0, 0, 0, 0, 0, 1, 1, 0])            # 5 wins, 1 loss, 2 ties
    assert S.mcnemar_p(a, b) == pytest.approx(7 / 64)  # P(X >= 5), X ~ Bin(6, 1/2)
    assert S.mcnemar_p(b, b) == 1.0


def _trial(method, fr, csr, fcsr, strength=1.0):
    return {"method": method, "fr": fr, "csr": csr, "fcsr": fcsr, "mean_score": csr,
            "strength": strength}


def test_one_fluency_rule_for_every_method():
    floor = 0.9
    never = [_trial("caa", 0.60, 0.9, 0.5, 1), _trial("caa", 0.85, 0.4, 0.3, 0.5),
             _trial("caa", 0.70, 0.7, 0.5, 2)]
    best, fluent = _best(never, floor)
    assert fluent is False and best["fr"] == 0.85      # most fluent, flagged, not best CSR
    some = [_trial("conva", 0.95, 0.3, 0.3, 1), _trial("conva", 0.80, 0.9, 0.7, 2),
            _trial("conva", 0.92, 0.5, 0.45, 3)]
    best, fluent = _best(some, floor)
    assert fluent is True and best["strength"] == 3    # highest fluent CSR over the floor
    # the same trials under another method's name are decided the same way
    assert _best([{**t, "method": "x"} for t in some], floor)[0]["strength"] == 3
    row = lambda m, v, ok: {"value": v, "method": m, "fcsr": 0.1, "csr": 0.2, "fr": 0.9,
                            "retention": 1.0, "fluent_setting": ok}
    summ = summarize([row("none", "power", None), row("caa", "power", False),
                      row("ica", "power", True)])
    assert summ["no_fluent_setting"] == {"none": [], "caa": ["power"], "ica": []}


def test_selection_split_bookkeeping():
    """Every controlled twin is in exactly one of train, select and heldout, whole
    scenarios at a time; banks choose on select and only report heldout."""
    for v in {p["value"] for p in load_pairs()}:
        parts = {s: load_pairs(v, s) for s in SPLITS}
        ids = [p["id"] for s in SPLITS for p in parts[s]]
        assert len(ids) == len(set(ids)) == len(load_pairs(v))
        scen = {s: {p["scenario"].strip().lower() for p in parts[s]} for s in SPLITS}
        assert not scen["train"] & scen["select"] and not scen["select"] & scen["heldout"]
        assert not scen["train"] & scen["heldout"] and len(parts["select"]) >= 30


def test_bank_choices_read_the_selection_twins_only(tmp_path):
    from conva_nb.methods import layer_band
    from conva_nb.probes import train_probes
    model, tok = tiny_model("llama")
    pairs = load_pairs("power")
    tr, se, te = ([p for p in pairs if p["split"] == s][:12] for s in SPLITS)
    bank = train_probes(model, tok, "power", pairs=tr, select_pairs=se, test_pairs=te,
                        progress=False)
    assert bank.meta["n_train_pairs"] == bank.meta["n_select_pairs"] == 12
    assert all(set(s) == {1e-3, 1e-2, 1e-1, 1.0, 10.0} for s in bank.meta["select_scores"])
    for i, s in enumerate(bank.meta["select_scores"]):   # C is the selection-best one
        assert s[bank.C[i]] == max(s.values())
    before = (bank.select_layers(exclude_last=1), layer_band(bank, 2, exclude_last=1),
              bank.best_layer())
    bank.test_acc = bank.test_acc[::-1].copy()          # scramble the reported accuracy
    assert (bank.select_layers(exclude_last=1), layer_band(bank, 2, exclude_last=1),
            bank.best_layer()) == before
    bank.save(tmp_path / "b")
    from conva_nb.probes import ProbeBank
    assert np.allclose(ProbeBank.load(tmp_path / "b").select_acc, bank.select_acc)


def test_judge_split_groups_conclusions_and_never_reads_twins(touche_dir, monkeypatch):
    from conva_nb import datasets
    from conva_nb.judges import EmbeddedJudge
    t = datasets.load_touche(touche_dir)
    part = EmbeddedJudge.split(t["conclusions"])
    side = {}
    for c, p in zip(t["conclusions"], part):
        assert side.setdefault(c, p) == p               # one conclusion, one side
    share = {s: float(np.mean(part == s)) for s in ("fit", "select", "validate")}
    assert 0.6 < share["fit"] < 0.8 and 0.08 < share["validate"] < 0.22

    def no_twins(*a, **k):
        raise AssertionError("the judge must not read the project's twins")
    monkeypatch.setattr(datasets, "load_pairs", no_twins)
    judge = EmbeddedJudge().fit(touche_dir)
    rep = judge.report()
    assert rep["split_sizes"]["validate"] == int((part == "validate").sum())
    for v, r in rep["report"].items():
        assert r["reads"] in ("answer", "question+answer") and 0.5 < r["auc"] <= 1
        assert len(r["calibration"]["mean_predicted"]) == len(
            r["calibration"]["fraction_positive"]) >= 3


def _write_dilemmas(d, rows):
    d.mkdir(parents=True, exist_ok=True)
    (d / "dilemmas.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_dilemma_scorer_on_a_tiny_model(tmp_path, monkeypatch):
    from conva_nb.cache import RunStore
    from conva_nb.methods import MethodConfig
    from conva_nb.prompting import frame
    from conva_nb.runner import Runner
    from conva_nb.scoring import continuation_logprobs
    rows = [{"id": f"d{i}", "value": "power", "scenario": f"s{i}", "split": "test",
             "question": f"should my friend {a} , or {b} ?", "value_option": a,
             "other_option": b, "other_value": "universalism", "value_first": True}
            for i, (a, b) in enumerate([("win the job", "help the family"),
                                        ("be the boss", "explore the world"),
                                        ("win money", "help people")])]
    _write_dilemmas(tmp_path / "p", rows)
    monkeypatch.setenv("CONVA_NB_PROMPTS", str(tmp_path / "p"))
    model, tok = tiny_model("gpt2")
    runner = Runner(model, tok, store=RunStore(tmp_path / "r.jsonl"), progress=False)
    dil = dilemma_rows("power", "test")
    assert [d["answer"] for d in dil] == [d["choices"][0] for d in dil]
    got = runner.capability(MethodConfig("none", "power"), dil)["per_row_mc"]
    ctx = [frame(tok, d["prompt"]) for d in dil for _ in range(2)]
    ll, _ = continuation_logprobs(model, tok, ctx, [c for d in dil for c in d["choices"]])
    assert got == [bool(ll[2 * i] > ll[2 * i + 1]) for i in range(len(dil))]
    bad = dict(rows[0], value_first=False)
    _write_dilemmas(tmp_path / "q", [bad])
    with pytest.raises(ValueError, match="value_first=False does not match"):
        load_dilemmas(path=tmp_path / "q" / "dilemmas.jsonl")


def test_prompt_bounds_are_checked(tmp_path):
    """check_prompts counts per value and split and flags shortfalls and split leaks."""
    import shutil

    from conva_nb.datasets import data_dir
    rep = check_prompts()
    assert rep["capability_test"] >= 100 and set(rep["values"]) >= {"power", "security"}
    full = [v for v, n in rep["values"].items() if n["value_test"] >= 50]
    assert "power" in full and rep["values"]["power"]["dilemmas_test"] >= 30
    assert not [p for p in rep["problems"] if p.startswith("power:")]
    d = tmp_path / "p"
    shutil.copytree(data_dir() / "prompts", d)
    rows = [json.loads(l) for l in (d / "value_prompts.jsonl").read_text().splitlines()]
    dev = next(r for r in rows if r["value"] == "power" and r["split"] == "dev")
    test = next(r for r in rows if r["value"] == "power" and r["split"] == "test")
    dev["scenario"] = test["scenario"]                 # a leaked scenario
    rows = [r for r in rows if not (r["value"] == "power" and r["split"] == "test"
                                    and r is not test)][:]
    (d / "value_prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    probs = check_prompts(d)["problems"]
    assert any("power: 1 test value prompts < 50" in p for p in probs)
    assert any("power: value prompts: scenario" in p and "both dev and test" in p
               for p in probs)
