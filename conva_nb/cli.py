"""The ``conva-nb`` command. Run ``conva-nb -h`` or ``conva-nb SUBCOMMAND -h``.

With ``--json`` a subcommand prints exactly one JSON document on stdout;
progress and logs go to stderr. Bad input exits with status 2 and a message
that names what was wrong and what is valid.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import values as V

__all__ = ["main", "build_parser"]


class UsageError(Exception):
    """Bad input found after parsing; reported like an argparse error (exit 2)."""


def _value(text: str) -> str:
    try:
        return V.canonical(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _values_or_all(text: str) -> list[str]:
    if text.strip().lower() == "all":
        return list(V.VALUE_NAMES)
    return [_value(t) for t in text.split(",") if t.strip()]


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


def cmd_probe(args) -> None:
    raise UsageError("probe training arrives with conva_nb.probes")


def load_tokenizer(name: str):
    """Only the tokenizer of ``--model`` (fast; the model is not loaded)."""
    from transformers import AutoTokenizer
    from .models import EMBEDDED, _embedded_dir, _quiet_transformers
    with _quiet_transformers(name == EMBEDDED):
        return AutoTokenizer.from_pretrained(_embedded_dir() if name == EMBEDDED else name)


def cmd_check_data(args) -> None:
    from .datasets import check_data
    rep = check_data(args.path, tokenizer=load_tokenizer(args.model))
    human = [f"{'value':<15}{'pairs':>6}{'naive':>6}{'scen':>6}{'neg gap':>9}{'len gap':>9}"
             f"{'jaccard':>9}{'BoW acc':>9}"]
    for v, r in rep["values"].items():
        human.append(f"{v:<15}{r['pairs']:>6}{r['naive_pairs']:>6}{r['scenarios']:>6}"
                     f"{r['negation_gap']:>9.3f}{r['length_gap_tokens']:>9.2f}"
                     f"{r['twin_jaccard']:>9.2f}{r.get('bow_accuracy_no_lexicon', float('nan')):>9.2f}")
    human += [f"PROBLEM: {p}" for p in rep["problems"]] or ["ok: every bound is met"]
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
                   "conva_nb/data (controlled/, naive/, negation_control.jsonl)")
    p.set_defaults(func=cmd_check_data)

    p = sub.add_parser("generate-pairs", help="generate controlled pairs through an "
                       "OpenAI-compatible API (resumable)")
    _common(p)
    p.add_argument("--value", type=_value, required=True)
    p.add_argument("--n", type=int, required=True, help="number of pairs the file should hold")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (UsageError, ValueError, FileNotFoundError) as err:
        parser.exit(2, f"conva-nb {args.command}: error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
