"""Loading and validating the shipped data; Touché23-ValueEval and MMLU loaders.

Shipped files (``conva_nb/data``, described in its README.md):

- ``controlled/<value>.jsonl``  context-controlled twins ``{id, value, persona, scenario,
  structure, positive, negative, split}``; split is ``train``, ``select`` or ``heldout``
- ``naive/<value>.jsonl``       naive pairs ``{id, value, positive_topic, negative_topic,
  positive, negative}`` (positives on the value's stereotypical topic, negatives off-topic)
- ``negation_control.jsonl``    value-free ``{id, affirmative, negated}`` pairs
- ``prompts/*.jsonl``           evaluation prompts (value, general, opposing, irrelevant)

Every loader takes an optional path, so readers can bring their own files.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import urllib.request
from collections import Counter
from importlib.resources import files
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .cache import cache_dir
from .errors import ServiceError, UsageError
from .values import VALUE_NAMES, canonical

__all__ = ["DataError", "data_dir", "read_jsonl", "load_pairs", "load_naive_pairs",
           "load_negation_control", "load_prompts", "load_dilemmas", "check_prompts", "prompts_dir", "all_sentences", "has_negation",
           "NEGATION_WORDS", "VALUE_LEXICON", "BOUNDS", "check_data", "load_touche",
           "TOUCHE_TO_SCHWARTZ", "load_mmlu", "download_touche", "TOUCHE_LICENCE"]

PAIR_FIELDS = ("id", "value", "persona", "scenario", "structure", "positive", "negative", "split")
NAIVE_FIELDS = ("id", "value", "positive_topic", "negative_topic", "positive", "negative")
NEG_FIELDS = ("id", "affirmative", "negated")
PROMPT_FIELDS = {
    "value": ("id", "value", "prompt", "split"),
    "general": ("id", "prompt", "split"),
    "opposing": ("id", "value", "opposing_value", "prompt", "split"),
    "irrelevant": ("id", "category", "prompt", "answer", "choices", "split"),
}
DILEMMA_FIELDS = ("id", "value", "scenario", "question", "value_option", "other_option",
                  "other_value", "value_first", "split")
SPLITS = ("train", "select", "heldout")   # fit / every probe choice / reported only
PROMPT_SPLITS = ("dev", "test")

NEGATION_WORDS = frozenset(
    "not no never nobody nothing none nor neither nowhere without cannot refuse refused refuses "
    "refusing decline declined declines declining".split())
_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\d+|[^\w\s]")

# Words that name a value outright; removed before the bag-of-words check so that it
# measures whatever else separates the twins.
VALUE_LEXICON = {
    "self-direction": "independent independently independence freedom free freely curious "
                      "curiosity choose chose chosen choice own creative create explore",
    "stimulation": "exciting excitement excited adventure adventurous thrill thrilling daring "
                   "novelty new challenge challenging bold",
    "hedonism": "pleasure pleasures enjoy enjoyed enjoying enjoyment fun treat indulge "
                "indulgent delicious comfort",
    "achievement": "success successful succeed achieve achieved achievement ambition ambitious "
                   "win won goal goals excel",
    "power": "power powerful control status prestige authority dominance dominate wealth rich "
             "influence command",
    "security": "safe safety secure security stable stability protect protected risk risks "
                "careful order",
    "conformity": "rules rule polite politely obey obeyed norms expected proper behave "
                  "manners appropriate",
    "tradition": "tradition traditions traditional custom customs ritual rituals ancestors "
                 "heritage faith religious",
    "benevolence": "help helped helping helpful care cared caring kind kindness loyal support "
                   "honest forgive",
    "universalism": "equal equality justice fair fairness tolerance tolerant environment "
                    "nature planet everyone diversity",
}
VALUE_LEXICON = {k: frozenset(v.split()) for k, v in VALUE_LEXICON.items()}

BOUNDS = {"min_pairs": 120, "min_train_pairs": 70, "min_select_pairs": 30, "min_naive_pairs": 100, "min_scenarios": 60,
          "max_negation_gap": 0.10, "max_length_gap_tokens": 1.5, "min_negation_pairs": 60}


class DataError(UsageError):
    """A data file that does not follow its schema; the message names file, line and field."""


def data_dir() -> Path:
    """The directory of the shipped data files."""
    return Path(str(files("conva_nb").joinpath("data")))


def prompts_dir() -> Path:
    """Where prompts and dilemmas are read from: ``$CONVA_NB_PROMPTS`` (a folder laid out
    like ``conva_nb/data/prompts``; ``--prompts`` of evaluate/calibrate sets it) or the
    shipped folder."""
    env = os.environ.get("CONVA_NB_PROMPTS")
    return Path(env).expanduser() if env else data_dir() / "prompts"


def read_jsonl(path: str | Path, fields: tuple[str, ...]) -> list[dict]:
    """Rows of a JSONL file, each checked to hold non-empty ``fields``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{n}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
            for f in fields:
                v = row.get(f)
                if v is None or (isinstance(v, str) and not v.strip()) or v == []:
                    raise DataError(f"{path}:{n}: field {f!r} is missing or empty "
                                    f"(required fields: {', '.join(fields)})")
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: the file holds no rows")
    return rows


