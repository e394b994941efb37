import json

import pytest

from conva_nb import datasets as D
from conva_nb.values import VALUE_NAMES


def test_negation_detector():
    assert D.has_negation("She didn't go.") and D.has_negation("He refused the offer")
    assert D.has_negation("without a word") and D.has_negation("Nobody came")
    assert not D.has_negation("She kept the money for herself.")
    assert not D.has_negation("Notably, the knot held.")


def test_shipped_data_meets_every_bound():
    rep = D.check_data(bow=False)
    assert rep["problems"] == [] and rep["ok"]
    assert set(rep["values"]) == set(VALUE_NAMES)
    for r in rep["values"].values():
        assert r["pairs"] >= 120 and r["train_pairs"] >= 70 and r["select_pairs"] >= 30 and r["naive_pairs"] >= 100
        assert r["negation_gap"] <= 0.10 and r["length_gap_tokens"] <= 1.5
        assert r["scenarios"] >= 60
    assert rep["negation_control_pairs"] >= 60


def test_shipped_prompts():
    for v in VALUE_NAMES:
        assert len(D.load_prompts("value", v, split="test")) >= 30
        assert len(D.load_prompts("value", v, split="dev")) >= 1
        assert len(D.load_prompts("opposing", v, split="test")) >= 10
    assert len(D.load_prompts("general", split="test")) >= 60
    irr = D.load_prompts("irrelevant")
    assert len(irr) >= 150 and all(r["answer"] in r["choices"] for r in irr)
    prompts = [r["prompt"].lower() for k in D.PROMPT_FIELDS for r in D.load_prompts(k)]
    assert len(prompts) == len(set(prompts))


def _write(tmp_path, rows, name="f.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return p


def test_errors_name_file_line_and_field(tmp_path):
    good = {"id": "x-1", "value": "power", "persona": "p", "scenario": "s", "structure": "t",
            "positive": "a b c", "negative": "a b d", "split": "train"}
    p = _write(tmp_path, [good, "{broken"])
    with pytest.raises(D.DataError, match=r"f\.jsonl:2: not valid JSON"):
        D.load_pairs(path=p)
    p = _write(tmp_path, [good, {**good, "negative": ""}])
    with pytest.raises(D.DataError, match=r"f\.jsonl:2: field 'negative' is missing or empty"):
        D.load_pairs(path=p)
    p = _write(tmp_path, [{**good, "value": "kindness"}])
    with pytest.raises(D.DataError, match="unknown value 'kindness'"):
        D.load_pairs(path=p)
    p = _write(tmp_path, [{**good, "split": "dev"}])
    with pytest.raises(D.DataError, match="split 'dev'"):
        D.load_pairs(path=p)
    with pytest.raises(ValueError, match="valid: value, general, opposing, irrelevant"):
        D.load_prompts("funny")
    with pytest.raises(D.DataError, match="no such file"):
        D.load_pairs(path=tmp_path / "missing.jsonl")


def test_check_data_flags_violations(tmp_path):
    """A copy of the data with negation-only negatives and one duplicate must fail."""
    import shutil
    base = tmp_path / "data"
    shutil.copytree(D.data_dir(), base)
    f = base / "controlled" / "power.jsonl"
    rows = [json.loads(line) for line in f.read_text().splitlines()]
    for r in rows[:60]:
        r["negative"] = "They did not do that and never would, no."
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    rep = D.check_data(base, bow=False)
    assert not rep["ok"]
    assert any(p.startswith("power: negation gap") for p in rep["problems"])
    assert any("occur more than once" in p for p in rep["problems"])


def test_touche_folding(touche_dir):
    t = D.load_touche(touche_dir)
    assert len(t["texts"]) == 5393 and t["labels"].shape == (5393, 10)
    counts = dict(zip(VALUE_NAMES, t["labels"].sum(0)))
    assert counts["hedonism"] == 172 and counts["stimulation"] == 247
    assert counts["tradition"] == 568
    assert counts["power"] >= 625 and counts["universalism"] >= 2081


def test_touche_missing_is_clear(tmp_path):
    with pytest.raises(D.DataError, match="arguments-training.tsv"):
        D.load_touche(tmp_path)


def test_mmlu_local_csv(tmp_path):
    d = tmp_path / "test"
    d.mkdir()
    (d / "astronomy_test.csv").write_text('"What orbits Earth?",Moon,Sun,Mars,Venus,A\n'
                                          '"2+2?",3,4,5,6,B\n')
    rows = D.load_mmlu(tmp_path)
    assert rows[0] == {"subject": "astronomy", "prompt": "What orbits Earth?",
                       "choices": ["Moon", "Sun", "Mars", "Venus"], "answer": "Moon"}
    assert rows[1]["answer"] == "4"
