"""A short end-to-end ConVA run on the embedded model: ``python -m conva_nb.demo``.

Trains (or loads from the cache) the achievement probes, prints their per-layer
accuracy and the negation control, then answers three questions with and
without steering. Runs in a few minutes on a 2-core CPU.
"""
from __future__ import annotations

import sys

from .models import load_model
from .probes import get_bank, middle_layers, negation_control_accuracy
from .prompting import generate
from .steering import steer

VALUE = "achievement"
QUESTIONS = ["How should I spend my first salary?", "What should I do this weekend?",
             "What is the capital of France?"]


def main() -> int:
    print("loading the embedded model (Gemma 3 270M) ...", flush=True)
    model, tok = load_model("embedded")
    bank = get_bank(model, tok, VALUE)
    print(f"\n{VALUE} probes, held-out accuracy per layer:")
    print("  " + " ".join(f"{l}:{a:.2f}" for l, a in zip(bank.layers, bank.test_acc)))
    layers = bank.select_layers()
    best = bank.best_layer(middle_layers(bank))
    neg = negation_control_accuracy(model, tok, bank, best)
    print(f"selected layers {layers}; negation control at layer {best}: "
          f"accuracy {neg['acc']:.2f} (0.5 = ignores negation)")
    plain = generate(model, tok, QUESTIONS, max_new_tokens=32)
    with steer(model, bank, p0=0.99, tokenizer=tok) as s:
        steered = generate(model, tok, QUESTIONS, max_new_tokens=32)
    for q, a, b in zip(QUESTIONS, plain, steered):
        print(f"\nQ: {q}\n  unsteered: {a}\n  ConVA    : {b}")
    for l, st in s.stats.summary().items():
        print(f"layer {l}: steered {st['steered_fraction']:.0%} of tokens, mean edit "
              f"{st['mean_rel_edit']:.1%} of the hidden-state norm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