def _value_files(kind: str, value: str | None, path) -> list[tuple[str, Path]]:
    base = Path(path) if path else data_dir() / kind
    if base.is_file():
        return [(canonical(value) if value else "", base)]
    names = [canonical(value)] if value else list(VALUE_NAMES)
    return [(v, base / f"{v}.jsonl") for v in names]


def _check_value_field(rows, want: str, path: Path):
    for r in rows:
        try:
            got = canonical(r["value"])
        except ValueError as err:
            raise DataError(f"{path}: row {r.get('id')}: {err}") from None
        if want and got != want:
            raise DataError(f"{path}: row {r.get('id')} has value {got!r}, expected {want!r}")
        r["value"] = got


def load_pairs(value: str | None = None, split: str | None = None, path=None) -> list[dict]:
    """Controlled twins for one value (or all), optionally one split (:data:`SPLITS`)."""
    if split is not None and split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    rows = []
    for v, p in _value_files("controlled", value, path):
        part = read_jsonl(p, PAIR_FIELDS)
        _check_value_field(part, v, p)
        for r in part:
            if r["split"] not in SPLITS:
                raise DataError(f"{p}: row {r['id']}: split {r['split']!r} is not one of {SPLITS}")
        rows += part
    return [r for r in rows if split is None or r["split"] == split]


def load_naive_pairs(value: str | None = None, path=None) -> list[dict]:
    """Naive (context-biased) pairs for one value or all."""
    rows = []
    for v, p in _value_files("naive", value, path):
        part = read_jsonl(p, NAIVE_FIELDS)
        _check_value_field(part, v, p)
        rows += part
    return rows


def load_negation_control(path=None) -> list[dict]:
    """Value-free affirmative/negated sentence pairs."""
    return read_jsonl(Path(path) if path else data_dir() / "negation_control.jsonl", NEG_FIELDS)


def load_prompts(kind: str, value: str | None = None, split: str | None = None,
                 path=None) -> list[dict]:
    """Evaluation prompts: ``kind`` is value, general, opposing or irrelevant."""
    if kind not in PROMPT_FIELDS:
        raise UsageError(f"unknown prompt kind {kind!r}; valid: {', '.join(PROMPT_FIELDS)}")
    if split is not None and split not in PROMPT_SPLITS:
        raise UsageError(f"unknown split {split!r}; valid: {', '.join(PROMPT_SPLITS)}")
    p = Path(path) if path else prompts_dir() / f"{kind}_prompts.jsonl"
    rows = read_jsonl(p, PROMPT_FIELDS[kind])
    if kind in ("value", "opposing"):
        _check_value_field(rows, "", p)
    if kind == "irrelevant":
        for r in rows:
            if r["answer"] not in r["choices"]:
                raise DataError(f"{p}: row {r['id']}: answer {r['answer']!r} is not among its "
                                f"choices {r['choices']}")
    if value is not None:
        rows = [r for r in rows if r.get("value") == canonical(value)]
    if split is not None:
        rows = [r for r in rows if r.get("split") == split]
    return rows


