"""Carve the ``select`` split out of the controlled training pairs, grouped by scenario.

    python tools/assign_select.py conva_nb/data/controlled/*.jsonl

Every probe choice (regularisation C, layers, bands) is made on ``select`` twins, so the
``heldout`` twins report an accuracy nothing was tuned on. ``N_SELECT`` training pairs
per value move to ``select``, whole scenarios at a time, in an order seeded by the value
name; held-out rows never move. Idempotent: a file that already has ``select`` rows is
left as it is.
"""
import json
import random
import sys
from collections import defaultdict

N_SELECT = 30
KEYS = ("id", "value", "persona", "scenario", "structure", "positive", "negative", "split")

for path in sys.argv[1:]:
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    if not any(r["split"] == "select" for r in rows):
        by_scenario = defaultdict(list)
        for i, r in enumerate(rows):
            if r["split"] == "train":
                by_scenario[r["scenario"].strip().lower()].append(i)
        scenarios = sorted(by_scenario)
        random.Random(rows[0]["value"] + "/select").shuffle(scenarios)
        chosen: list[int] = []
        for s in scenarios:
            if len(chosen) + len(by_scenario[s]) <= N_SELECT:
                chosen += by_scenario[s]
        for i in chosen:
            rows[i]["split"] = "select"
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps({k: r[k] for k in KEYS}, ensure_ascii=False) + "\n")
        import os
        os.replace(tmp, path)
    n = {s: sum(r["split"] == s for r in rows) for s in ("train", "select", "heldout")}
    print(f"{path}: {n}")
