"""The ``conva-nb`` command. Run ``conva-nb -h`` or ``conva-nb SUBCOMMAND -h``.

With ``--json`` a subcommand prints exactly one JSON document on stdout; progress and logs
go to stderr. Bad input exits with status 2 and a message that names what was wrong and
what is valid; an outside service that cannot be reached ends with one line and status 1;
anything else is a bug and prints its traceback (status 1).

Each subcommand imports what it needs when it runs, so ``conva-nb values`` or ``--help``
start without loading torch.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import values as V
from .errors import ServiceError, UsageError
from .judges import JUDGES
from .methods import method_names

__all__ = ["main", "build_parser"]


def _value(text: str) -> str:
    try:
        return V.canonical(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _values_or_all(text: str) -> list[str]:
    if text.strip().lower() == "all":
        return list(V.VALUE_NAMES)
    return [_value(t) for t in text.split(",") if t.strip()]


def _methods(text: str) -> list[str]:
    out = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [m for m in out if m not in method_names()]
    if bad or not out:
        raise argparse.ArgumentTypeError(f"unknown methods {bad or text!r}; valid: "
                                         f"{', '.join(method_names())}")
    return out


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {n}")
    return n


def _existing_file(text: str) -> Path:
    p = Path(text).expanduser()
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return p.resolve()


def _emit(args, payload: dict, human: str) -> None:
    if args.json:
        json.dump(payload, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(human)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_values(args) -> None:
    rows = [{"name": v.name, "definition": v.definition, "angle_deg": v.angle_deg,
             "group": v.group} for v in V.VALUES]
    human = "\n".join(f"{r['name']:<15} {r['angle_deg']:5.0f}°  {r['group']:<19} {r['definition']}"
                      for r in rows)
    _emit(args, {"values": rows}, human)


def _load(args):
    from .models import load_model
    _log(f"loading model {args.model} ...")
    return load_model(args.model)


def cmd_probe(args) -> None:
    from .probes import (
        bank_path,
        middle_layers,
        negation_control_accuracy,
        train_probes,
        transfer_accuracy,
    )
    model, tok = _load(args)
    bank = train_probes(model, tok, args.value, data=args.data, pooling=args.pooling)
    saved = bank.save(args.out or bank_path(model, args.value, args.data, args.pooling))
    best = bank.best_layer(middle_layers(bank))
    neg = negation_control_accuracy(model, tok, bank, best)
    layers = [{"layer": l, "train_acc": round(float(bank.train_acc[i]), 4),
               "select_acc": round(float(bank.select_acc[i]), 4),
               "test_acc": round(float(bank.test_acc[i]), 4), "C": float(bank.C[i]),
               "w_norm": round(float(bank.w_norm[i]), 6)} for i, l in enumerate(bank.layers)]
    out = {"value": bank.value, "data": bank.data, "pooling": bank.pooling, "layers": layers,
           "selected_layers": bank.select_layers(), "best_middle_layer": best,
           "negation_control_acc": round(neg["acc"], 4),
           "negation_control_auc": round(neg["auc"], 4), "saved_to": str(saved)}
    if args.data == "naive":
        tr = transfer_accuracy(model, tok, bank)
        out["transfer_to_controlled"] = tr
        out["transfer_acc_best_middle"] = tr[str(best)]
    human = [f"{bank.value} probes ({bank.data} data, {bank.pooling} pooling)",
             "layer  train  test"] + [f"{r['layer']:>5}  {r['train_acc']:.2f}  {r['test_acc']:.2f}"
                                       for r in layers]
    human += [f"selected layers: {out['selected_layers']}",
              f"negation control accuracy at layer {best}: {out['negation_control_acc']:.2f}",
              f"saved to {saved}"]
    _emit(args, out, "\n".join(human))


def cmd_check_data(args) -> None:
    from .datasets import check_data
    from .models import load_tokenizer
    rep = check_data(args.path, tokenizer=load_tokenizer(args.model))
    human = [f"{'value':<15}{'pairs':>6}{'naive':>6}{'scen':>6}{'neg gap':>9}{'len gap':>9}"
             f"{'jaccard':>9}{'BoW acc':>9}"]
    for v, r in rep["values"].items():
        human.append(f"{v:<15}{r['pairs']:>6}{r['naive_pairs']:>6}{r['scenarios']:>6}"
                     f"{r['negation_gap']:>9.3f}{r['length_gap_tokens']:>9.2f}"
                     f"{r['twin_jaccard']:>9.2f}{r.get('bow_accuracy_no_lexicon', float('nan')):>9.2f}")
    if rep["prompts"]:
        human.append(f"\n{'value':<15}{'vp dev':>7}{'vp test':>8}{'opp':>5}{'dil dev':>8}"
                     f"{'dil test':>9}")
        for v, r in rep["prompts"]["values"].items():
            human.append(f"{v:<15}{r['value_dev']:>7}{r['value_test']:>8}"
                         f"{r['opposing_dev'] + r['opposing_test']:>5}{r['dilemmas_dev']:>8}"
                         f"{r['dilemmas_test']:>9}")
    human += [f"PROBLEM: {p}" for p in rep["problems"]] or ["ok: every bound is met"]
    if rep["prompts"] and rep["prompts"]["problems"] and rep["prompts"]["values"]:
        human += [f"PROMPTS (below the evaluation bounds): {p}"
                  for p in rep["prompts"]["problems"]]
    _emit(args, rep, "\n".join(human))
    if not rep["ok"]:
        sys.exit(1)


def cmd_generate_pairs(args) -> None:
    from .generation import generate_pairs
    res = generate_pairs(args.value, args.n, args.out, base_url=args.base_url,
                         model_name=args.model_name, api_key=args.api_key, seed=args.seed,
                         max_retries=args.max_retries, backoff=args.backoff)
    _emit(args, res, f"wrote {res['written']} pairs, skipped {res['skipped']} duplicates "
                     f"-> {res['out']}")


def _read_lines(path: Path, what: str) -> list[str]:
    lines = [l.strip() for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
    if not lines:
        raise UsageError(f"{path}: the file holds no {what} (one per line expected)")
    return lines


def _touche(args):
    """Touché23's directory: --touche, $CONVA_NB_TOUCHE, or where `get-touche` put it."""
    from .datasets import find_touche
    return find_touche(args.touche)


