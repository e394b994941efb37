"""Assign train/heldout splits to controlled pairs, grouped by scenario.

    python tools/assign_splits.py conva_nb/data/controlled/power.jsonl [...]

Whole scenarios go to one split (seeded by the value name), so held-out twins test
situations the probe never saw. Keeps exactly 100 training pairs when possible.
Idempotent: re-running gives the same splits.
"""
import json
import random
import sys
from collections import defaultdict

N_TRAIN = 100

for path in sys.argv[1:]:
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    by_scenario = defaultdict(list)
    for i, r in enumerate(rows):
        by_scenario[r["scenario"].strip().lower()].append(i)
    scenarios = sorted(by_scenario)
    random.Random(rows[0]["value"]).shuffle(scenarios)
    train = set()
    for s in scenarios:
        if len(train) + len(by_scenario[s]) <= N_TRAIN:
            train.update(by_scenario[s])
    keys = ("id", "value", "persona", "scenario", "structure", "positive", "negative")
    with open(path, "w", encoding="utf-8") as fh:
        for i, r in enumerate(rows):
            out = {k: r[k] for k in keys}
            out["split"] = "train" if i in train else "heldout"
            fh.write(json.dumps(out, ensure_ascii=False) + "\n")
    print(f"{path}: {len(train)} train, {len(rows) - len(train)} heldout")