def load_dilemmas(value: str | None = None, split: str | None = None, path=None) -> list[dict]:
    """Forced-choice dilemmas ``{id, value, scenario, question, value_option, other_option,
    other_value, value_first, split}``: the question names both options verbatim, in the
    order ``value_first`` says; ``value_option`` expresses ``value``."""
    if split is not None and split not in PROMPT_SPLITS:
        raise UsageError(f"unknown split {split!r}; valid: {', '.join(PROMPT_SPLITS)}")
    p = Path(path) if path else prompts_dir() / "dilemmas.jsonl"
    rows = read_jsonl(p, DILEMMA_FIELDS)
    _check_value_field(rows, "", p)
    for r in rows:
        q, a, b = r["question"], r["value_option"], r["other_option"]
        if a not in q or b not in q:
            raise DataError(f"{p}: row {r['id']}: both options must appear verbatim in its "
                            "question")
        if (q.index(a) < q.index(b)) != bool(r["value_first"]):
            raise DataError(f"{p}: row {r['id']}: value_first={r['value_first']} does not "
                            "match the order of the options in the question")
    if value is not None:
        rows = [r for r in rows if r["value"] == canonical(value)]
    return [r for r in rows if split is None or r["split"] == split]


PROMPT_BOUNDS = {"min_value_dev": 30, "min_value_test": 50, "min_opposing": 20,
                 "min_dilemmas_per_split": 30, "max_dilemma_length_gap_words": 1.0,
                 "max_value_first_gap": 0.1, "min_capability_test": 100}


def _split_overlap(rows: list[dict], what: str) -> list[str]:
    """Problems where a scenario tag or a prompt text occurs in both splits."""
    seen: dict = {}
    untagged = [r["id"] for r in rows if not str(r.get("scenario") or "").strip()]
    if untagged:
        return [f"{what}: {len(untagged)} rows without a scenario tag (e.g. {untagged[0]}), "
                "so split hygiene cannot be checked"]
    for r in rows:
        for k in (("scenario", r["scenario"].strip().lower()),
                  ("text", (r.get("prompt") or r.get("question")).strip().lower())):
            seen.setdefault(k, set()).add(r["split"])
    return [f"{what}: {kind} {name!r} occurs in both dev and test"
            for (kind, name), splits in seen.items() if len(splits) > 1]


def check_prompts(path=None) -> dict:
    """Counts and split hygiene of the evaluation prompts and dilemmas (``path``: a folder
    like ``conva_nb/data/prompts``). Returns ``{ok, values, problems}``."""
    base = Path(path) if path else prompts_dir()
    b, problems, report = PROMPT_BOUNDS, [], {}
    try:
        kinds = {k: load_prompts(k, path=base / f"{k}_prompts.jsonl")
                 for k in ("value", "opposing", "irrelevant")}
        dil = load_dilemmas(path=base / "dilemmas.jsonl")
    except DataError as err:
        return {"ok": False, "values": {}, "problems": [str(err)]}
    for v in VALUE_NAMES:
        vp = [r for r in kinds["value"] if r["value"] == v]
        op = [r for r in kinds["opposing"] if r["value"] == v]
        dl = [r for r in dil if r["value"] == v]
        n = {f"value_{s}": sum(r["split"] == s for r in vp) for s in PROMPT_SPLITS}
        n.update({f"opposing_{s}": sum(r["split"] == s for r in op) for s in PROMPT_SPLITS})
        n.update({f"dilemmas_{s}": sum(r["split"] == s for r in dl) for s in PROMPT_SPLITS})
        for s in PROMPT_SPLITS:
            sub = [r for r in dl if r["split"] == s]
            if sub:
                n[f"dilemma_value_first_{s}"] = round(float(np.mean([bool(r["value_first"])
                                                                      for r in sub])), 3)
                n[f"dilemma_length_gap_{s}"] = round(float(np.mean(
                    [len(words(r["value_option"])) - len(words(r["other_option"]))
                     for r in sub])), 3)
        report[v] = n
        checks = [(n["value_dev"] >= b["min_value_dev"],
                   f"{n['value_dev']} dev value prompts < {b['min_value_dev']}"),
                  (n["value_test"] >= b["min_value_test"],
                   f"{n['value_test']} test value prompts < {b['min_value_test']}"),
                  (len(op) >= b["min_opposing"], f"{len(op)} opposing prompts < {b['min_opposing']}")]
        for s in PROMPT_SPLITS:
            k = b["min_dilemmas_per_split"]
            checks.append((n[f"dilemmas_{s}"] >= k, f"{n[f'dilemmas_{s}']} {s} dilemmas < {k}"))
            if n[f"dilemmas_{s}"]:
                gap, vf = n[f"dilemma_length_gap_{s}"], n[f"dilemma_value_first_{s}"]
                checks += [(abs(gap) <= b["max_dilemma_length_gap_words"],
                            f"{s} dilemmas: value options longer by {gap} words on average"),
                           (abs(vf - 0.5) <= b["max_value_first_gap"],
                            f"{s} dilemmas: value option first in {vf:.0%}")]
        problems += [f"{v}: {msg}" for ok, msg in checks if not ok]
        for what, rs in (("value prompts", vp), ("opposing prompts", op), ("dilemmas", dl)):
            problems += [f"{v}: {p}" for p in _split_overlap(rs, what)]
    cap = [r for r in kinds["irrelevant"] if r["split"] == "test"]
    cats = {r["category"] for r in kinds["irrelevant"]}
    missing = cats - {r["category"] for r in cap}
    if len(cap) < b["min_capability_test"]:
        problems.append(f"{len(cap)} capability test prompts < {b['min_capability_test']}")
    if missing:
        problems.append(f"capability test prompts lack categories {sorted(missing)}")
    return {"ok": not problems, "values": report, "capability_test": len(cap),
            "bounds": b, "problems": problems}


