"""Context-controlled pair generation through any OpenAI-compatible endpoint.

The paper's two-stage recipe: stage 1 writes a sentence in which a persona, in
a scenario and a sentence structure, expresses the value; stage 2 rewrites it
with the smallest edit that removes the value and nothing else. Every reply
must be a JSON object of a fixed schema; bad replies, 429s and 5xx errors are
retried with exponential backoff. The output is an append-only JSONL file that
a re-run resumes: finished pairs are kept, duplicates are skipped.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .datasets import has_negation, words
from .errors import ServiceError, UsageError
from .values import canonical, get_value

__all__ = ["PERSONAS", "SCENARIOS", "STRUCTURES", "grid", "GenerationError", "Usage",
           "generate_pairs", "parse_reply", "STAGE1_SYSTEM", "STAGE2_SYSTEM"]

PERSONAS = (
    "retired bus driver in Nairobi", "teenage gamer in Seoul", "nurse on night shift in Sao Paulo",
    "software engineer in Bangalore", "farmer in rural Ireland", "university student in Berlin",
    "single father in Toronto", "shop owner in Cairo", "primary school teacher in Lyon",
    "grandmother in Manila", "delivery rider in Jakarta", "lawyer in Chicago",
    "chef in Mexico City", "junior accountant in Warsaw", "fisherman in Norway",
    "artist in Melbourne", "taxi driver in Istanbul", "nun in Krakow", "startup founder in Lagos",
    "pharmacist in Osaka",
)
SCENARIOS = (
    "finding a wallet on the metro", "choosing a university major", "a neighbour's birthday",
    "planning a weekend", "a disagreement at work", "a family dinner", "spending a bonus",
    "a school group project", "a community meeting", "posting online about the news",
    "travelling abroad for the first time", "a hospital visit", "a sports match",
    "moving to a new city", "a religious holiday", "a job interview", "a long queue at the bank",
    "the first day at a new job", "a power cut in the building", "a friend asking for a loan",
)
STRUCTURES = ("first-person statement", "third-person narrative", "quoted speech", "opinion",
              "advice", "diary entry", "plan or intention", "past-tense report")

STAGE1_SYSTEM = (
    "You write single sentences for a research dataset on human values. Reply with a JSON "
    'object {"positive": "<sentence>"} and nothing else.')
STAGE1_USER = (
    "Value: {value} ({definition})\nPersona: {persona}\nScenario: {scenario}\n"
    "Structure: {structure}\nWrite one natural sentence of 10 to 30 words in which this persona, "
    "in this scenario, clearly expresses the value through what they do or choose. Do not name "
    "the value. Stay inside the scenario: do not drift to other topics.")
STAGE2_SYSTEM = (
    "You make minimal edits to sentences for a research dataset on human values. Reply with a "
    'JSON object {"negative": "<sentence>"} and nothing else.')
STAGE2_USER = (
    "Value: {value} ({definition})\nSentence: {positive}\nRewrite the sentence with the smallest "
    "possible change so that it no longer expresses the value (the person simply does not act on "
    "it), keeping persona, scenario, structure, length and all other wording. Prefer an "
    "affirmative rewrite over adding 'not' or 'never'.")


class GenerationError(ServiceError):
    """The endpoint kept failing after all retries."""


@dataclass
class Usage:
    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: dict = field(default_factory=dict)

    def cost(self, price_in: float, price_out: float) -> float:
        """Dollars, given prices per million input/output tokens."""
        return (self.prompt_tokens * price_in + self.completion_tokens * price_out) / 1e6


def grid(value: str, seed: int = 0):
    """Endless, reproducible sequence of ``(k, persona, scenario, structure)`` cells."""
    cells = [(p, s, t) for p in PERSONAS for s in SCENARIOS for t in STRUCTURES]
    random.Random(f"{canonical(value)}-{seed}").shuffle(cells)
    k = 0
    while True:
        for cell in cells:
            yield (k, *cell)
            k += 1


def parse_reply(text: str, key: str) -> str:
    """The sentence in a ``{key: sentence}`` JSON reply; ValueError if the schema is not met."""
    text = (text or "").strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    obj = json.loads(text)  # JSONDecodeError is a ValueError
    if not isinstance(obj, dict) or set(obj) != {key}:
        raise ValueError(f"expected exactly one key {key!r}, got {obj!r:.80}")
    s = obj[key]
    if not isinstance(s, str):
        raise ValueError(f"{key} is not a string")
    s = " ".join(s.split())
    n = len(words(s))
    if not 5 <= n <= 60:
        raise ValueError(f"{key} has {n} tokens; expected 5 to 60")
    return s


def _chat(client, model_name, system, user, key, usage: Usage, max_retries, backoff):
    import openai
    for attempt in range(max_retries + 1):
        usage.requests += 1
        try:
            resp = client.chat.completions.create(
                model=model_name, temperature=0.9,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}])
            if resp.usage:
                usage.prompt_tokens += resp.usage.prompt_tokens or 0
                usage.completion_tokens += resp.usage.completion_tokens or 0
            return parse_reply(resp.choices[0].message.content, key)
        except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError,
                openai.APITimeoutError, ValueError) as err:
            name = type(err).__name__
            usage.errors[name] = usage.errors.get(name, 0) + 1
            if attempt == max_retries:
                raise GenerationError(
                    f"{max_retries + 1} attempts failed; last: {name}: {err}") from err
            usage.retries += 1
            time.sleep(backoff * 2 ** attempt)


def _read_existing(out: Path) -> list[dict]:
    """Complete rows of an earlier run; a line cut short by a kill is dropped from the file."""
    if not out.exists():
        return []
    rows, good_bytes = [], 0
    with out.open("rb") as fh:
        for raw in fh:
            try:
                if not raw.endswith(b"\n"):
                    raise ValueError("unterminated line")
                rows.append(json.loads(raw))
                good_bytes += len(raw)
            except ValueError:
                break
    if good_bytes != out.stat().st_size:
        with out.open("r+b") as fh:
            fh.truncate(good_bytes)
    return rows


def generate_pairs(value: str, n: int, out, base_url: str | None = None,
                   model_name: str = "gpt-4o", api_key: str | None = None, seed: int = 0,
                   max_retries: int = 5, backoff: float = 1.0, client=None,
                   progress: bool = True, log=sys.stderr) -> dict:
    """Make ``out`` hold ``n`` unique generated pairs for ``value``; resumes a partial file.

    Returns ``{"written", "skipped", "out", "usage"}``: pairs written by this call,
    grid cells skipped as duplicates, the absolute output path, token counts.
    """
    import openai
    value = canonical(value)
    if n < 1:
        raise UsageError(f"n must be a positive number of pairs, got {n}")
    out = Path(out).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    if client is None:
        key = api_key or os.environ.get("OPENAI_API_KEY") or ("local" if base_url else None)
        if key is None:
            raise UsageError("no API key: set OPENAI_API_KEY, pass api_key, or give --base-url "
                             "of a local server")
        client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=60)
    rows = _read_existing(out)
    done = {r["id"] for r in rows}
    seen = {s.lower() for r in rows for s in (r["positive"], r["negative"])}
    usage = Usage()
    bar = tqdm(total=n, initial=min(len(rows), n), desc=f"pairs ({value})", disable=not progress,
               file=log)
    try:
        written, skipped = _fill(client, model_name, value, n, out, done, seen, usage, seed,
                                 max_retries, backoff, bar)
    except GenerationError as err:
        where = base_url or "the OpenAI API"
        raise GenerationError(f"{where}: {err}. {len(done)} of {n} pairs are in {out} (kept); "
                              "run the same command again to resume") from err
    finally:
        bar.close()
    print(f"[generate-pairs] {usage.requests} requests, {usage.retries} retries, "
          f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens, "
          f"errors {usage.errors}", file=log)
    return {"written": written, "skipped": skipped, "out": str(out),
            "usage": {"requests": usage.requests, "retries": usage.retries,
                      "prompt_tokens": usage.prompt_tokens,
                      "completion_tokens": usage.completion_tokens, "errors": usage.errors}}


def _fill(client, model_name, value, n, out, done, seen, usage, seed, max_retries, backoff,
          bar) -> tuple[int, int]:
    """Append pairs to ``out`` until ``done`` holds ``n`` ids; returns (written, skipped)."""
    definition = get_value(value).definition
    written = skipped = 0
    with out.open("a", encoding="utf-8") as fh:
        for k, persona, scenario, structure in grid(value, seed):
            if len(done) >= n:
                break
            pid = f"gen-{value}-{k:04d}"
            if pid in done:
                continue
            positive = _chat(client, model_name, STAGE1_SYSTEM,
                             STAGE1_USER.format(value=value, definition=definition,
                                                persona=persona, scenario=scenario,
                                                structure=structure),
                             "positive", usage, max_retries, backoff)
            negative = _chat(client, model_name, STAGE2_SYSTEM,
                             STAGE2_USER.format(value=value, definition=definition,
                                                positive=positive),
                             "negative", usage, max_retries, backoff)
            if positive.lower() in seen or negative.lower() in seen or \
                    positive.lower() == negative.lower():
                skipped += 1
                continue
            row = {"id": pid, "value": value, "persona": persona, "scenario": scenario,
                   "structure": structure, "positive": positive, "negative": negative,
                   "split": "train", "source": model_name,
                   "negation": [has_negation(positive), has_negation(negative)]}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            done.add(pid)
            seen.update({positive.lower(), negative.lower()})
            written += 1
            bar.update(1)
    return written, skipped
