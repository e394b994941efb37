"""Evaluation and calibration: the comparison table, the strength sweep, the settings search.

``evaluate`` compares the methods of :mod:`conva_nb.methods` per value on the held-out
``test`` prompts; ``calibrate`` searches each method's settings on the disjoint ``dev``
prompts with one objective for all methods — the judge's control success subject to
fluency within the bounds of the unsteered model — and writes the settings file that
``steer`` and ``evaluate`` then use. Both run through a cached :class:`~conva_nb.runner.Runner`.
"""
from __future__ import annotations

import time

import numpy as np

from .datasets import load_prompts
from .evaluation import FluencyBounds, bootstrap_ci, paired_test
from .models import model_identity
from .methods import METHODS, MethodConfig, layer_band
from .settings import DEFAULTS, config_for, load_settings
from .values import VALUE_NAMES, canonical

__all__ = ["fluency_bounds", "Gates", "score_method", "evaluate", "calibrate", "sweep",
           "gate_threshold", "LOGIT_GRID", "CAA_GRID", "MAX_IRRELEVANT_OPEN"]

# target logits: P0 = 0.99 (the paper's default), 0.999, and two beyond the paper's range
LOGIT_GRID = (4.595, 10.0, 14.0)
BAND_LOGITS = (10.0,)                # the 3-layer band is tried at this strength only
CAA_GRID = (0.05, 0.1, 0.25)         # x the layer's mean hidden-state norm
ICA_GRID = ("definition", "persona")
FR_RATIO = 0.97
MAX_IRRELEVANT_OPEN = 0.15           # the gate may open on at most this share of irrelevant dev prompts
OPPOSING_METHODS = ("none", "ica", "caa", "conva")


def fluency_bounds(runner, q: float = 0.99) -> FluencyBounds:
    """Bounds met by ``q`` of the unsteered answers to every dev prompt (value + general)."""
    qs = [r["prompt"] for r in load_prompts("value", split="dev")]
    qs += [r["prompt"] for r in load_prompts("general", split="dev")]
    none = MethodConfig("none", VALUE_NAMES[0])
    texts, _ = runner.outputs(none, qs)
    return FluencyBounds.calibrate(runner.perplexities(qs, texts), texts, q=q)


class Gates:
    """One value gate per value: the Touché23 value detector, else the model's probe gate."""

    def __init__(self, runner, touche=None, settings=None):
        from .datasets import DataError
        from .gates import touche_detector
        self.runner, self.settings = runner, settings or {"values": {}}
        try:
            self.detector, self.kind = touche_detector(touche), "value-detector"
        except DataError:
            self.detector, self.kind = None, "probe"

    def __call__(self, value: str, g0: float | None = None):
        from .gates import ProbeGate, ValueDetectorGate
        g0 = g0 if g0 is not None else self.settings["values"].get(value, {}).get("g0",
                                                                                DEFAULTS["g0"])
        if self.detector is not None:
            return ValueDetectorGate(self.detector, value, g0=g0)
        return ProbeGate(self.runner.model, self.runner.tok, self.runner.bank(value))


def score_method(runner, judge, cfg: MethodConfig, questions: list[str], bounds: FluencyBounds,
                 gate=None) -> dict:
    """Judge scores, successes and fluency of ``cfg``'s answers to ``questions``."""
    texts, opened = runner.outputs(cfg, questions, gate)
    scores = judge.scores(texts, cfg.value)
    success = (scores >= judge.thresholds_[cfg.value]).astype(int)
    ppl = runner.perplexities(questions, texts)
    fluent = np.array([bounds.fluent(p, t) for p, t in zip(ppl, texts)], dtype=int)
    return {"texts": texts, "gate_open": opened, "scores": scores, "success": success,
            "fluent": fluent, "csr": float(success.mean()), "fr": float(fluent.mean()),
            "mean_score": float(scores.mean())}


def _ci(x) -> list[float]:
    x = np.asarray(x, dtype=float)
    if np.all(x == x[0]):
        return [float(x[0]), float(x[0])]
    return [round(v, 4) for v in bootstrap_ci(x)]