def all_sentences() -> list[str]:
    """Every distinct sentence of the shipped pair files, in a fixed order."""
    seen: dict[str, None] = {}
    for r in load_pairs():
        seen.update({r["positive"]: None, r["negative"]: None})
    for r in load_naive_pairs():
        seen.update({r["positive"]: None, r["negative"]: None})
    for r in load_negation_control():
        seen.update({r["affirmative"]: None, r["negated"]: None})
    return list(seen)


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens."""
    return _TOKEN.findall(text.lower())


def has_negation(text: str) -> bool:
    return any(t in NEGATION_WORDS or t.endswith("n't") for t in words(text))


def _jaccard(a: str, b: str) -> float:
    sa, sb = set(words(a)), set(words(b))
    return len(sa & sb) / max(1, len(sa | sb))


def _bow_accuracy(pairs: list[dict], value: str) -> float:
    """Cross-validated accuracy of a bag-of-words classifier, value-lexicon words removed."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    lex = VALUE_LEXICON[value]
    texts = [r["positive"] for r in pairs] + [r["negative"] for r in pairs]
    y = np.r_[np.ones(len(pairs)), np.zeros(len(pairs))]
    groups = np.r_[np.arange(len(pairs)), np.arange(len(pairs))]
    pipe = make_pipeline(
        CountVectorizer(tokenizer=lambda t: [w for w in words(t) if w not in lex and w.isalpha()],
                        token_pattern=None, lowercase=False, binary=True),
        LogisticRegression(max_iter=2000))
    return float(cross_val_score(pipe, texts, y, groups=groups, cv=GroupKFold(5)).mean())


