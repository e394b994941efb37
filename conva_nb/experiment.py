"""Evaluation and calibration: the comparison table, the strength sweep, the settings search.

``evaluate`` compares the registered methods (:mod:`conva_nb.methods`) per value on the
held-out ``test`` prompts; ``calibrate`` searches each method's grid on the disjoint
``dev`` prompts with one objective for all methods — the judge's control success subject
to fluency within the bounds of the unsteered model — and writes the settings file that
``steer`` and ``evaluate`` then use. Both run through a cached :class:`~conva_nb.runner.Runner`
and take any judge of :mod:`conva_nb.judges`.
"""
from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from .datasets import load_prompts
from .gates import make_gate, resolve_kind
from .methods import METHODS, MethodConfig, baselines, get_method
from .metrics import FluencyBounds
from .models import model_identity
from .settings import config_for, gate_threshold_for, load_settings
from .stats import bootstrap_ci, paired_test
from .values import VALUE_NAMES, canonical

__all__ = ["fluency_bounds", "ValueGates", "score_method", "evaluate", "calibrate", "sweep",
           "gate_threshold", "summarize", "FR_RATIO", "MAX_IRRELEVANT_OPEN"]

FR_RATIO = 0.97
MAX_IRRELEVANT_OPEN = 0.15   # the gate may open on at most this share of irrelevant dev prompts


def fluency_bounds(runner, q: float = 0.99) -> FluencyBounds:
    """Bounds met by ``q`` of the unsteered answers to every dev prompt (value + general)."""
    qs = [r["prompt"] for r in load_prompts("value", split="dev")]
    qs += [r["prompt"] for r in load_prompts("general", split="dev")]
    texts, _ = runner.outputs(MethodConfig("none", VALUE_NAMES[0]), qs)
    return FluencyBounds.calibrate(runner.perplexities(qs, texts), texts, q=q)


class ValueGates:
    """The value gate of each value under ``settings`` (its calibrated threshold), made once
    per (value, threshold); ``kind`` as in :func:`~conva_nb.gates.make_gate`, with ``"auto"``
    decided once for the whole run."""

    def __init__(self, runner, touche=None, settings=None, kind: str = "auto"):
        self.runner, self.touche = runner, touche
        self.kind = resolve_kind(kind, touche)
        self.settings = settings or {"values": {}}
        self._made: dict = {}

    def __call__(self, value: str, g0: float | None = None):
        g0 = gate_threshold_for(self.settings, value) if g0 is None else g0
        if (value, g0) not in self._made:
            bank = self.runner.bank(value) if self.kind == "probe" else None
            self._made[value, g0] = make_gate(self.kind, value, g0=g0, model=self.runner.model,
                                              tokenizer=self.runner.tok, touche=self.touche,
                                              bank=bank)
        return self._made[value, g0]


def score_method(runner, judge, cfg: MethodConfig, questions: list[str], bounds: FluencyBounds,
                 gate=None) -> dict:
    """Judge scores, successes and fluency of ``cfg``'s answers to ``questions``."""
    texts, opened = runner.outputs(cfg, questions, gate)
    scores = np.asarray(judge.scores(cfg.value, questions, texts), dtype=float)
    success = np.asarray(judge.success(cfg.value, scores)).astype(int)
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


