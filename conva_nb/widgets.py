"""An interactive ConVA playground for Jupyter and Colab (standard ipywidgets only).

The logic lives in plain functions so that it can be tested and used without a
front-end: :func:`run_once` answers one prompt with and without steering and returns
texts, gate decision and per-layer edit statistics (gates come from
:func:`conva_nb.gates.make_gate`). :func:`playground` wraps them in a panel (value, P0, gate, prompt,
Run) whose output is an HTML widget with the two answers side by side and an
image widget with the per-layer edit plot, so nothing needs a custom front-end.
"""
from __future__ import annotations

import html

from .errors import UsageError
from .gates import make_gate
from .models import decoder_layers
from .plots import edit_profile, figure_png
from .probes import get_bank
from .prompting import generate, question_of
from .steering import steer
from .values import VALUE_NAMES, canonical

__all__ = ["P0_CHOICES", "run_once", "result_html", "Playground", "playground"]

P0_CHOICES = (0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999)
DEFAULT_PROMPT = "I have a free weekend ahead of me. What should I do with it?"


def run_once(model, tokenizer, value: str, prompt: str, p0: float = 0.99, gate_on: bool = True,
             banks: dict | None = None, gate=None, gate_kind: str = "auto",
             max_new_tokens: int = 40, min_acc: float = 0.9, exclude_last: int = 5,
             download: bool = False, unsteered: str | None = None) -> dict:
    """Answer ``prompt`` without and with ConVA steering toward ``value``.

    banks: ``{value: ProbeBank}`` to use (missing ones come from
    :func:`~conva_nb.probes.get_bank`). gate: a ready gate object; otherwise, when
    ``gate_on``, one from :func:`~conva_nb.gates.make_gate` (``gate_kind``). The gate reads
    the question, not the few-shot frame around it.

    Returns a dict: ``value, prompt, p0, gate_on, gate_name, gate_score`` (None without a
    gate), ``gate_open``, ``layers`` (steered layers), ``unsteered``, ``steered`` (texts),
    ``stats`` (``SteerStats.summary()``: per layer steered fraction and mean edit norms)
    and ``n_layers``. ``unsteered``: the unsteered answer of an earlier call with the same
    prompt and settings, to skip generating it again.
    """
    value = canonical(value)
    if not isinstance(prompt, str) or not prompt.strip():
        raise UsageError("type a prompt first")
    bank = (banks or {}).get(value) or get_bank(model, tokenizer, value, progress=False)
    gate_name, gate_score = "off", None
    if gate_on:
        if gate is None:
            gate = make_gate(gate_kind, value, model=model, tokenizer=tokenizer, bank=bank,
                             download=download)
        gate_name = getattr(gate, "name", type(gate).__name__)
        if hasattr(gate, "scores"):
            gate_score = float(gate.scores([prompt.strip()])[0])
    else:
        gate = None
    kw = dict(max_new_tokens=max_new_tokens)
    plain = generate(model, tokenizer, [prompt], **kw)[0] if unsteered is None else unsteered
    with steer(model, bank, p0=p0, gate=gate, tokenizer=tokenizer, gate_text=question_of,
               min_acc=min_acc, exclude_last=exclude_last) as s:
        steered = generate(model, tokenizer, [prompt], **kw)[0]
    n_layers = len(decoder_layers(model))
    return {"value": value, "prompt": prompt, "p0": float(p0), "gate_on": bool(gate_on),
            "gate_name": gate_name, "gate_score": gate_score,
            "gate_open": bool(s.stats.gate_open[0]) if s.stats.gate_open else True,
            "layers": s.layers, "unsteered": plain, "steered": steered,
            "stats": s.stats.summary(), "n_layers": n_layers}


def result_html(res: dict) -> str:
    """The two answers side by side, with the gate decision, as an HTML snippet."""
    esc = html.escape
    if res["gate_on"]:
        score = "" if res["gate_score"] is None else f", score {res['gate_score']:.2f}"
        gate = f"{esc(res['gate_name'])}: {'open' if res['gate_open'] else 'closed'}{score}"
    else:
        gate = "gate off (always steer)"
    box = ("<div style='flex:1;min-width:16em;padding:0.5em;border:1px solid #ccc;"
           "border-radius:4px'><b>{}</b><p style='white-space:pre-wrap'>{}</p></div>")
    return (f"<p><b>Q:</b> {esc(res['prompt'])}<br><small>value <b>{esc(res['value'])}</b>, "
            f"P0 = {res['p0']:g}, layers {res['layers']}, {gate}</small></p>"
            "<div style='display:flex;gap:1em;flex-wrap:wrap'>"
            + box.format("unsteered", esc(res["unsteered"]))
            + box.format(f"ConVA → {esc(res['value'])}", esc(res["steered"])) + "</div>")


