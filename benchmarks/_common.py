"""Shared helpers for the benchmark scripts (each prints one JSON line of figures)."""
from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def report(name: str, figures: dict) -> None:
    print(json.dumps({"benchmark": name, **figures}), flush=True)


def short_sentences(n: int) -> list[str]:
    """``n`` distinct short sentences from the shipped data."""
    from conva_nb.datasets import all_sentences
    out = all_sentences()
    if len(out) < n:
        raise SystemExit(f"only {len(out)} shipped sentences, need {n}")
    return out[:n]
