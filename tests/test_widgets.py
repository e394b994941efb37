import numpy as np
import pytest

from conva_nb import widgets
from conva_nb.gates import ProbeGate

from test_steering import random_bank
from tiny import tiny_model

PROMPT = "what should i do with my money ?"


class FixedGate:
    def __init__(self, open_):
        self.open_ = open_

    def scores(self, texts):
        return np.full(len(texts), 0.9 if self.open_ else 0.1)

    def decide(self, texts):
        return [self.open_] * len(texts)


@pytest.fixture(scope="module")
def tiny():
    model, tok = tiny_model("llama")
    return model, tok, random_bank(model)


def test_run_once_gate_off_steers_selected_layers(tiny):
    model, tok, bank = tiny
    res = widgets.run_once(model, tok, "Benevolence", PROMPT, p0=0.99, gate_on=False,
                           banks={"benevolence": bank}, max_new_tokens=4)
    assert res["value"] == "benevolence" and res["gate_open"] and res["gate_score"] is None
    assert res["layers"] == bank.select_layers()
    assert res["n_layers"] == bank.n_layers
    assert isinstance(res["unsteered"], str) and isinstance(res["steered"], str)
    assert set(res["stats"]) == set(res["layers"])
    assert all(s["steered_fraction"] > 0 and s["mean_edit_norm"] > 0
               for s in res["stats"].values())


def test_run_once_closed_gate_leaves_text_alone(tiny):
    model, tok, bank = tiny
    res = widgets.run_once(model, tok, "benevolence", PROMPT, gate_on=True, gate=FixedGate(False),
                           banks={"benevolence": bank}, max_new_tokens=4)
    assert res["gate_open"] is False and res["gate_score"] == pytest.approx(0.1)
    assert res["steered"] == res["unsteered"]
    assert all(s["steered_fraction"] == 0 for s in res["stats"].values())
    opened = widgets.run_once(model, tok, "benevolence", PROMPT, gate=FixedGate(True),
                              banks={"benevolence": bank}, max_new_tokens=4)
    assert opened["gate_open"] is True
    assert any(s["steered_fraction"] > 0 for s in opened["stats"].values())


def test_run_once_rejects_empty_prompt(tiny):
    model, tok, bank = tiny
    with pytest.raises(ValueError, match="prompt"):
        widgets.run_once(model, tok, "benevolence", "  ", banks={"benevolence": bank})


def test_make_gate_falls_back_to_probe_gate_without_touche(tiny, tmp_cache, monkeypatch):
    from conva_nb.datasets import DataError
    from conva_nb.gates import AlwaysOpen, make_gate
    model, tok, bank = tiny
    monkeypatch.delenv("CONVA_NB_TOUCHE", raising=False)
    gate = make_gate("auto", bank.value, model=model, tokenizer=tok, bank=bank)
    assert isinstance(gate, ProbeGate) and gate.layer == bank.select_layers()[0]
    assert "probe" in gate.name
    with pytest.raises(DataError):
        make_gate("detector", bank.value)
    with pytest.raises(ValueError, match="unknown gate kind 'nope'; valid: none, detector"):
        make_gate("nope", bank.value)
    with pytest.raises(ValueError, match="pass model=, tokenizer= and bank="):
        make_gate("probe", bank.value)
    assert isinstance(make_gate("none", bank.value), AlwaysOpen)


def test_result_html_escapes_and_shows_both_texts():
    res = {"value": "power", "prompt": "a <b> question", "p0": 0.9, "gate_on": True,
           "gate_name": "probe gate", "gate_score": 0.7, "gate_open": True, "layers": [1],
           "unsteered": "plain & simple", "steered": "steered text", "stats": {}}
    out = widgets.result_html(res)
    assert "a &lt;b&gt; question" in out and "plain &amp; simple" in out
    assert "steered text" in out and "open" in out and "0.70" in out


def test_panel_builds_and_run_button_fills_output(tiny, tmp_cache, monkeypatch):
    import ipywidgets
    model, tok, bank = tiny
    monkeypatch.delenv("CONVA_NB_TOUCHE", raising=False)   # -> probe gate
    pg = widgets.playground(model, tok, [bank], value="benevolence", max_new_tokens=4,
                            prompt=PROMPT)
    assert isinstance(pg.panel, ipywidgets.VBox)
    assert list(pg.value.options) == list(widgets.VALUE_NAMES)
    assert pg.p0.value == 0.99 and pg.gate_on.value is True
    assert pg.texts.value == "" and pg.result is None
    bundle = pg._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    pg.button.click()
    assert pg.result is not None, pg.status.value
    assert "done" in pg.status.value
    assert pg.result["value"] == "benevolence" and "probe gate" in pg.result["gate_name"]
    assert "unsteered" in pg.texts.value and "ConVA" in pg.texts.value
    assert bytes(pg.plot.value[:8]) == b"\x89PNG\r\n\x1a\n"
    # a second run with the gate off and another P0 updates the result
    pg.gate_on.value = False
    pg.p0.value = 0.9
    pg.button.click()
    assert pg.result["gate_on"] is False and pg.result["p0"] == 0.9
    assert not pg.button.disabled


def test_run_button_reports_errors_in_panel(tiny, tmp_cache):
    model, tok, bank = tiny
    pg = widgets.playground(model, tok, {"benevolence": bank}, value="benevolence",
                            gate_on=False, max_new_tokens=4)
    pg.prompt.value = ""
    pg.button.click()
    assert pg.result is None and "error" in pg.status.value and not pg.button.disabled


def test_run_once_reuses_given_unsteered_text(tiny):
    model, tok, bank = tiny
    res = widgets.run_once(model, tok, "benevolence", PROMPT, gate_on=False,
                           banks={"benevolence": bank}, max_new_tokens=3, unsteered="given")
    assert res["unsteered"] == "given" and isinstance(res["steered"], str)