def _require_detector(args) -> None:
    from .gates import detector_dir
    if not (detector_dir() / "detector.json").exists() and not _touche(args):
        raise UsageError("the value-detector gate is trained on Touché23: run `conva-nb "
                         "get-touche`, pass --touche DIR (with arguments-training.tsv, "
                         "labels-training.tsv) or set CONVA_NB_TOUCHE; or use --gate probe "
                         "or --no-gate")


def cmd_gate(args) -> None:
    from .gates import make_gate
    texts = _read_lines(args.texts_file, "texts")
    _require_detector(args)
    gate = make_gate("detector", args.value, g0=args.g0, touche=_touche(args))
    scores = [round(float(x), 6) for x in gate.scores(texts)]
    _emit(args, {"value": args.value, "g0": args.g0, "scores": scores},
          "\n".join(f"{sc:.3f}  {t}" for sc, t in zip(scores, texts)))


def _settings(args, model):
    from .settings import load_settings
    return load_settings(model, getattr(args, "settings", None))


def cmd_steer(args) -> None:
    from .gates import make_gate
    from .methods import get_method, question_for, steering_context
    from .operators import target_logit
    from .probes import ProbeBank, get_bank
    from .prompting import generate
    from .settings import config_for, gate_threshold_for
    if args.prompt is not None and not args.prompt.strip():
        raise UsageError("--prompt is empty")
    prompts = [args.prompt] if args.prompt is not None else _read_lines(args.prompts_file,
                                                                        "prompts")
    override = {}
    if args.p0 is not None or args.logit is not None:
        override["logit"] = target_logit(None if args.logit is not None else args.p0, args.logit)
    if args.multiplier is not None:
        override["multiplier"] = args.multiplier
    method = f"{args.method}-nogate" if args.no_gate and f"{args.method}-nogate" in \
        method_names() else args.method
    m = get_method(method)
    if m.gated and args.gate == "detector":
        _require_detector(args)
    model, tok = _load(args)
    settings = _settings(args, model)
    cfg = config_for(settings, method, args.value, **{k: v for k, v in override.items()
                                                      if k in m.defaults})
    bank = None
    if m.probe_data:
        bank = ProbeBank.load(args.bank, model) if args.bank else \
            get_bank(model, tok, args.value, data=m.probe_data)
        if bank.value != args.value:
            raise UsageError(f"{args.bank} holds a {bank.value} bank, not {args.value}")
    gate = None
    if m.gated:
        g0 = args.g0 if args.g0 is not None else gate_threshold_for(settings, args.value)
        gate = make_gate("none" if args.no_gate else args.gate, args.value, g0=g0, model=model,
                         tokenizer=tok, touche=_touche(args),
                         bank=bank if bank is not None else get_bank(model, tok, args.value))
    steerer = steering_context(model, tok, cfg, gate=gate, bank=bank)
    stats = getattr(steerer, "stats", None)
    outputs = []
    bs = args.batch_size
    with steerer:
        for i in range(0, len(prompts), bs):
            chunk = prompts[i:i + bs]
            texts = generate(model, tok, [question_for(cfg, q) for q in chunk], batch_size=bs,
                             seed=args.seed, max_new_tokens=args.max_new_tokens)
            fracs = stats.row_fraction() if stats else [0.0] * len(texts)
            opens = stats.gate_open if stats and stats.gate_open else [m.steers] * len(texts)
            for j, t in enumerate(texts):
                outputs.append({"prompt": chunk[j], "text": t, "gate_open": bool(opens[j]),
                                "steered_fraction": round(float(fracs[j]), 4)})
    human = "\n\n".join(f"Q: {o['prompt']}\nA: {o['text']}\n   (gate "
                         f"{'open' if o['gate_open'] else 'closed'}, steered "
                         f"{o['steered_fraction']:.0%})" for o in outputs)
    _emit(args, {"value": args.value, "method": method, "config": cfg.describe(),
                 "settings": settings.get("path"), "outputs": outputs}, human)


