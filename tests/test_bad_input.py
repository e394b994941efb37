"""Bad input to evaluate, calibrate and check-data: each kind exits with a message naming
what was wrong and what is valid, before the model loads where it can, and leaves no
half-written settings or evaluation file behind."""
import json
import os
import subprocess
import sys

import pytest


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "conva_nb", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})


def _prompt_dir(tmp_path, value_text):
    from conva_nb.datasets import data_dir
    d = tmp_path / "prompts"
    d.mkdir()
    for f in (data_dir() / "prompts").iterdir():
        (d / f.name).write_text(f.read_text())
    (d / "value_prompts.jsonl").write_text(value_text)
    return d


CASES = {
    "unknown judge": (["evaluate", "--judge", "oracle"], 2, ["oracle", "embedded", "llm"]),
    "unknown method": (["calibrate", "--value", "power", "--methods", "magic"], 2,
                       ["magic", "conva-nogate"]),
    "unknown evaluate method": (["evaluate", "--methods", "conva,magic"], 2,
                                ["magic", "conva-nogate"]),
    "llm judge without model": (["evaluate", "--judge", "llm"], 2, ["--judge-model"]),
    "non-positive mmlu": (["evaluate", "--mmlu", "0"], 2, ["positive whole number"]),
    "unknown value": (["calibrate", "--value", "bravery"], 2, ["valid values are"]),
    "missing settings file": (["evaluate", "--settings", "/nonexistent/s.json"], 2,
                              ["no such file"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_argument_errors(name):
    args, code, needles = CASES[name]
    r = run(*args)
    assert r.returncode == code, r.stderr[-1500:]
    assert all(n in r.stderr for n in needles), r.stderr[-1500:]
    assert "loading model" not in r.stderr and r.stdout == ""


def test_unreachable_llm_server_leaves_no_settings_file(tmp_path):
    out = tmp_path / "settings.json"
    r = run("calibrate", "--value", "power", "--judge", "llm", "--judge-model", "m",
            "--judge-base-url", "http://127.0.0.1:9/v1", "--out", str(out),
            env={"CONVA_NB_CACHE": str(tmp_path / "c")})
    assert r.returncode == 1 and "http://127.0.0.1:9/v1" in r.stderr
    assert "cannot be reached" in r.stderr and "--judge embedded" in r.stderr
    assert not out.exists() and "loading model" not in r.stderr


def test_mmlu_without_a_hub_names_the_fallback(monkeypatch):
    from conva_nb.errors import ServiceError
    from conva_nb.experiment import capability_rows
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ServiceError, match="--mmlu 5: MMLU .* run without --mmlu"):
        capability_rows(5)
    rows, said = capability_rows()
    assert len(rows) >= 100 and "8 categories" in said


def test_empty_and_malformed_prompt_files(tmp_path):
    d = _prompt_dir(tmp_path, "")
    r = run("evaluate", "--prompts", str(d), "--judge", "llm", "--judge-model", "m")
    assert r.returncode == 2 and "value_prompts.jsonl" in r.stderr and "no rows" in r.stderr
    (d / "value_prompts.jsonl").write_text('{"id": "x", "value": "power", "prompt": "Hi?"\n')
    out = tmp_path / "settings.json"
    r = run("calibrate", "--value", "power", "--prompts", str(d), "--out", str(out))
    assert r.returncode == 2 and "value_prompts.jsonl:1: not valid JSON" in r.stderr
    (d / "value_prompts.jsonl").write_text(json.dumps(
        {"id": "x", "value": "power", "prompt": " ", "split": "dev"}) + "\n")
    r = run("calibrate", "--value", "power", "--prompts", str(d), "--out", str(out))
    assert r.returncode == 2 and "field 'prompt' is missing or empty" in r.stderr
    assert not out.exists()
    r = run("evaluate", "--prompts", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "not a directory" in r.stderr
    assert "loading model" not in r.stderr


def test_check_data_names_a_broken_dilemma(tmp_path):
    import shutil

    from conva_nb.datasets import data_dir
    d = tmp_path / "data"
    shutil.copytree(data_dir(), d)
    rows = [json.loads(l) for l in (d / "prompts" / "dilemmas.jsonl").read_text().splitlines()]
    rows[0]["value_first"] = not rows[0]["value_first"]
    (d / "prompts" / "dilemmas.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = run("check-data", "--path", str(d))
    assert r.returncode == 1 and rows[0]["id"] in r.stdout and "value_first" in r.stdout


def test_a_cache_from_another_version_is_refused(tmp_path):
    c = tmp_path / "c"
    c.mkdir()
    (c / "llm_judge.jsonl").write_text('{"k": "abc", "v": {"reflects_value": true}}\n')
    r = run("evaluate", "--values", "power", "--judge", "llm", "--judge-model", "m",
            env={"CONVA_NB_CACHE": str(c)})
    assert r.returncode == 2 and "another version of conva_nb" in r.stderr
    assert str(c / "llm_judge.jsonl") in r.stderr and "delete it" in r.stderr


def test_settings_for_another_model(tmp_path):
    from conva_nb.models import EMBEDDED_IDENTITY
    from conva_nb.settings import load_settings
    p = tmp_path / "other.json"
    p.write_text(json.dumps({"model_id": "someone/else-7b", "values": {}}))
    with pytest.raises(ValueError, match="made for 'someone/else-7b'.*run conva-nb calibrate"):
        load_settings(EMBEDDED_IDENTITY, p)
