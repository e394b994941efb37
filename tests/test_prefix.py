"""Shared-prefix KV caching gives what a full forward gives: scores and generations."""
import contextlib

import numpy as np
import pytest

from conva_nb.operators import caa_shift, caa_vector
from conva_nb.prefix import MIN_PREFIX, common_prefix_len
from conva_nb.prompting import frame, generate
from conva_nb.scoring import continuation_logprobs
from conva_nb.steering import steer

from test_steering import random_bank
from tiny import ARCHS, tiny_model

QS = ["what did the friend do ?", "how old is the city ?", "why did she help my family ?",
      "who won ?"]


def test_common_prefix_len_by_hand():
    a = list(range(20))
    assert common_prefix_len([a, a[:12] + [99, 98]]) == 12
    assert common_prefix_len([a, a]) == 19            # each row keeps a token of its own
    assert common_prefix_len([a, a[:MIN_PREFIX - 1] + [99]]) == 0   # too short to pay off
    assert common_prefix_len([]) == 0


def _contexts(arch):
    """Steering contexts to compare under: none, ConVA on every token, CAA."""
    model, tok = tiny_model(arch)
    bank = random_bank(model)
    x = np.random.default_rng(0).normal(size=(8, len(bank.layers), model.config.hidden_size))
    caa = caa_vector(x.astype(np.float32), np.array([1, 0] * 4), "benevolence", [1, 2])
    return model, tok, {
        "none": contextlib.nullcontext,
        "conva": lambda: steer(model, bank, p0=0.95, rule="token", tokenizer=tok, layers=[1, 2]),
        "caa": lambda: steer(model, caa_shift(caa, 0.5), tokenizer=tok),
        # needs each prompt whole: sharing is declined and the exact path runs instead
        "prompt-rule": lambda: steer(model, bank, p0=0.95, rule="prompt", tokenizer=tok,
                                     layers=[1, 2])}


def _full_and_shared(model, tok, ctxs, texts, conts, batch_size):
    """``{context name: (full-forward scores, shared-prefix scores)}``, each ``([n], [n])``."""
    out = {}
    for name, ctx in ctxs.items():
        with ctx():
            full = continuation_logprobs(model, tok, texts, conts, batch_size)
        with ctx():
            shared = continuation_logprobs(model, tok, texts, conts, batch_size,
                                           share_prefix=True)
        out[name] = full, shared
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_prefix_scoring_equals_full_forward(arch):
    model, tok, ctxs = _contexts(arch)
    texts = [frame(tok, q) for q in QS] * 2
    conts = ["my family", "old", "she helped the friend", "", "the city", "we won",
             "my friend", "they did"]
    assert common_prefix_len([tok(t).input_ids for t in texts]) > 0
    for name, ((full, n_full), (shared, n_shared)) in _full_and_shared(
            model, tok, ctxs, texts, conts, 3).items():
        assert np.array_equal(n_full, n_shared) and full[3] == shared[3] == 0
        np.testing.assert_allclose(shared, full, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_prefix_generation_equals_full_prompt(arch):
    model, tok, ctxs = _contexts(arch)
    outs = {}
    for name, ctx in ctxs.items():
        for share in (False, True):
            with ctx():
                outs[name, share] = generate(model, tok, QS, batch_size=4, max_new_tokens=6,
                                             share_prefix=share)
        assert outs[name, True] == outs[name, False], name
    assert outs["conva", True] != outs["none", True]     # the steering did act
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_generation_shares_no_prefix_past_a_sliding_window():
    """Pad slots between prefix and question would sit inside a short local-attention
    window, so generation falls back to the plain layout (and still agrees)."""
    from conva_nb.prefix import sliding_window
    from conva_nb.prompting import _shared_prefix_batch
    model, tok = tiny_model("gemma3")            # window of 4 tokens
    assert sliding_window(model) == 4
    texts = [frame(tok, q) for q in QS]
    assert _shared_prefix_batch(model, tok, texts, True, 6) is None
    llama, ltok = tiny_model("llama")
    assert sliding_window(llama) is None
    assert _shared_prefix_batch(llama, ltok, texts, True, 6) is not None


@pytest.mark.parametrize("arch", ARCHS)
def test_repeated_contexts_score_like_full_forwards(arch):
    """Multiple-choice rows: each question runs once and its choices reuse its cache."""
    from conva_nb.scoring import _groupable
    model, tok, ctxs = _contexts(arch)
    texts, conts = [], []
    for q, choices in zip(QS, [["my family", "old", "the city home", "no"],
                               ["old", "new"], ["she helped", "we won", "they"], ["i"]]):
        texts += [frame(tok, q)] * len(choices)
        conts += choices
    ids = [tok(t).input_ids for t in texts]
    grouped = _groupable(model, ids, [[0]] * len(ids), range(len(ids)), common_prefix_len(ids))
    assert grouped == (arch != "gemma3")        # the tiny Gemma 3's window is 4 tokens
    for name, ((full, _), (shared, _)) in _full_and_shared(model, tok, ctxs, texts, conts,
                                                           5).items():
        np.testing.assert_allclose(shared, full, rtol=1e-5, atol=1e-5, err_msg=name)