def _use_prompts(args) -> None:
    """Validate --prompts before anything loads and point the loaders at it."""
    from .datasets import check_prompts
    if getattr(args, "prompts", None) is None:
        return
    if not args.prompts.is_dir():
        raise UsageError(f"--prompts {args.prompts}: not a directory (expected a folder laid "
                         "out like conva_nb/data/prompts: value_prompts.jsonl, "
                         "opposing_prompts.jsonl, general_prompts.jsonl, "
                         "irrelevant_prompts.jsonl, dilemmas.jsonl)")
    rep = check_prompts(args.prompts)
    if not rep["values"]:   # a file is missing, empty or malformed (counts may be smaller)
        raise UsageError(f"--prompts {args.prompts}: {rep['problems'][0]}")
    os.environ["CONVA_NB_PROMPTS"] = str(args.prompts.resolve())


def _runner_and_judge(args):
    from .datasets import DataError
    from .judges import make_judge
    from .runner import Runner
    _use_prompts(args)
    if args.judge == "embedded":
        from .judges import EmbeddedJudge
        try:
            EmbeddedJudge.cached(_touche(args))   # fails fast, before the model loads
        except DataError:
            raise UsageError("the embedded judge is trained on Touché23: pass --touche DIR or "
                             "set CONVA_NB_TOUCHE; or use --judge llm") from None
    judge = make_judge(args.judge, touche=_touche(args), model_name=args.judge_model,
                       base_url=args.judge_base_url)
    if args.judge == "llm":
        judge.check_reachable()
    if getattr(args, "mmlu", None):
        from .experiment import capability_rows
        capability_rows(args.mmlu)   # fails fast without a reachable hub
    model, tok = _load(args)
    return Runner(model, tok, batch_size=args.batch_size, progress=not args.no_progress), judge


