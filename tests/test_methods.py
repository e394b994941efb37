"""The method registry: a method defined here, and nowhere in the package, is calibrated and
evaluated end to end; the built-in methods' cache keys stay what the cached runs hold."""
import json

import numpy as np
import pytest

from conva_nb.cache import RunStore
from conva_nb.experiment import calibrate, evaluate
from conva_nb.methods import (
    METHODS,
    GridPoint,
    Method,
    MethodConfig,
    baselines,
    register,
    unregister,
)
from conva_nb.operators import ConstantShift
from conva_nb.runner import Runner

from tiny import tiny_model


class KeywordJudge:
    """A judge with the protocol's three methods: success where a cue word occurs."""

    def __init__(self, cues=("power", "won", "win", "boss")):
        self.cues = set(cues)

    def scores(self, value, prompts, answers):
        return np.array([float(bool(self.cues & set(a.lower().split()))) for a in answers])

    def success(self, value, scores):
        return np.asarray(scores) >= 0.5

    def report(self):
        return {"kind": "keyword", "cues": sorted(self.cues)}


@pytest.fixture
def toy():
    direction = np.random.default_rng(0).normal(size=32).astype(np.float32)

    def build(model, tokenizer, cfg, bank):
        return ConstantShift({1: direction * cfg["scale"]})

    method = register(Method(
        "toy-shift", "a random direction", "extension", settings_key="toy-shift",
        defaults={"scale": 0.0}, key_fields=("scale",), build=build,
        grid=lambda bank: [GridPoint({"scale": s}, strength=s) for s in (0.5, 4.0)]))
    yield method
    unregister(method.name)


def test_a_method_defined_in_a_test_is_calibrated_and_evaluated(tmp_path, toy):
    model, tok = tiny_model("llama")
    runner = Runner(model, tok, store=RunStore(tmp_path / "records.jsonl"), batch_size=16,
                    max_new_tokens=5, progress=False)
    judge = KeywordJudge()
    doc = calibrate(runner, judge, values=["power"], methods=["toy-shift"], progress=False)
    trials = [t for t in doc["search"]["power"] if t["method"] == "toy-shift"]
    assert [t["scale"] for t in trials] == [0.5, 4.0]
    assert doc["values"]["power"]["toy-shift"]["scale"] in (0.5, 4.0)
    assert "g0" not in doc["values"]["power"]            # no gated method was calibrated
    res = evaluate(runner, judge, values=["power"], methods=["toy-shift"], settings=doc,
                   n_capability=4, opposing=False, progress=False)
    rows = {r["method"]: r for r in res["rows"]}
    assert list(rows) == ["none", "toy-shift"]
    assert rows["toy-shift"]["config"] == {"method": "toy-shift", "value": "power",
                                           "scale": doc["values"]["power"]["toy-shift"]["scale"]}
    texts = {m: runner.outputs(MethodConfig(m, "power", **({} if m == "none" else
                                                            {"scale": 4.0})),
                               ["what did the friend do ?"])[0] for m in ("none", "toy-shift")}
    assert texts["none"] != texts["toy-shift"]           # the toy operator did steer
    again = Runner(model, tok, store=RunStore(tmp_path / "records.jsonl"), batch_size=16,
                   max_new_tokens=5, progress=False)
    rerun = evaluate(again, judge, values=["power"], methods=["toy-shift"], settings=doc,
                     n_capability=4, opposing=False, progress=False)
    assert json.dumps(rerun["rows"]) == json.dumps(res["rows"])
    assert again.counters == {"generated": 0, "scored": 0, "perplexities": 0}


def test_registry_rejects_duplicates_and_unknown_names(toy):
    with pytest.raises(ValueError, match="already registered"):
        register(toy)
    with pytest.raises(ValueError, match="unknown method 'magic'; valid: none, ica"):
        MethodConfig("magic", "power")
    with pytest.raises(ValueError, match="unknown value"):
        MethodConfig("conva", "bravery")


def test_builtin_cache_keys_and_roles():
    """Cached runs are keyed by these: a change here regenerates every shipped result."""
    assert MethodConfig("none", "power").key() == {"method": "none"}
    assert MethodConfig("ica", "power", ica_style="persona").key() == \
        {"method": "ica", "value": "power", "ica_style": "persona"}
    assert MethodConfig("caa", "power", multiplier=0.05, layers=[6, 7]).key() == \
        {"method": "caa", "value": "power", "multiplier": 0.05, "layers": (6, 7)}
    gated, ungated = (MethodConfig(m, "power", logit=10.00001, layers=[6]).key()
                      for m in ("conva", "conva-nogate"))
    assert gated == ungated          # a gated method shares its ungated twin's generations
    assert gated["logit"] == 10.0
    # ...but the table names the method itself
    assert MethodConfig("conva", "power", layers=[6]).describe()["method"] == "conva"
    # opposing prompts are scored for the reference too, so a table can compare with it
    assert {m for m in METHODS if METHODS[m].opposing} == {"none", "ica", "caa", "conva"}
    assert baselines() == [m for m in METHODS if METHODS[m].role == "baseline"]
    assert {"ica", "caa"} <= set(baselines())