def evaluate(runner, judge, values=None, methods=None, settings=None, touche=None,
             split: str = "test", n_capability: int | None = 40, opposing: bool = True,
             bounds: FluencyBounds | dict | None = None, progress: bool = True,
             n_prompts: int | None = None) -> dict:
    """The comparison table: per value × method CSR, FR and capability retention.

    Returns ``{"rows": [...], "summary": {...}, "seconds", "computed"}``; each row holds
    ``value, method, csr, csr_ci, fr, capability, retention, mean_score, gate_open_rate,
    csr_opposing, p_vs_none, config``. Statistics: paired one-sided t-tests on the judge's
    per-prompt scores (scipy), percentile bootstrap 95 % CIs of CSR. ``bounds``: fluency
    bounds to reuse (default: those of the calibrated settings, else calibrated now on the
    unsteered answers to the dev prompts). ``n_prompts``: use only the first prompts of each
    value (quick mode).
    """
    t0 = time.time()
    values = [canonical(v) for v in (values or VALUE_NAMES)]
    methods = list(METHODS) if methods is None else list(methods)
    for m in methods:
        get_method(m)
    methods = ["none"] + [m for m in methods if m != "none"]
    settings = settings or load_settings(runner.model)
    gates = ValueGates(runner, touche, settings)
    if bounds is None and settings.get("fluency_bounds"):   # the bounds calibration used
        bounds = settings["fluency_bounds"]
    if isinstance(bounds, dict):   # e.g. the "fluency_bounds" of a saved evaluation
        bounds = FluencyBounds(**bounds)
    bounds = bounds or fluency_bounds(runner)
    cap_rows = load_prompts("irrelevant", split="test")[:n_capability]
    none_cap = runner.capability(MethodConfig("none", values[0]), cap_rows)
    rows = []
    for value in tqdm(values, desc="evaluate", disable=not progress):
        qs = [r["prompt"] for r in load_prompts("value", value, split)][:n_prompts]
        ops = [r["prompt"] for r in load_prompts("opposing", value, split)][:n_prompts] \
            if opposing else []
        gate = gates(value) if any(get_method(m).gated for m in methods) else None
        plan = {m: (config_for(settings, m, value), gate) for m in methods}
        _prefetch(runner, plan, qs, ops)
        res = {}
        for m, (cfg, gate) in plan.items():
            r = score_method(runner, judge, cfg, qs, bounds, gate)
            cap = runner.capability(cfg, cap_rows, gate)
            r["capability"], r["cap_gate_open"] = cap["mc_acc"], cap["gate_open_rate"]
            r["ref_loglik"] = cap["ref_loglik"]
            if ops and get_method(m).opposing:
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
                   "config": cfg.describe(), "n_prompts": len(qs)}
            if m != "none":
                row["p_vs_none"] = round(paired_test(r["scores"], base_scores)["p_value"], 6)
            if m == "conva":
                for b in baselines():
                    if b in res:
                        row[f"p_vs_{b}"] = round(paired_test(r["scores"],
                                                             res[b][1]["scores"])["p_value"], 6)
            rows.append(row)
    return {"rows": rows, "summary": summarize(rows), "fluency_bounds": bounds.__dict__,
            "n_capability": len(cap_rows), "split": split, "judge": judge.report(),
            "gate": gates.kind, "settings": settings.get("path"),
            "seconds": round(time.time() - t0, 1), "computed": dict(runner.counters)}


def _prefetch(runner, plan: dict, qs: list[str], ops: list[str]) -> None:
    """Compute (or find cached) what a value's rows need, in as few passes as possible:
    each method's answers to its value and opposing prompts in one generation pass, then
    the perplexity of every method's answers in one scoring pass, where a question's
    answers share its context (:func:`conva_nb.scoring.continuation_logprobs`)."""
    asked, answers = [], []
    for m, (cfg, gate) in plan.items():
        q = qs + (ops if get_method(m).opposing else [])
        texts, _ = runner.outputs(cfg, q, gate)
        asked += q
        answers += texts
    runner.perplexities(asked, answers)


def summarize(rows: list[dict]) -> dict:
    """Headline figures of an ``evaluate`` table."""
    by = {(r["value"], r["method"]): r for r in rows}
    values = sorted({r["value"] for r in rows}, key=VALUE_NAMES.index)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    base = [m for m in baselines() if m in methods]
    out = {f"mean_{k}": {m: round(float(np.mean([by[v, m][k] for v in values])), 4)
                         for m in methods} for k in ("csr", "fr", "retention")}
    if "conva" in methods:
        wins, sig = [], []
        for v in values:
            c = by[v, "conva"]
            ok = c["fr_ratio"] >= FR_RATIO and c["retention"] >= FR_RATIO
            if ok and all(c["csr"] > by[v, m]["csr"] for m in base if (v, m) in by):
                wins.append(v)
            if c.get("p_vs_none", 1) < 0.05 and c["csr"] > by[v, "none"]["csr"]:
                sig.append(v)
        best = [max(by[v, m]["csr"] for m in base if (v, m) in by) for v in values
                if any((v, m) in by for m in base)]
        if best:
            b = float(np.mean(best))
            out["relative_csr_gain_vs_best_baseline"] = round(
                (out["mean_csr"]["conva"] - b) / b, 4) if b else None
        out["conva_beats_" + "_and_".join(base)] = wins
        out["conva_significant_vs_none"] = sig
    return out


