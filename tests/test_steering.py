"""The Steerer and every edit operator, on tiny random-init models of several architectures.

The shared properties run for every operator (parametrised): closed-gate rows and BOS/pad
positions are bit-identical, the model is bit-identical afterwards, batched left-padded
generation equals one prompt at a time, the KV cache equals a full recompute, hooks are
removed when generation raises, and tensors follow each layer's device. Each operator's
own rule is tested beside them.
"""
import math

import numpy as np
import pytest
import torch

from conva_nb.errors import UsageError
from conva_nb.models import decoder_layers
from conva_nb.operators import (
    ConstantShift,
    PromptClosedForm,
    TokenClosedForm,
    caa_shift,
    caa_vector,
    closed_form,
    min_norm_shift,
    target_logit,
)
from conva_nb.probes import ProbeBank
from conva_nb.steering import Steerer, steer

from tiny import ARCHS, tiny_model

PROMPTS = ["the friend helped my family", "i won", "she was safe at home today ."]
OPERATORS = ("token", "prompt", "constant")


def random_bank(model, seed=0, value="benevolence", layers=(1, 2), offset=-2.0):
    """A bank of random probes whose bias puts most tokens below P0 (so steering acts)."""
    rng = np.random.default_rng(seed)
    n = len(decoder_layers(model))
    h = model.config.hidden_size
    W = rng.normal(size=(n, h)).astype(np.float32) * 0.3
    return ProbeBank(value=value, model_id="tiny", hidden_size=h, n_layers=n, pooling="last",
                     data="controlled", layers=list(range(n)), W=W,
                     b=np.full(n, offset, np.float32), train_acc=np.ones(n),
                     test_acc=np.array([1.0 if i in layers else 0.5 for i in range(n)]),
                     C=np.ones(n))


def make_edit(kind, model, p0=0.95, layers=(1, 2)):
    bank = random_bank(model)
    if kind == "constant":
        rng = np.random.default_rng(1)
        h = model.config.hidden_size
        return ConstantShift({l: rng.normal(size=h).astype(np.float32) for l in layers})
    return closed_form(bank, p0=p0, rule=kind, layers=list(layers))


def capture(model, layers):
    """Forward hooks (registered after steering's) that record each layer's output."""
    out, handles = {}, []
    for l in layers:
        handles.append(decoder_layers(model)[l].register_forward_hook(
            lambda m, a, o, l=l: out.setdefault(l, []).append(
                (o[0] if isinstance(o, tuple) else o).detach().clone())))
    return out, handles


def outputs_of(model, enc, layers, ctx=None):
    with torch.no_grad():
        with ctx or torch.no_grad():
            out, hs = capture(model, layers)
            logits = model(**enc).logits
            for h in hs:
                h.remove()
    return out, logits


def no_hooks(model) -> bool:
    return all(len(m._forward_hooks) == 0 and len(m._forward_pre_hooks) == 0
               for m in model.modules())


class Gate:
    def __init__(self, decisions):
        self.decisions = decisions
        self.calls = 0

    def decide(self, texts):
        self.calls += 1
        return self.decisions[: len(texts)]


def content_mask(tok, enc):
    return enc["attention_mask"].bool() & (enc["input_ids"] != tok.bos_token_id)


