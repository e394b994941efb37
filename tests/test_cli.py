import json
import subprocess
import sys

import pytest

from conva_nb.datasets import load_prompts
from conva_nb.values import VALUE_NAMES


def run(*args):
    return subprocess.run([sys.executable, "-m", "conva_nb", *args], capture_output=True,
                          text=True, timeout=600)


def test_values_json():
    r = run("values", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [v["name"] for v in doc["values"]] == list(VALUE_NAMES)
    assert set(doc["values"][0]) >= {"name", "definition", "angle_deg", "group"}


@pytest.mark.parametrize("bad", ["kindness", "securityy", "power2"])
def test_unknown_value_exits_2_listing_valid(bad):
    r = run("probe", "--value", bad)
    assert r.returncode == 2
    assert bad in r.stderr
    assert all(name in r.stderr for name in VALUE_NAMES)
    assert r.stdout == ""


def test_unknown_subcommand_and_option():
    assert run("frobnicate").returncode == 2
    assert run("values", "--nope").returncode == 2


def test_steer_bad_p0_and_empty_file(tmp_path):
    r = run("steer", "--value", "power", "--prompt", "Hi?", "--p0", "1.2")
    assert r.returncode == 2 and "P0 must lie in the open interval (0.5, 1)" in r.stderr
    assert "loading model" not in r.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    r = run("steer", "--value", "power", "--prompts-file", str(empty))
    assert r.returncode == 2 and "holds no prompts" in r.stderr
    r = run("steer", "--value", "power", "--prompts-file", str(tmp_path / "missing.txt"))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = run("gate", "--value", "kindness", "--texts-file", str(empty))
    assert r.returncode == 2 and "valid values are" in r.stderr


def test_evaluate_and_calibrate_bad_input_exit_2(tmp_path):
    r = run("evaluate", "--methods", "conva,magic")
    assert r.returncode == 2 and "magic" in r.stderr and "conva-nogate" in r.stderr
    r = run("calibrate", "--value", "bravery")
    assert r.returncode == 2 and "valid values are" in r.stderr
    r = run("evaluate", "--values", "power", "--settings", str(tmp_path / "nope.json"))
    assert r.returncode == 2 and "no such file" in r.stderr
    assert r.stdout == ""


def test_model_without_findable_layers_exits_2(tmp_path):
    from transformers import RwkvConfig, RwkvForCausalLM

    from tiny import tiny_tokenizer
    cfg = RwkvConfig(vocab_size=80, hidden_size=16, num_hidden_layers=2, attention_hidden_size=16,
                     intermediate_size=32, context_length=32)
    RwkvForCausalLM(cfg).save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    r = run("steer", "--value", "power", "--prompt", "Hi?", "--model", str(tmp_path))
    assert r.returncode == 2
    assert "cannot find the decoder layers of RwkvForCausalLM" in r.stderr
    assert "model.layers" in r.stderr and "transformer.h" in r.stderr


def test_bank_for_another_model_exits_2(tmp_path):
    from test_steering import random_bank
    from tiny import tiny_model
    model, tok = tiny_model("llama")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    bank = random_bank(model, value="power")
    bank.hidden_size = 640
    bank.save(tmp_path / "bank")
    r = run("steer", "--value", "power", "--prompt", "the friend?", "--model",
            str(tmp_path / "m"), "--bank", str(tmp_path / "bank"), "--no-gate")
    assert r.returncode == 2 and "hidden size 640" in r.stderr and "hidden size 32" in r.stderr


@pytest.mark.embedded
def test_steer_on_embedded_model(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("How should I spend my first salary?\nWhat is the capital of France?\n")
    r = run("steer", "--value", "achievement", "--prompts-file", str(prompts), "--no-gate",
            "--max-new-tokens", "12", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["value"] == "achievement" and doc["method"] == "conva-nogate"
    assert len(doc["outputs"]) == 2
    for o in doc["outputs"]:
        assert o["gate_open"] is True and o["text"].strip()
        assert 0 < o["steered_fraction"] <= 1
    plain = json.loads(run("steer", "--value", "achievement", "--prompts-file", str(prompts),
                           "--method", "none", "--max-new-tokens", "12", "--json").stdout)
    assert all(o["steered_fraction"] == 0 and not o["gate_open"] for o in plain["outputs"])


@pytest.mark.embedded
def test_probe_cli_json(tmp_path):
    r = run("probe", "--value", "Self_Direction", "--json", "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["value"] == "self-direction" and len(doc["layers"]) == 18
    assert all(set(l) >= {"layer", "train_acc", "test_acc"} for l in doc["layers"])
    assert doc["selected_layers"] and all(l < 13 for l in doc["selected_layers"])
    assert 0.5 <= doc["negation_control_acc"] <= 1
    assert doc["saved_to"] == str((tmp_path / "b").resolve())
    # the bank the package ships for the embedded model is what `probe` trains
    import numpy as np

    from conva_nb.models import EMBEDDED_IDENTITY
    from conva_nb.probes import SHIPPED_BANKS, ProbeBank, data_fingerprint
    shipped = ProbeBank.load(SHIPPED_BANKS / "embedded" /
                             f"self-direction-controlled-last-{data_fingerprint('self-direction')}")
    fresh = ProbeBank.load(tmp_path / "b")
    assert shipped.model_id == fresh.model_id == EMBEDDED_IDENTITY
    # extraction batches differ in float rounding across machines, so grouped CV may pick
    # another C at a layer or two; where it picks the same C probes and vectors agree
    cos = (fresh.v * shipped.v).sum(1)
    same = fresh.C == shipped.C
    assert same.mean() >= 0.8, (fresh.C, shipped.C)
    np.testing.assert_allclose(fresh.test_acc[same], shipped.test_acc[same],
                               atol=0.0126)                            # <= 1 sentence
    np.testing.assert_allclose(fresh.test_acc, shipped.test_acc, atol=0.0376)  # <= 3
    assert cos[same].min() > 0.999 and cos.min() > 0.8, cos


@pytest.mark.embedded
def test_check_data_json_in_model_tokens():
    r = run("check-data", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["problems"] == []
    assert set(doc["values"]) == set(VALUE_NAMES)
    for v in doc["values"].values():
        assert v["length_gap_tokens"] <= 1.5 and v["negation_gap"] <= 0.10
        assert v["length_gap_abs_mean"] >= v["length_gap_tokens"]


def test_evaluate_cli_rows_and_cached_rerun(tmp_path, touche_dir):
    """The full evaluate path (banks, gate, judge, fluency, capability, statistics) on a
    tiny saved model, so that it runs in CI time; a re-run generates nothing new."""
    import os

    from tiny import tiny_model
    model, tok = tiny_model("llama")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    env = {**os.environ, "CONVA_NB_TOUCHE": str(touche_dir)}
    args = [sys.executable, "-m", "conva_nb", "evaluate", "--model", str(tmp_path / "m"),
            "--values", "power", "--methods", "none,ica,caa,conva", "--n-capability", "8",
            "--json", "--no-progress", "--out", str(tmp_path / "ev.json")]
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert [(x["value"], x["method"]) for x in doc["rows"]] == \
        [("power", m) for m in ("none", "ica", "caa", "conva")]
    for row in doc["rows"]:
        assert 0 <= row["csr"] <= 1 and 0 <= row["fr"] <= 1 and row["retention"] >= 0
        assert row["csr_ci"][0] <= row["csr"] <= row["csr_ci"][1]
        assert row["n_prompts"] == len(load_prompts("value", "power", "test"))
    assert doc["rows"][0]["retention"] == 1.0 and doc["computed"]["generated"] > 0
    assert json.loads((tmp_path / "ev.json").read_text())["rows"] == doc["rows"]
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800)
    again = json.loads(again.stdout)
    assert again["computed"] == {"generated": 0, "scored": 0, "perplexities": 0}
    assert again["rows"] == doc["rows"]


def test_an_internal_error_keeps_its_traceback_and_exits_1():
    code = ("import conva_nb.cli as c\n"
            "def boom(args):\n    raise RuntimeError('a bug, not bad input')\n"
            "c.cmd_values = boom\nc.main(['values'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr and "a bug, not bad input" in r.stderr
    assert "usage" not in r.stderr.lower()


@pytest.mark.parametrize("args", [
    ["steer", "--value", "power", "--prompt", "Hi?", "--max-new-tokens", "0"],
    ["steer", "--value", "power", "--prompt", "Hi?", "--batch-size", "-3"],
    ["evaluate", "--batch-size", "0"],
    ["evaluate", "--n-capability", "0"],
    ["generate-pairs", "--value", "power", "--n", "0", "--out", "x.jsonl"],
])
def test_non_positive_counts_are_rejected_before_the_model_loads(args):
    r = run(*args)
    assert r.returncode == 2 and "must be a positive whole number" in r.stderr
    assert "loading model" not in r.stderr


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_generate_pairs_against_an_unreachable_server_keeps_what_it_wrote(tmp_path):
    from conva_nb.local_server import ScriptedChatServer
    out = tmp_path / "power.jsonl"
    with ScriptedChatServer() as srv:
        r = run("generate-pairs", "--value", "power", "--n", "2", "--out", str(out),
                "--base-url", srv.base_url, "--model-name", "scripted", "--json")
    assert r.returncode == 0, r.stderr
    url = f"http://127.0.0.1:{_free_port()}/v1"
    r = run("generate-pairs", "--value", "power", "--n", "5", "--out", str(out),
            "--base-url", url, "--max-retries", "1", "--backoff", "0.01")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert url in last and "2 of 5 pairs are in" in last and "resume" in last
    assert len(out.read_text().splitlines()) == 2            # kept


def test_generate_pairs_against_a_failing_server_names_it(tmp_path):
    from conva_nb.local_server import ScriptedChatServer
    with ScriptedChatServer(faults=["500"] * 10) as srv:
        r = run("generate-pairs", "--value", "power", "--n", "3", "--out",
                str(tmp_path / "p.jsonl"), "--base-url", srv.base_url, "--max-retries", "2",
                "--backoff", "0.01")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert srv.base_url in last and "0 of 3 pairs" in last