def cmd_evaluate(args) -> None:
    from .experiment import evaluate
    runner, judge = _runner_and_judge(args)
    settings = _settings(args, runner.model)
    res = evaluate(runner, judge, values=args.values, methods=args.methods, settings=settings,
                   touche=_touche(args), n_capability=args.n_capability, mmlu=args.mmlu,
                   opposing=not args.no_opposing, progress=not args.no_progress)
    from .models import model_identity
    from .settings import evaluation_path, save_evaluation
    res["model_id"] = model_identity(runner.model)
    full = set(args.values) == set(V.VALUE_NAMES) and set(args.methods) == set(method_names())
    out = args.out or (evaluation_path(runner.model) if full and not args.no_save else None)
    if out:
        res["saved_to"] = str(save_evaluation(res, out))
    head = f"{'value':<15}{'method':<14}{'CSR':>6}{'FR':>6}{'ret':>6}{'p(none)':>9}"
    lines = [head] + [f"{r['value']:<15}{r['method']:<14}{r['csr']:>6.2f}{r['fr']:>6.2f}"
                      f"{r['retention']:>6.2f}{r.get('p_vs_none', float('nan')):>9.4f}"
                      for r in res["rows"]]
    lines.append(json.dumps(res["summary"], indent=1))
    _emit(args, res, "\n".join(lines))


def _merge_settings(old: dict, new: dict) -> dict:
    """Calibrating some values or methods keeps every other value's and method's entry."""
    if old.get("model_id") != new["model_id"]:
        return new
    redone = {t["method"] for trials in new["search"].values() for t in trials}
    for v, entry in new["values"].items():
        mine = old["values"].setdefault(v, {})
        mine.update({k: x for k, x in entry.items() if k != "dev"})
        mine.setdefault("dev", {}).update(entry["dev"])
        kept = [t for t in old.setdefault("search", {}).get(v, []) if t["method"] not in redone]
        old["search"][v] = kept + new["search"][v]
    return {**old, **{k: x for k, x in new.items() if k not in ("values", "search")},
            "values": old["values"], "search": old["search"]}


def cmd_calibrate(args) -> None:
    from .experiment import calibrate
    from .settings import save_settings, settings_path
    runner, judge = _runner_and_judge(args)
    doc = calibrate(runner, judge, values=args.value, touche=_touche(args),
                    methods=args.methods, progress=not args.no_progress)
    out = args.out or settings_path(runner.model)
    partial = args.value != list(V.VALUE_NAMES) or args.methods is not None
    if partial and Path(out).is_file():
        doc = _merge_settings(json.loads(Path(out).read_text()), doc)
    doc["saved_to"] = str(save_settings(doc, out))
    lines = [f"{v:<15} " + "  ".join(f"{k} {s[k]}" for k in s if k not in ("dev",))
             for v, s in doc["values"].items()] + [f"saved to {doc['saved_to']}"]
    _emit(args, doc, "\n".join(lines))


def cmd_get_touche(args) -> None:
    from .datasets import TOUCHE_FILES, TOUCHE_LICENCE, download_touche
    _log(TOUCHE_LICENCE)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("downloading Touché23 needs your agreement to its licence: "
                             "pass --yes (or run in a terminal to be asked)")
        if input("Download it from Zenodo into "
                 f"{args.dir or 'the cache'}? [y/N] ").strip().lower() not in ("y", "yes"):
            raise UsageError("not downloaded (answer y, or pass --yes)")
    path = download_touche(args.dir, progress=not args.json)
    _emit(args, {"path": str(path), "files": list(TOUCHE_FILES), "licence": TOUCHE_LICENCE},
          f"Touché23 is in {path}; later commands find it there (or pass --touche {path})")


def cmd_bench(args) -> None:
    from .bench import run_bench
    res = run_bench(args.model, device=args.device, tokens=args.tokens, repeats=args.repeats)
    _emit(args, res, "\n".join(f"{k}: {v}" for k, v in res.items()))