def check_data(path=None, tokenizer=None, bow: bool = True) -> dict:
    """Quality report of the controlled, naive and negation-control data.

    Lengths are counted in ``tokenizer``'s tokens (the probed model's), else in
    word/punctuation tokens; ``length_gap_tokens`` is ``|mean(len pos) − mean(len neg)|``,
    the systematic difference a probe could exploit (the mean absolute twin
    difference is reported beside it). Returns ``{ok, values, problems, ...}``.
    """
    base = Path(path) if path else data_dir()
    count = (lambda t: len(tokenizer(t, add_special_tokens=False).input_ids)) if tokenizer \
        else (lambda t: len(words(t)))
    problems: list[str] = []
    report: dict[str, dict] = {}
    sentences: Counter = Counter()
    for v in VALUE_NAMES:
        try:
            pairs = load_pairs(v, path=base / "controlled")
        except DataError as err:
            problems.append(str(err))
            continue
        try:
            naive = load_naive_pairs(v, path=base / "naive")
        except DataError as err:
            problems.append(str(err))
            naive = []
        pos_neg = np.mean([has_negation(r["positive"]) for r in pairs])
        neg_neg = np.mean([has_negation(r["negative"]) for r in pairs])
        gaps = np.array([count(r["positive"]) - count(r["negative"]) for r in pairs])
        n_train = sum(r["split"] == "train" for r in pairs)
        n_select = sum(r["split"] == "select" for r in pairs)
        stats = {
            "pairs": len(pairs), "train_pairs": n_train, "select_pairs": n_select,
            "heldout_pairs": len(pairs) - n_train - n_select,
            "naive_pairs": len(naive),
            "scenarios": len({r["scenario"].strip().lower() for r in pairs}),
            "personas": len({r["persona"].strip().lower() for r in pairs}),
            "structures": len({r["structure"].strip().lower() for r in pairs}),
            "negation_share_pos": round(float(pos_neg), 3),
            "negation_share_neg": round(float(neg_neg), 3),
            "negation_gap": round(float(abs(pos_neg - neg_neg)), 3),
            # the shortcut a probe could learn is a systematic length difference
            "length_gap_tokens": round(float(abs(gaps.mean())), 3),
            "length_gap_abs_mean": round(float(np.abs(gaps).mean()), 3),
            "twin_jaccard": round(float(np.mean([_jaccard(r["positive"], r["negative"])
                                                 for r in pairs])), 3),
        }
        if bow:
            stats["bow_accuracy_no_lexicon"] = round(_bow_accuracy(pairs, v), 3)
        report[v] = stats
        for r in pairs + naive:
            sentences.update([r["positive"].strip().lower(), r["negative"].strip().lower()])
        b = BOUNDS
        checks = [
            (len(pairs) >= b["min_pairs"], f"{len(pairs)} pairs < {b['min_pairs']}"),
            (n_train >= b["min_train_pairs"], f"{n_train} train pairs < {b['min_train_pairs']}"),
            (n_select >= b["min_select_pairs"],
             f"{n_select} selection pairs < {b['min_select_pairs']}"),
            (len(naive) >= b["min_naive_pairs"], f"{len(naive)} naive pairs < {b['min_naive_pairs']}"),
            (stats["scenarios"] >= b["min_scenarios"],
             f"{stats['scenarios']} distinct scenarios < {b['min_scenarios']}"),
            (stats["negation_gap"] <= b["max_negation_gap"],
             f"negation gap {stats['negation_gap']:.2f} > {b['max_negation_gap']}"),
            (stats["length_gap_tokens"] <= b["max_length_gap_tokens"],
             f"length gap {stats['length_gap_tokens']:.2f} tokens > {b['max_length_gap_tokens']}"),
        ]
        problems += [f"{v}: {msg}" for ok, msg in checks if not ok]
    try:
        neg = load_negation_control(base / "negation_control.jsonl")
        sentences.update(s.strip().lower() for r in neg for s in (r["affirmative"], r["negated"]))
        if len(neg) < BOUNDS["min_negation_pairs"]:
            problems.append(f"negation control: {len(neg)} pairs < {BOUNDS['min_negation_pairs']}")
        unnegated = [r["id"] for r in neg if has_negation(r["affirmative"])
                     or not has_negation(r["negated"])]
        if unnegated:
            problems.append(f"negation control rows not affirmative/negated: {unnegated[:5]}")
    except DataError as err:
        problems.append(str(err))
        neg = []
    repeats = [s for s, c in sentences.items() if c > 1]
    if repeats:
        problems.append(f"{len(repeats)} sentences occur more than once, e.g. {repeats[:3]}")
    prompts = None   # a folder of pair data alone is checked without prompts
    if path is None or (base / "prompts").is_dir():
        prompts = check_prompts(base / "prompts")
        if not prompts["values"]:   # a missing or malformed file; shortfalls are reported
            problems += [f"prompts: {p}" for p in prompts["problems"]]
    return {"ok": not problems, "values": report, "negation_control_pairs": len(neg),
            "prompts": prompts, "bounds": BOUNDS, "problems": problems,
            "path": str(base.resolve())}


# --- Touché23-ValueEval -------------------------------------------------------------------