def evaluate(runner, judge, values=None, methods=METHODS, settings=None, touche=None,
             split: str = "test", n_capability: int | None = 40, opposing: bool = True,
             bounds: FluencyBounds | dict | None = None, progress: bool = True) -> dict:
    """The comparison table: per value × method CSR, FR and capability retention.

    Returns ``{"rows": [...], "summary": {...}, "seconds", "computed"}``; each row holds
    ``value, method, csr, csr_ci, fr, capability, retention, mean_score, gate_open_rate,
    csr_opposing, p_vs_none, config``. Statistics: paired one-sided t-tests on the judge's
    per-prompt scores (scipy), percentile bootstrap 95 % CIs of CSR. ``bounds``: fluency
    bounds to reuse (default: those of the calibrated settings, else calibrated now on the
    unsteered answers to the dev prompts).
    """
    from tqdm.auto import tqdm
    t0 = time.time()
    values = [canonical(v) for v in (values or VALUE_NAMES)]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown methods {bad}; valid: {', '.join(METHODS)}")
    methods = ["none"] + [m for m in methods if m != "none"]
    settings = settings or load_settings(runner.model)
    gates = Gates(runner, touche, settings)
    if bounds is None and settings.get("fluency_bounds"):   # the bounds calibration used
        bounds = settings["fluency_bounds"]
    if isinstance(bounds, dict):   # e.g. the "fluency_bounds" of a saved evaluation
        bounds = FluencyBounds(**bounds)
    bounds = bounds or fluency_bounds(runner)
    cap_rows = load_prompts("irrelevant", split="test")[:n_capability]
    none_cap = runner.capability(MethodConfig("none", values[0]), cap_rows)
    rows = []
    for value in tqdm(values, desc="evaluate", disable=not progress):
        qs = [r["prompt"] for r in load_prompts("value", value, split)]
        ops = [r["prompt"] for r in load_prompts("opposing", value, split)] if opposing else []
        plan = {m: config_for(settings, m, value) for m in methods}
        plan = {m: (cfg, gates(value, cfg.g0)) for m, cfg in plan.items()}
        _prefetch(runner, plan, qs, ops)
        res = {}
        for m, (cfg, gate) in plan.items():
            r = score_method(runner, judge, cfg, qs, bounds, gate)
            cap = runner.capability(cfg, cap_rows, gate)
            r["capability"], r["cap_gate_open"] = cap["mc_acc"], cap["gate_open_rate"]
            r["ref_loglik"] = cap["ref_loglik"]
            if ops and m in OPPOSING_METHODS:
                r["csr_opposing"] = score_method(runner, judge, cfg, ops, bounds, gate)["csr"]
            res[m] = (cfg, r)
        base_scores = res["none"][1]["scores"]
        for m, (cfg, r) in res.items():
            row = {"value": value, "method": m, "csr": round(r["csr"], 4),
                   "csr_ci": _ci(r["success"]), "fr": round(r["fr"], 4),
                   "fr_ratio": round(r["fr"] / max(res["none"][1]["fr"], 1e-9), 4),
                   "capability": round(r["capability"], 4),
                   "retention": round(r["capability"] / max(none_cap["mc_acc"], 1e-9), 4),
                   "ref_loglik": round(r["ref_loglik"], 4),
                   "mean_score": round(r["mean_score"], 4),
                   "gate_open_rate": round(float(np.mean(r["gate_open"])), 4),
                   "capability_gate_open_rate": round(r["cap_gate_open"], 4),
                   "csr_opposing": round(r.get("csr_opposing", float("nan")), 4),
                   "config": cfg.key(), "n_prompts": len(qs)}
            if m != "none":
                row["p_vs_none"] = round(paired_test(r["scores"], base_scores)["p_value"], 6)
            rows.append(row)
        conva = res.get("conva")
        if conva:
            for m in ("ica", "caa"):
                if m in res:
                    p = paired_test(conva[1]["scores"], res[m][1]["scores"])["p_value"]
                    rows[-len(res) + list(res).index("conva")][f"p_vs_{m}"] = round(p, 6)
    return {"rows": rows, "summary": summarize(rows), "fluency_bounds": bounds.__dict__,
            "n_capability": len(cap_rows), "split": split,
            "judge": {"kind": "embedded MiniLM value judge", "report": judge.report_},
            "gate": gates.kind, "settings": settings.get("path"),
            "seconds": round(time.time() - t0, 1), "computed": dict(runner.counters)}


def _prefetch(runner, plan: dict, qs: list[str], ops: list[str]) -> None:
    """Compute (or find cached) what a value's rows need, in as few passes as possible:
    each method's answers to its value and opposing prompts in one generation pass, then
    the perplexity of every method's answers in one scoring pass, where a question's
    answers share its context (:func:`conva_nb.evaluation.continuation_logprobs`)."""
    asked, answers = [], []
    for m, (cfg, gate) in plan.items():
        q = qs + (ops if m in OPPOSING_METHODS else [])
        texts, _ = runner.outputs(cfg, q, gate)
        asked += q
        answers += texts
    runner.perplexities(asked, answers)