def cmd_circle(args) -> None:
    from . import circle
    from .probes import get_bank
    model, tok = _load(args)
    banks = [get_bank(model, tok, v, pooling=args.pooling) for v in V.VALUE_NAMES]
    if args.layer is not None and args.layer not in banks[0].layers:
        raise UsageError(f"layer {args.layer} is not probed; probed layers: {banks[0].layers}")
    layer, vecs = circle.value_vectors(banks, args.layer)
    cos = circle.cosine_matrix(vecs, remove_shared=args.remove_shared)
    agree = circle.agreement(cos, n_perm=args.n_perm)
    out = {"layer": layer, "values": list(V.VALUE_NAMES), "remove_shared": args.remove_shared,
           "cosine": [[round(float(c), 4) for c in row] for row in cos], "circle_agreement": agree,
           "groups": circle.group_similarity(cos),
           "random_baseline": circle.random_baseline(vecs.shape[1])}
    human = [f"layer {layer}: Spearman rho {agree['spearman_rho']:.3f} "
             f"(permutation p = {agree['p_value']:.4f})"]
    human += [f"{a:<15}" + " ".join(f"{c:+.2f}" for c in row) for a, row in zip(V.VALUE_NAMES, cos)]
    _emit(args, out, "\n".join(human))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="embedded",
                   help="'embedded' (Gemma 3 270M, offline), a Hugging Face id, or a local path")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conva-nb", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("values", help="list the 10 Schwartz values")
    _common(p)
    p.set_defaults(func=cmd_values)

    p = sub.add_parser("check-data", help="validate the shipped (or given) pair data")
    _common(p)
    p.add_argument("--path", type=Path, default=None, help="a data directory laid out like "
                   "conva_nb/data (controlled/, naive/, negation_control.jsonl, optionally prompts/)")
    p.set_defaults(func=cmd_check_data)

    p = sub.add_parser("generate-pairs", help="generate controlled pairs through an "
                       "OpenAI-compatible API (resumable)")
    _common(p)
    p.add_argument("--value", type=_value, required=True)
    p.add_argument("--n", type=_positive_int, required=True,
                   help="number of pairs the file should hold")
    p.add_argument("--out", type=Path, required=True, help="JSONL output (appended, resumed)")
    p.add_argument("--base-url", default=None, help="e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model-name", default="gpt-4o", help="the endpoint's model name")
    p.add_argument("--api-key", default=None, help="default: $OPENAI_API_KEY")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-retries", type=int, default=5)
    p.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds")
    p.set_defaults(func=cmd_generate_pairs)

    p = sub.add_parser("probe", help="train per-layer probes for one value")
    _common(p)
    p.add_argument("--value", type=_value, required=True, help="one of the 10 values")
    p.add_argument("--data", choices=("controlled", "naive"), default="controlled")
    p.add_argument("--pooling", choices=("last", "mean"), default="last")
    p.add_argument("--out", type=Path, default=None, help="where to save the bank (default: cache)")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("steer", help="generate answers, steered toward a value")
    _common(p)
    p.add_argument("--value", type=_value, required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="one question")
    src.add_argument("--prompts-file", type=_existing_file, help="one question per line")
    p.add_argument("--method", choices=method_names(), default="conva",
                   help="see `conva-nb evaluate --help` for what each method is")
    p.add_argument("--p0", type=float, default=None,
                   help="target probability in (0.5, 1) (default: the calibrated setting)")
    p.add_argument("--logit", type=float, default=None, help="target logit instead of --p0")
    p.add_argument("--no-gate", action="store_true", help="steer every prompt (ConVA w/o gate)")
    p.add_argument("--bank", type=Path, default=None, help="a saved probe bank directory")
    p.add_argument("--gate", choices=("detector", "probe", "auto"), default="detector",
                   help="the gate of gated methods (default: the Touché23 value detector)")
    p.add_argument("--g0", type=float, default=None,
                   help="detector gate threshold (default: calibrated)")
    p.add_argument("--touche", type=Path, default=None, help="Touché23 dir for the detector")
    p.add_argument("--multiplier", type=float, default=None,
                   help="CAA strength relative to the hidden-state norm (default: calibrated)")
    p.add_argument("--settings", type=_existing_file, default=None,
                   help="a calibrated settings JSON (default: the model's own, if any)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=40)
    p.add_argument("--batch-size", type=_positive_int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_steer)

    for name, func, hlp in (("evaluate", cmd_evaluate, "the comparison table (CSR, FR, retention)"),
                            ("calibrate", cmd_calibrate, "search per-value settings on dev prompts")):
        p = sub.add_parser(name, help=hlp)
        _common(p)
        if name == "evaluate":
            p.add_argument("--values", type=_values_or_all, default=list(V.VALUE_NAMES),
                           help="'all' or comma-separated values")
            p.add_argument("--methods", type=_methods, default=method_names(),
                           help=f"comma-separated, from {', '.join(method_names())}")
            p.add_argument("--n-capability", type=_positive_int, default=None,
                           help="use only the first N value-irrelevant test prompts for "
                                "capability (default: all of them, every category)")
            p.add_argument("--mmlu", type=_positive_int, default=None, metavar="N",
                           help="capability on the first N MMLU test questions through "
                                "datasets instead (needs the Hugging Face hub, e.g. on Colab)")
            p.add_argument("--no-opposing", action="store_true", help="skip opposing-value prompts")
            p.add_argument("--no-save", action="store_true", help="don't write the model's "
                           "evaluation file (a full run writes it by default)")
            p.add_argument("--settings", type=_existing_file, default=None,
                           help="a calibrated settings JSON (default: the model's own, if any)")
        else:
            p.add_argument("--value", type=_values_or_all, required=True,
                           help="'all' or comma-separated values")
            p.add_argument("--methods", type=_methods, default=None,
                           help="calibrate only these (default: every calibrated method)")
        p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
        p.add_argument("--touche", type=Path, default=None, help="Touché23 dir (judge, gate)")
        p.add_argument("--prompts", type=Path, default=None, metavar="DIR",
                       help="prompts and dilemmas from DIR (laid out like "
                            "conva_nb/data/prompts) instead of the shipped ones")
        p.add_argument("--judge", choices=JUDGES, default="embedded",
                       help="embedded: offline MiniLM judge trained on Touché23; llm: any "
                            "OpenAI-compatible server, asked whether the answer prioritises "
                            "the value as a goal, not merely its topic (verdicts cached)")
        p.add_argument("--judge-model", default=None, help="the LLM judge's model name")
        p.add_argument("--judge-base-url", default=None,
                       help="the LLM judge's server, e.g. http://127.0.0.1:8000/v1")
        p.add_argument("--batch-size", type=_positive_int, default=32)
        p.add_argument("--no-progress", action="store_true")
        p.set_defaults(func=func)

    p = sub.add_parser("gate", help="value-relevance scores of texts")
    _common(p)
    p.add_argument("--value", type=_value, required=True)
    p.add_argument("--texts-file", type=_existing_file, required=True, help="one text per line")
    p.add_argument("--g0", type=float, default=0.5)
    p.add_argument("--touche", type=Path, default=None, help="Touché23 dir for the detector")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("circle", help="value-vector similarity vs Schwartz's circle")
    _common(p)
    p.add_argument("--layer", type=int, default=None, help="default: best middle layer")
    p.add_argument("--pooling", choices=("last", "mean"), default="last")
    p.add_argument("--remove-shared", action="store_true",
                   help="subtract the direction all ten vectors share")
    p.add_argument("--n-perm", type=int, default=10000)
    p.set_defaults(func=cmd_circle)

    p = sub.add_parser("get-touche", help="download Touché23-ValueEval (CC BY-SA 4.0) from "
                       "Zenodo, checksum-verified (the judge and the gate are trained on it)")
    _common(p)
    p.add_argument("--dir", type=Path, default=None,
                   help="where to put it (default: the package cache, found automatically)")
    p.add_argument("--yes", action="store_true", help="agree to the licence without asking")
    p.set_defaults(func=cmd_get_touche)

    p = sub.add_parser("bench", help="steering overhead and gate latency")
    _common(p)
    p.add_argument("--device", default="cpu", help="cpu, or cuda (random-init 7B Llama, bf16)")
    p.add_argument("--tokens", type=int, default=24, help="new tokens per generation")
    p.add_argument("--repeats", type=int, default=3)
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except UsageError as err:
        parser.exit(2, f"conva-nb {args.command}: error: {err}\n")
    except ServiceError as err:
        parser.exit(1, f"conva-nb {args.command}: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