# --- properties every operator has -------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", OPERATORS)
def test_closed_rows_bos_pad_untouched_and_model_restored(arch, kind):
    model, tok = tiny_model(arch)
    edit = make_edit(kind, model)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    base, base_logits = outputs_of(model, enc, [1, 2])
    gate = Gate([True, False, True])
    s = Steerer(model, edit, gate=gate, tokenizer=tok)
    got, logits = outputs_of(model, enc, [1, 2], s)
    mask = content_mask(tok, enc)
    for l in (1, 2):
        assert torch.equal(got[l][0][1], base[l][0][1])              # closed row
    # the first steered layer's hook leaves BOS and padding as they are (later layers'
    # padding may attend to edited tokens; BOS sees only itself and stays)
    assert torch.equal(got[1][0][~mask], base[1][0][~mask])
    assert torch.equal(got[2][0][2, 0], base[2][0][2, 0])            # the longest row's BOS
    assert torch.equal(logits[1], base_logits[1])
    assert not torch.allclose(logits[0], base_logits[0])
    _, after = outputs_of(model, enc, [1])
    assert torch.equal(after, base_logits) and no_hooks(model)
    assert s.stats.gate_open == [True, False, True] and gate.calls == 1


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", OPERATORS)
def test_batched_left_padded_generation_equals_one_by_one(arch, kind):
    model, tok = tiny_model(arch)
    decisions = [True, False, True]
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    with Steerer(model, make_edit(kind, model), gate=Gate(decisions), tokenizer=tok):
        enc = tok(PROMPTS, return_tensors="pt", padding=True)
        batched = model.generate(**enc, **kw)[:, enc["input_ids"].shape[1]:]
    for i, p in enumerate(PROMPTS):
        with Steerer(model, make_edit(kind, model), gate=Gate([decisions[i]]), tokenizer=tok):
            e = tok([p], return_tensors="pt")
            single = model.generate(**e, **kw)[0, e["input_ids"].shape[1]:]
        assert torch.equal(batched[i][: len(single)], single), (i, batched[i], single)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
@pytest.mark.parametrize("kind", OPERATORS)
def test_kv_cache_equals_full_recompute(arch, kind):
    model, tok = tiny_model(arch)
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    enc = tok(PROMPTS[:2], return_tensors="pt", padding=True)
    outs = []
    for cache in (True, False):
        with Steerer(model, make_edit(kind, model), tokenizer=tok):
            outs.append(model.generate(**enc, use_cache=cache, **kw))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], model.generate(**enc, **kw))


@pytest.mark.parametrize("kind", OPERATORS)
def test_hooks_removed_when_generation_raises(kind):
    model, tok = tiny_model("llama")

    class Boom:
        def decide(self, texts):
            raise RuntimeError("gate failed")

    with pytest.raises(RuntimeError, match="gate failed"):
        with Steerer(model, make_edit(kind, model), gate=Boom(), tokenizer=tok):
            model.generate(**tok(["i won"], return_tensors="pt"), max_new_tokens=3)
    assert no_hooks(model) and not hasattr(model, "_conva_steerer")


@pytest.mark.parametrize("kind", OPERATORS)
def test_tensors_follow_each_layers_device(kind):
    """A layer whose weights are offloaded (accelerate keeps them on the meta device and
    moves them in for its forward) is steered where it runs: same outputs as in place."""
    from accelerate import cpu_offload
    model, tok = tiny_model("llama")
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    _, ref = outputs_of(model, enc, [1], Steerer(model, make_edit(kind, model), tokenizer=tok))
    block = decoder_layers(model)[2]
    cpu_offload(block, execution_device=torch.device("cpu"))
    assert next(block.parameters()).device.type == "meta"
    s = Steerer(model, make_edit(kind, model), tokenizer=tok)
    _, got = outputs_of(model, enc, [1], s)
    torch.testing.assert_close(got, ref)
    assert all(t.device.type == "cpu" for t in _tensors(s.edit))


def _tensors(edit):
    if isinstance(edit, ConstantShift):
        return list(edit.vec.values())
    return list(edit.W.values()) + list(edit.b.values()) + list(edit.t.values())