def summarize(rows: list[dict]) -> dict:
    """Headline figures of an ``evaluate`` table."""
    by = {(r["value"], r["method"]): r for r in rows}
    values = sorted({r["value"] for r in rows}, key=VALUE_NAMES.index)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out = {"mean_csr": {m: round(float(np.mean([by[v, m]["csr"] for v in values])), 4)
                        for m in methods},
           "mean_fr": {m: round(float(np.mean([by[v, m]["fr"] for v in values])), 4)
                       for m in methods},
           "mean_retention": {m: round(float(np.mean([by[v, m]["retention"] for v in values])), 4)
                              for m in methods}}
    if "conva" in methods:
        wins, sig = [], []
        for v in values:
            c = by[v, "conva"]
            ok = c["fr_ratio"] >= FR_RATIO and c["retention"] >= FR_RATIO
            if ok and all(c["csr"] > by[v, m]["csr"] for m in ("ica", "caa") if (v, m) in by):
                wins.append(v)
            if c.get("p_vs_none", 1) < 0.05 and c["csr"] > by[v, "none"]["csr"]:
                sig.append(v)
        base = [max(by[v, m]["csr"] for m in ("ica", "caa") if (v, m) in by) for v in values
                if any((v, m) in by for m in ("ica", "caa"))]
        if base:
            b = float(np.mean(base))
            out["relative_csr_gain_vs_best_baseline"] = round(
                (out["mean_csr"]["conva"] - b) / b, 4) if b else None
        out["conva_beats_ica_and_caa"] = wins
        out["conva_significant_vs_none"] = sig
    return out


def sweep(runner, judge, value: str, logits=LOGIT_GRID, layers=None, split: str = "dev",
          bounds: FluencyBounds | None = None) -> list[dict]:
    """CSR and FR of ungated ConVA for each target logit (the CSR–fluency curve)."""
    bounds = bounds or fluency_bounds(runner)
    qs = [r["prompt"] for r in load_prompts("value", value, split)]
    out = []
    for t in logits:
        cfg = MethodConfig("conva-nogate", value, logit=float(t), layers=layers)
        r = score_method(runner, judge, cfg, qs, bounds)
        out.append({"logit": round(float(t), 4), "p0": round(float(1 / (1 + np.exp(-t))), 6),
                    "layers": list(layers) if layers else None, "csr": r["csr"], "fr": r["fr"],
                    "mean_score": r["mean_score"]})
    return out


def _best(trials: list[dict], fr_floor: float) -> dict:
    """Highest CSR (then mean judge score, then the weakest setting) among fluent trials;
    if none is fluent enough, the most fluent one (then the highest CSR)."""
    ok = [t for t in trials if t["fr"] >= fr_floor]
    if not ok:
        return max(trials, key=lambda t: (t["fr"], t["csr"], t["mean_score"]))
    return max(ok, key=lambda t: (t["csr"], t["mean_score"], -t.get("strength", 0)))