class Playground:
    """The panel and its controls; display it (or its ``panel``) in a notebook.

    ``run()`` (what the Run button calls) stores the :func:`run_once` result in
    ``result`` and fills ``texts`` (HTML) and ``plot`` (PNG image).
    """

    def __init__(self, model, tokenizer, banks=None, value: str = "benevolence",
                 prompt: str = DEFAULT_PROMPT, p0: float = 0.99, gate_on: bool = True,
                 gate_kind: str = "auto", max_new_tokens: int = 40, download: bool = False):
        import ipywidgets as W
        self.model, self.tokenizer, self.banks = model, tokenizer, dict(banks or {})
        self.gate_kind, self.max_new_tokens, self.download = gate_kind, max_new_tokens, download
        self._gates: dict = {}
        self.result: dict | None = None
        style = {"description_width": "5em"}
        self.value = W.Dropdown(options=list(VALUE_NAMES), value=canonical(value),
                                description="value", style=style)
        self.p0 = W.SelectionSlider(options=list(P0_CHOICES),
                                    value=min(P0_CHOICES, key=lambda c: abs(c - p0)),
                                    description="P0", style=style, continuous_update=False)
        self.gate_on = W.Checkbox(value=gate_on, description="gate (steer value-relevant "
                                  "prompts only)", indent=False)
        self.prompt = W.Textarea(value=prompt, description="prompt", style=style,
                                 layout=W.Layout(width="95%", height="4em"))
        self.button = W.Button(description="Run", button_style="primary", icon="play")
        self.status = W.HTML(value="<i>choose a value and a prompt, then press Run</i>")
        self.texts = W.HTML(value="")
        self.plot = W.Image(format="png", layout=W.Layout(max_width="760px"))
        self.button.on_click(lambda _b: self.run())
        self.panel = W.VBox([W.HBox([self.value, self.p0]), self.gate_on, self.prompt,
                             W.HBox([self.button, self.status]), self.texts, self.plot])

    def _gate(self, bank):
        key = (bank.value, self.gate_kind)
        if key not in self._gates:
            self._gates[key] = make_gate(self.gate_kind, bank.value, model=self.model,
                                         tokenizer=self.tokenizer, bank=bank,
                                         download=self.download)
        return self._gates[key]

    def run(self) -> dict | None:
        value = self.value.value
        self.button.disabled = True
        self.status.value = f"<i>running ({value}, P0 = {self.p0.value:g}) …</i>"
        try:
            if value not in self.banks:
                self.banks[value] = get_bank(self.model, self.tokenizer, value, progress=False)
            gate = self._gate(self.banks[value]) if self.gate_on.value else None
            res = run_once(self.model, self.tokenizer, value, self.prompt.value,
                           p0=self.p0.value, gate_on=self.gate_on.value, banks=self.banks,
                           gate=gate, max_new_tokens=self.max_new_tokens)
            self.result = res
            self.texts.value = result_html(res)
            self.plot.value = figure_png(edit_profile(res["stats"], res["n_layers"],
                                                title=f"ConVA edits toward {value}"))
            self.status.value = "<i>done</i>"
        except Exception as err:          # shown in the panel: a live widget must not die
            self.status.value = f"<b style='color:#b00'>error:</b> {html.escape(str(err))}"
            self.result = None
        finally:
            self.button.disabled = False
        return self.result

    def _repr_mimebundle_(self, **kwargs):
        return self.panel._repr_mimebundle_(**kwargs)


def playground(model, tokenizer, banks=None, **kwargs) -> Playground:
    """Build the interactive panel (see :class:`Playground` for the keyword arguments).

    ``banks``: a dict ``{value: ProbeBank}`` or a list of banks; values without one are
    trained or loaded from the cache on first use.
    """
    if banks is not None and not isinstance(banks, dict):
        banks = {b.value: b for b in banks}
    return Playground(model, tokenizer, banks, **kwargs)