@pytest.mark.parametrize("kind", OPERATORS)
def test_gate_decides_once_per_generate_call(kind):
    model, tok = tiny_model("llama")
    gate = Gate([False, True])
    enc = tok(PROMPTS[:2], return_tensors="pt", padding=True)
    kw = dict(max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    with Steerer(model, make_edit(kind, model), gate=gate, tokenizer=tok) as s:
        model.generate(**enc, **kw)
        assert gate.calls == 1
        model.generate(**enc, use_cache=False, **kw)
        assert gate.calls == 2
    assert s.stats.gate_open == [False, True]
    assert s.stats.row_fraction()[0] == 0.0 and s.stats.row_fraction()[1] > 0
    assert s.stats.row_mean_rel_edit()[0] == 0.0 and s.stats.row_mean_rel_edit()[1] > 0


# --- each operator's own rule ------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("p0", [0.9, 0.99])
def test_token_rule_reaches_p0_at_every_token_and_leaves_the_rest(arch, p0):
    model, tok = tiny_model(arch)
    bank = random_bank(model)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    before, _ = outputs_of(model, enc, [1, 2])
    s = steer(model, bank, p0=p0, rule="token", tokenizer=tok, layers=[1, 2])
    after, _ = outputs_of(model, enc, [1, 2], s)
    mask = content_mask(tok, enc)
    t = math.log(p0 / (1 - p0))
    for l in (1, 2):
        w, b = bank.probe(l)
        score = after[l][0].float() @ torch.tensor(w) + b
        assert (torch.sigmoid(score)[mask] >= p0 - 1e-4).all()
    w1, b1 = bank.probe(1)
    raw1 = before[1][0]
    above = raw1 @ torch.tensor(w1) + b1 >= t          # already at P0: untouched
    assert torch.equal(after[1][0][above], raw1[above])
    assert s.stats.summary()[1]["steered_fraction"] > 0


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("p0", [0.9, 0.99])
def test_prompt_rule_reaches_p0_at_the_last_prompt_token_of_every_layer(arch, p0):
    model, tok = tiny_model(arch)
    bank = random_bank(model)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    s = steer(model, bank, p0=p0, rule="prompt", tokenizer=tok, layers=[1, 2])
    after, _ = outputs_of(model, enc, [1, 2], s)
    mask = content_mask(tok, enc)
    before, _ = outputs_of(model, enc, [1, 2])
    for l in (1, 2):
        w, b = bank.probe(l)
        last = after[l][0][:, -1].float()                            # left padding
        assert (torch.sigmoid(last @ torch.tensor(w) + b) >= p0 - 1e-4).all()
        delta = after[l][0].float() - before[l][0].float() if l == 1 else None
        if delta is not None:      # layer 1 sees unshifted input: one constant shift per row
            for r in range(len(PROMPTS)):
                d = delta[r][mask[r]]
                torch.testing.assert_close(d, d[:1].expand_as(d), atol=1e-4, rtol=1e-4)
                v = torch.tensor(w / np.linalg.norm(w))
                assert torch.allclose(d[0] / d[0].norm().clamp(min=1e-9), v, atol=1e-4) \
                    or d.abs().max() == 0
    assert set(s.edit.prompt_shift()) == {1, 2}


def test_prompt_rule_is_zero_where_the_prompt_already_reads_p0():
    model, tok = tiny_model("llama")
    bank = random_bank(model, offset=50.0)            # every state far above P0
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    base, base_logits = outputs_of(model, enc, [1, 2])
    s = steer(model, bank, p0=0.9, rule="prompt", tokenizer=tok, layers=[1, 2])
    got, logits = outputs_of(model, enc, [1, 2], s)
    assert torch.equal(logits, base_logits)
    assert all((v == 0).all() for v in s.edit.prompt_shift().values())
    assert all(x["steered_fraction"] == 0 for x in s.stats.summary().values())


def test_prompt_rule_keeps_its_shift_for_generated_tokens():
    """The shift fixed at the prefill is the one added at every decoding step."""
    model, tok = tiny_model("qwen2")
    enc = tok(PROMPTS[:2], return_tensors="pt", padding=True)
    seen = []
    edit = make_edit("prompt", model)
    orig = PromptClosedForm.shift

    def spy(self, layer, e, mask, step):
        d, a = orig(self, layer, e, mask, step)
        seen.append((layer, step.prefill, d.detach().clone()))
        return d, a

    PromptClosedForm.shift = spy
    try:
        with Steerer(model, edit, tokenizer=tok):
            model.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=0)
    finally:
        PromptClosedForm.shift = orig
    for layer in (1, 2):
        shifts = [d for l, _, d in seen if l == layer]
        assert [p for l, p, _ in seen if l == layer] == [True, False, False, False]
        assert all(torch.equal(d, shifts[0]) for d in shifts)


def test_constant_shift_adds_the_caa_vector_on_content_tokens():
    model, tok = tiny_model("llama")
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(20, 4, 32)).astype(np.float32)
    labels = np.r_[np.ones(10), np.zeros(10)]
    caa = caa_vector(acts, labels, "power", [1])
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    base, _ = outputs_of(model, enc, [1])
    got, _ = outputs_of(model, enc, [1], steer(model, caa_shift(caa, 0.5), tokenizer=tok))
    mask = content_mask(tok, enc)
    shift = torch.tensor(caa.U[0] * caa.scale[0] * 0.5)
    torch.testing.assert_close(got[1][0][mask], base[1][0][mask] + shift, rtol=1e-5, atol=1e-5)
    assert torch.equal(got[1][0][~mask], base[1][0][~mask])