TOUCHE_TO_SCHWARTZ = {
    "self-direction": ("Self-direction: thought", "Self-direction: action"),
    "stimulation": ("Stimulation",),
    "hedonism": ("Hedonism",),
    "achievement": ("Achievement",),
    "power": ("Power: dominance", "Power: resources"),
    "security": ("Security: personal", "Security: societal"),
    "conformity": ("Conformity: rules", "Conformity: interpersonal"),
    "tradition": ("Tradition",),
    "benevolence": ("Benevolence: caring", "Benevolence: dependability"),
    "universalism": ("Universalism: concern", "Universalism: nature", "Universalism: tolerance",
                     "Universalism: objectivity"),
}
TOUCHE_ZENODO_RECORD = "6814563"  # concept DOI 10.5281/zenodo.6814563 resolves to the latest
ZENODO_API = "https://zenodo.org/api/records"
TOUCHE_FILES = ("arguments-training.tsv", "labels-training.tsv")
# the training split this package is tested with (a newer upload fails the check loudly)
TOUCHE_SHA256 = {
    "arguments-training.tsv": "f080cc1a75bc6f6910874c2ee1f407056b118024e33b0495de1f8a5570ce9948",
    "labels-training.tsv": "87ee3c0fe6760f2a6f895ed9144ad0ed076a9a5ff543820b9683aad8fd46bf12",
}
TOUCHE_LICENCE = ("Touché23-ValueEval (Kiesel et al., ACL 2022 / SemEval 2023; Zenodo DOI "
                  "10.5281/zenodo.6814563), licence CC BY-SA 4.0: credit the dataset wherever "
                  "you use or show it, and share adaptations under the same licence.")


def _hashes(path: Path) -> tuple[str, str]:
    md5, sha = hashlib.md5(), hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def download_touche(dest=None, api: str | None = None, progress: bool = True) -> Path:
    """Fetch Touché23's training split from Zenodo into ``dest`` (default: the cache) and
    verify every file (Zenodo's own MD5 and this package's SHA-256) before it is kept.

    Asks nothing of any hub but Zenodo (``api``, or ``$CONVA_NB_ZENODO_API``: its records
    API; tests point it at a local copy).
    A file that fails a check is deleted and :class:`DataError` names it; an unreachable
    Zenodo is a :class:`~conva_nb.errors.ServiceError`. Returns the directory.
    """
    dest = Path(dest) if dest else cache_dir() / "touche23"
    api = api or os.environ.get("CONVA_NB_ZENODO_API") or ZENODO_API
    url = f"{api.rstrip('/')}/{TOUCHE_ZENODO_RECORD}"
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            record = json.load(r)
    except (OSError, ValueError) as err:
        raise ServiceError(f"cannot read the Zenodo record {url}: {err}") from err
    files = {f["key"]: f for f in record.get("files", [])}
    missing = [n for n in TOUCHE_FILES if n not in files]
    if missing:
        raise DataError(f"Zenodo record {TOUCHE_ZENODO_RECORD} has no {missing}; files: "
                        f"{sorted(files)}")
    dest.mkdir(parents=True, exist_ok=True)
    for name in TOUCHE_FILES:
        meta, part = files[name], dest / f".{name}.part"
        try:
            with urllib.request.urlopen(meta["links"]["self"], timeout=60) as r, \
                    part.open("wb") as fh, tqdm(total=meta.get("size"), unit="B",
                                                unit_scale=True, desc=name,
                                                disable=not progress) as bar:
                for block in iter(lambda: r.read(1 << 16), b""):
                    fh.write(block)
                    bar.update(len(block))
        except OSError as err:
            part.unlink(missing_ok=True)
            raise ServiceError(f"download of {name} from {meta['links']['self']} failed: "
                               f"{err}") from err
        md5, sha = _hashes(part)
        want_md5 = str(meta.get("checksum", "")).removeprefix("md5:")
        if md5 != want_md5 or sha != TOUCHE_SHA256[name]:
            part.unlink()
            raise DataError(f"{name} from Zenodo fails its checksum (md5 {md5}, expected "
                            f"{want_md5}; sha256 {sha}, expected {TOUCHE_SHA256[name]}); "
                            "nothing was kept")
        part.replace(dest / name)
    return dest.resolve()