def sweep(runner, judge, value: str, logits=(4.595, 10.0, 14.0), layers=None, split: str = "dev",
          bounds: FluencyBounds | None = None, method: str = "conva-nogate",
          n_prompts: int | None = None) -> list[dict]:
    """CSR and FR of an ungated ConVA method for each target logit (the CSR–fluency curve)."""
    bounds = bounds or fluency_bounds(runner)
    qs = [r["prompt"] for r in load_prompts("value", value, split)][:n_prompts]
    out = []
    for t in logits:
        cfg = MethodConfig(method, value, logit=float(t), layers=layers)
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


def _calibrated_methods(methods=None) -> dict[str, str]:
    """``{settings_key: method}``: the method whose (ungated) runs calibrate each key."""
    out: dict[str, str] = {}
    for m in (METHODS.values() if methods is None else [get_method(n) for n in methods]):
        if m.settings_key and m.grid and (m.settings_key not in out
                                          or get_method(out[m.settings_key]).gated):
            out[m.settings_key] = m.name
    return out


def calibrate(runner, judge, values=None, touche=None, methods=None,
              progress: bool = True) -> dict:
    """Search every calibrated method's grid and the gate threshold per value on the ``dev``
    prompts; returns the settings document (see :mod:`conva_nb.settings`)."""
    t0 = time.time()
    values = [canonical(v) for v in (values or VALUE_NAMES)]
    keys = _calibrated_methods(methods)
    gated = any(get_method(m).gated for m in (methods or METHODS))
    probes = any(get_method(m).probe_data for m in keys.values())
    bounds = fluency_bounds(runner)
    gates = ValueGates(runner, touche)
    irr_dev = [r["prompt"] for r in load_prompts("irrelevant", split="dev")]
    doc = {"model_id": model_identity(runner.model), "calibrated": True,
           "objective": f"max CSR (judge) on dev prompts s.t. FR >= {FR_RATIO} x unsteered FR",
           "gate_rule": f"max Youden J s.t. open on <= {MAX_IRRELEVANT_OPEN} of irrelevant dev "
                        "prompts",
           "fluency_bounds": bounds.__dict__, "values": {}, "search": {}}
    for value in tqdm(values, desc="calibrate", disable=not progress):
        qs = [r["prompt"] for r in load_prompts("value", value, "dev")]
        none = score_method(runner, judge, MethodConfig("none", value), qs, bounds)
        floor = FR_RATIO * none["fr"]
        bank = runner.bank(value) if probes else None
        search = [{"method": "none", "csr": none["csr"], "fr": none["fr"],
                   "mean_score": none["mean_score"]}]
        entry = {"dev": {"none": {"csr": none["csr"], "fr": none["fr"]}}}
        for key, name in keys.items():
            trials = []
            for point in get_method(name).grid(bank):
                r = score_method(runner, judge, MethodConfig(name, value, point.params), qs,
                                 bounds)
                trials.append({"method": key, **point.params, **point.meta,
                               "strength": point.strength, "csr": r["csr"], "fr": r["fr"],
                               "mean_score": r["mean_score"]})
            best = _best(trials, floor)
            entry[key] = {k: best[k] for k in get_method(name).defaults}
            entry["dev"][key] = {k: best[k] for k in ("csr", "fr")}
            search += trials
        if gated:
            g0 = _gate_threshold(gates, value, qs, irr_dev)
            entry["g0"], entry["dev"]["gate"] = g0["g0"], g0
        if "conva" in entry:
            entry["probe_test_acc"] = {str(l): round(float(bank.test_acc[bank.layers.index(l)]),
                                                     4)
                                       for l in entry["conva"]["layers"]}
        doc["values"][value] = entry
        doc["search"][value] = search
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