# --- multi-value closed form --------------------------------------------------------------

def test_min_norm_shift_meets_constraints_and_reduces_to_the_closed_form():
    torch.manual_seed(0)
    W = torch.randn(3, 16)
    r = torch.randn(50, 3) * 3
    lam = min_norm_shift(W, r)
    delta = lam @ W
    assert ((delta @ W.T) >= r - 1e-4).all() and (lam >= 0).all()
    norms = delta.norm(dim=-1)
    for _ in range(200):      # no feasible point found by random search is shorter
        cand = delta + 0.05 * torch.randn_like(delta)
        feasible = ((cand @ W.T) >= r - 1e-4).all(-1)
        assert (cand.norm(dim=-1)[feasible] >= norms[feasible] - 1e-4).all()
    w, r1 = W[:1], r[:, :1]
    v = w[0] / w[0].norm()
    eps = (r1[:, 0] / w[0].norm()).clamp(min=0)
    torch.testing.assert_close(min_norm_shift(w, r1) @ w, eps[:, None] * v)


@pytest.mark.parametrize("rule", ["token", "prompt"])
def test_multi_value_steering_meets_every_probe(rule):
    model, tok = tiny_model("qwen2")
    a, b = random_bank(model, 0, "benevolence"), random_bank(model, 1, "universalism")
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    out, _ = outputs_of(model, enc, [2], steer(model, [a, b], p0=0.9, rule=rule,
                                                tokenizer=tok, layers=[2]))
    # the token rule meets both probes at every content token, the prompt rule at the last
    h2 = out[2][0] if rule == "token" else out[2][0][:, -1:]
    rows = content_mask(tok, enc) if rule == "token" else torch.ones(h2.shape[:2], dtype=bool)
    for bank in (a, b):
        w, bb = bank.probe(2)
        assert (torch.sigmoid(h2 @ torch.tensor(w) + bb)[rows] >= 0.9 - 1e-4).all()


# --- bad input ------------------------------------------------------------------------------

def test_bad_inputs_are_clear():
    model, tok = tiny_model("gpt2")
    bank = random_bank(model)
    for p0 in (0.5, 1.0, 1.5, -1):
        with pytest.raises(UsageError, match=r"P0 must lie in the open interval \(0.5, 1\)"):
            steer(model, bank, p0=p0)
    with pytest.raises(UsageError, match="target logit"):
        steer(model, bank, p0=None, logit=-1)
    other = ProbeBank(**{**bank.__dict__, "hidden_size": 64})
    with pytest.raises(UsageError, match="hidden size 64"):
        steer(model, other)
    with pytest.raises(UsageError, match="positions"):
        steer(model, bank, positions="middle")
    with pytest.raises(UsageError, match="tokenizer"):
        steer(model, bank, gate=Gate([True]))
    with pytest.raises(UsageError, match="unknown rule 'sometimes'; valid: prompt, token"):
        steer(model, bank, rule="sometimes")
    with pytest.raises(UsageError, match="layer 9 has no benevolence probe"):
        steer(model, bank, layers=[9])
    with pytest.raises(UsageError, match=r"layers \[7\] do not exist"):
        Steerer(model, ConstantShift({7: np.zeros(32, np.float32)}))
    with pytest.raises(UsageError, match="nothing to steer with"):
        steer(model, None)
    assert no_hooks(model)
    assert target_logit(logit=12.0) == 12.0
    assert isinstance(make_edit("token", model), TokenClosedForm)


def test_token_edits_reach_p0_and_skip_bos():
    from conva_nb.steering import token_edits
    model, tok = tiny_model("llama")
    bank = random_bank(model)
    r = token_edits(model, tok, bank, "the friend helped my family", layer=1, p0=0.9)
    assert r["tokens"][0] == "<bos>" and r["eps"][0] == 0.0
    for pb, e, pa in zip(r["p_before"][1:], r["eps"][1:], r["p_after"][1:]):
        assert pa >= 0.9 - 1e-4
        assert (e == 0.0) == (pb >= 0.9)