def find_touche(path=None) -> Path | None:
    """Touché23's directory: ``path``, else ``$CONVA_NB_TOUCHE``, else the cache copy that
    ``conva-nb get-touche`` writes when all its files are there; ``None`` if none."""
    path = path or os.environ.get("CONVA_NB_TOUCHE")
    if path:
        return Path(path)
    cached = cache_dir() / "touche23"
    return cached if all((cached / f).exists() for f in TOUCHE_FILES) else None


def load_touche(path=None, download: bool = False) -> dict:
    """Touché23-ValueEval training arguments folded onto the 10 Schwartz values.

    path: a directory with ``arguments-training.tsv`` and ``labels-training.tsv``; without
    it, ``$CONVA_NB_TOUCHE`` if set, then the cache (where ``conva-nb get-touche`` puts it).
    With ``download=True`` and no path, the files are fetched once from Zenodo into the
    cache (:func:`download_touche`). Returns ``{"ids", "texts", "conclusions", "premises",
    "labels"}``: texts are "premise (stance: conclusion)" strings, labels a ``[n, 10]`` 0/1
    array in circle order. Dataset: Kiesel et al. 2022/2023, CC BY-SA 4.0.
    """
    path = find_touche(path)
    if path is None:
        if not download:
            raise DataError("Touché23 not found: run `conva-nb get-touche` (downloads it "
                            "from Zenodo), pass path=<dir with arguments-training.tsv and "
                            "labels-training.tsv>, or download=True")
        path = download_touche(cache_dir() / "touche23")
    for f in TOUCHE_FILES:
        if not (path / f).is_file():
            raise DataError(f"{path / f}: missing (Touché23 needs {', '.join(TOUCHE_FILES)})")
    with (path / "arguments-training.tsv").open(encoding="utf-8") as fh:
        args = {r["Argument ID"]: r for r in csv.DictReader(fh, delimiter="\t")}
    with (path / "labels-training.tsv").open(encoding="utf-8") as fh:
        labels = list(csv.DictReader(fh, delimiter="\t"))
    ids, texts, y, concl, prem = [], [], [], [], []
    for row in labels:
        a = args.get(row["Argument ID"])
        if a is None:
            continue
        ids.append(row["Argument ID"])
        texts.append(f"{a['Premise'].strip()} ({a['Stance'].strip()}: {a['Conclusion'].strip()})")
        concl.append(a["Conclusion"].strip())
        prem.append(a["Premise"].strip())
        y.append([int(any(row[c] == "1" for c in TOUCHE_TO_SCHWARTZ[v])) for v in VALUE_NAMES])
    return {"ids": ids, "texts": texts, "conclusions": concl, "premises": prem,
            "labels": np.array(y, dtype=np.int64)}


# --- MMLU --------------------------------------------------------------------------------

def load_mmlu(path=None, subjects: list[str] | None = None, split: str = "test",
              limit: int | None = None) -> list[dict]:
    """MMLU questions as ``{subject, prompt, choices, answer}``.

    path: a directory of the original CSV release (``<split>/<subject>_<split>.csv``);
    without it the ``cais/mmlu`` dataset is read through ``datasets`` (needs the hub).
    """
    rows = []
    if path is not None:
        d = Path(path) / split
        if not d.is_dir():
            raise DataError(f"{d}: not a directory (expected MMLU's {split}/*.csv files)")
        for f in sorted(d.glob(f"*_{split}.csv")):
            subject = f.name[: -len(f"_{split}.csv")]
            if subjects and subject not in subjects:
                continue
            with f.open(encoding="utf-8") as fh:
                for q, a, b, c, dd, ans in csv.reader(fh):
                    rows.append({"subject": subject, "prompt": q, "choices": [a, b, c, dd],
                                 "answer": [a, b, c, dd]["ABCD".index(ans.strip())]})
    else:
        from datasets import load_dataset
        ds = load_dataset("cais/mmlu", "all", split=split)
        for r in ds:
            if subjects and r["subject"] not in subjects:
                continue
            rows.append({"subject": r["subject"], "prompt": r["question"],
                         "choices": list(r["choices"]), "answer": r["choices"][r["answer"]]})
    return rows[:limit] if limit else rows