def calibrate(runner, judge, values=None, touche=None, logits=LOGIT_GRID, caa_grid=CAA_GRID,
              ica_styles=ICA_GRID, band_logits=BAND_LOGITS, progress: bool = True) -> dict:
    """Search ConVA's layers × target logit, CAA's multiplier, ICA's wording and the gate
    threshold per value on the ``dev`` prompts; returns the settings document."""
    from tqdm.auto import tqdm
    from .datasets import load_prompts as lp
    t0 = time.time()
    values = [canonical(v) for v in (values or VALUE_NAMES)]
    bounds = fluency_bounds(runner)
    gates = Gates(runner, touche)
    irr_dev = [r["prompt"] for r in lp("irrelevant", split="dev")]
    doc = {"model_id": model_identity(runner.model), "calibrated": True,
           "objective": "max CSR (embedded judge) on dev prompts s.t. FR >= 0.97 x unsteered FR",
           "gate_rule": f"max Youden J s.t. open on <= {MAX_IRRELEVANT_OPEN} of irrelevant dev prompts",
           "fluency_bounds": bounds.__dict__, "values": {}, "search": {}}
    for value in tqdm(values, desc="calibrate", disable=not progress):
        qs = [r["prompt"] for r in lp("value", value, "dev")]
        none = score_method(runner, judge, MethodConfig("none", value), qs, bounds)
        floor = FR_RATIO * none["fr"]
        bank = runner.bank(value)
        layer_sets = {"rule": tuple(bank.select_layers()), "band3": layer_band(bank, 3)}
        trials = [{"method": "none", "csr": none["csr"], "fr": none["fr"],
                   "mean_score": none["mean_score"]}]
        conva = []
        for name, ls in layer_sets.items():
            if name != "rule" and ls == layer_sets["rule"]:
                continue
            for t in (logits if name == "rule" else band_logits):
                r = score_method(runner, judge, MethodConfig("conva-nogate", value, logit=t,
                                                             layers=ls), qs, bounds)
                conva.append({"method": "conva", "layers": list(ls), "layer_set": name,
                              "logit": round(float(t), 4), "strength": float(t) * len(ls),
                              "csr": r["csr"], "fr": r["fr"], "mean_score": r["mean_score"]})
        caa = []
        for mult in caa_grid:
            ls = layer_sets["rule"]
            r = score_method(runner, judge, MethodConfig("caa", value, multiplier=mult,
                                                         layers=ls), qs, bounds)
            caa.append({"method": "caa", "layers": list(ls), "multiplier": mult,
                        "strength": mult, "csr": r["csr"], "fr": r["fr"],
                        "mean_score": r["mean_score"]})
        ica = []
        for style in ica_styles:
            r = score_method(runner, judge, MethodConfig("ica", value, ica_style=style), qs,
                             bounds)
            ica.append({"method": "ica", "ica_style": style, "csr": r["csr"], "fr": r["fr"],
                        "mean_score": r["mean_score"]})
        g0 = _gate_threshold(gates, value, qs, irr_dev)
        bc, bk, bi = _best(conva, floor), _best(caa, floor), _best(ica, floor)
        doc["values"][value] = {
            "conva": {"logit": bc["logit"], "layers": bc["layers"], "positions": "all"},
            "caa": {"multiplier": bk["multiplier"], "layers": bk["layers"]},
            "ica": {"ica_style": bi["ica_style"]}, "g0": g0["g0"],
            "dev": {"none": {"csr": none["csr"], "fr": none["fr"]},
                    "conva": {k: bc[k] for k in ("csr", "fr")},
                    "caa": {k: bk[k] for k in ("csr", "fr")},
                    "ica": {k: bi[k] for k in ("csr", "fr")}, "gate": g0},
            "probe_test_acc": {str(l): round(float(bank.test_acc[bank.layers.index(l)]), 4)
                               for l in bc["layers"]}}
        doc["search"][value] = trials + conva + caa + ica
    doc["seconds"] = round(time.time() - t0, 1)
    doc["computed"] = dict(runner.counters)
    doc["gate"] = gates.kind
    return doc


def _gate_threshold(gates, value: str, value_qs: list[str], irrelevant_qs: list[str],
                    max_irrelevant_open: float = MAX_IRRELEVANT_OPEN) -> dict:
    """The calibrated gate threshold for ``value`` from its dev prompts (see ``gate_threshold``)."""
    gate = gates(value, 0.5)
    return gate_threshold(gate.scores(value_qs), gate.scores(irrelevant_qs), max_irrelevant_open)


def gate_threshold(s_val, s_irr, max_irrelevant_open: float = MAX_IRRELEVANT_OPEN) -> dict:
    """g0 that best separates value prompts' gate scores ``s_val [n]`` from irrelevant
    prompts' ``s_irr [m]`` (max Youden J) among thresholds that open on at most
    ``max_irrelevant_open`` of the irrelevant ones: the gate exists to leave those alone, so
    a weak detector yields a gate that rarely opens rather than one that always does."""
    from sklearn.metrics import roc_curve
    s_val, s_irr = np.asarray(s_val, float), np.asarray(s_irr, float)
    y = np.r_[np.ones(len(s_val)), np.zeros(len(s_irr))]
    fpr, tpr, thr = roc_curve(y, np.r_[s_val, s_irr])
    k = int(np.argmax(np.where(fpr <= max_irrelevant_open, tpr - fpr, -np.inf)))
    g0 = float(np.clip(thr[k], 1e-4, 1 - 1e-4))
    return {"g0": round(g0, 6), "open_value_dev": round(float((s_val >= g0).mean()), 4),
            "open_irrelevant_dev": round(float((s_irr >= g0).mean()), 4)}
