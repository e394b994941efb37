"""Assign train/heldout splits to controlled pairs, grouped by scenario.

    python tools/assign_splits.py conva_nb/data/controlled/power.jsonl [...]

First run on a file without splits: whole scenarios go to one split (seeded by the value
name) so that held-out twins test situations the probe never saw; 100 pairs train, the
rest held out. Later runs keep every existing split (the held-out set stays fixed as data
grow); rows added without a split go to ``train`` unless their scenario is held out.
Idempotent: re-running gives the same splits.
"""
import json
import random
import sys
from collections import defaultdict

N_TRAIN = 100
KEYS = ("id", "value", "persona", "scenario", "structure", "positive", "negative")

for path in sys.argv[1:]:
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    scen = lambda r: r["scenario"].strip().lower()
    if all("split" not in r for r in rows):
        by_scenario = defaultdict(list)
        for i, r in enumerate(rows):
            by_scenario[scen(r)].append(i)
        scenarios = sorted(by_scenario)
        random.Random(rows[0]["value"]).shuffle(scenarios)
        train = set()
        for s in scenarios:
            if len(train) + len(by_scenario[s]) <= N_TRAIN:
                train.update(by_scenario[s])
        for i, r in enumerate(rows):
            r["split"] = "train" if i in train else "heldout"
    held = {scen(r) for r in rows if r.get("split") == "heldout"}
    for r in rows:
        r.setdefault("split", "heldout" if scen(r) in held else "train")
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({**{k: r[k] for k in KEYS}, "split": r["split"]},
                                ensure_ascii=False) + "\n")
    n = sum(r["split"] == "train" for r in rows)
    print(f"{path}: {n} train, {len(rows) - n} heldout")
