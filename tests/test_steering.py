import math

import numpy as np
import pytest
import torch

from conva_nb.probes import ProbeBank
from conva_nb.steering import (caa_vector, min_norm_shift, steer, target_logit)
from conva_nb.models import decoder_layers
from tiny import tiny_model

ARCHS = ["llama", "qwen2", "gemma", "gpt2"]
PROMPTS = ["the friend helped my family", "i won", "she was safe at home today ."]


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


def capture(model, layers):
    """Forward hooks (registered after steering's) that record each layer's output."""
    out, handles = {}, []
    for l in layers:
        handles.append(decoder_layers(model)[l].register_forward_hook(
            lambda m, a, o, l=l: out.setdefault(l, []).append(
                (o[0] if isinstance(o, tuple) else o).detach().clone())))
    return out, handles


class Gate:
    def __init__(self, decisions):
        self.decisions = decisions
        self.calls = 0

    def decide(self, texts):
        self.calls += 1
        return self.decisions[: len(texts)]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("p0", [0.9, 0.99])
def test_probe_reaches_p0_and_noop_elsewhere(arch, p0):
    model, tok = tiny_model(arch)
    bank = random_bank(model)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        before_out, hs = capture(model, [1, 2])
        model(**enc)
        for h in hs:
            h.remove()
        with steer(model, bank, p0=p0, tokenizer=tok, layers=[1, 2], exclude_last=0) as s:
            after_out, hs = capture(model, [1, 2])
            model(**enc)
            for h in hs:
                h.remove()
    mask = enc["attention_mask"].bool() & (enc["input_ids"] != tok.bos_token_id)
    t = math.log(p0 / (1 - p0))
    for l in (1, 2):
        w, b = bank.probe(l)
        after = after_out[l][0].float()
        score = after @ torch.tensor(w) + b
        assert (torch.sigmoid(score)[mask] >= p0 - 1e-4).all()
        # exact no-op at BOS and padding
        assert torch.equal(after[~mask], after_out[l][0][~mask])
    # layer 1 unsteered input: tokens already above P0 are bit-identical at layer 1
    w1, b1 = bank.probe(1)
    raw1 = before_out[1][0]
    above = (raw1 @ torch.tensor(w1) + b1 >= t)
    assert torch.equal(after_out[1][0][above], raw1[above])
    assert torch.equal(after_out[1][0][~mask], raw1[~mask])
    assert s.stats.summary()[1]["steered_fraction"] > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_closed_gate_rows_untouched_and_model_restored(arch):
    model, tok = tiny_model(arch)
    bank = random_bank(model)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        base = model(**enc).logits
        gate = Gate([True, False, True])
        with steer(model, bank, p0=0.99, gate=gate, tokenizer=tok, layers=[1, 2]) as s:
            steered = model(**enc).logits
        after = model(**enc).logits
    assert torch.equal(steered[1], base[1])
    assert not torch.allclose(steered[0], base[0])
    assert torch.equal(after, base)
    assert s.stats.gate_open == [True, False, True] and gate.calls == 1
    assert all(len(m._forward_hooks) == 0 and len(m._forward_pre_hooks) == 0
               for m in model.modules())


def test_hooks_removed_when_generation_raises():
    model, tok = tiny_model("llama")
    bank = random_bank(model)

    class Boom:
        def decide(self, texts):
            raise RuntimeError("gate failed")

    with pytest.raises(RuntimeError, match="gate failed"):
        with steer(model, bank, gate=Boom(), tokenizer=tok, layers=[1]):
            model.generate(**tok(["i won"], return_tensors="pt"), max_new_tokens=3)
    assert all(len(m._forward_hooks) == 0 and len(m._forward_pre_hooks) == 0
               for m in model.modules())


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_left_padded_generation_equals_one_by_one(arch):
    model, tok = tiny_model(arch)
    bank = random_bank(model)
    gate = Gate([True, False, True])
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    with steer(model, bank, p0=0.95, gate=gate, tokenizer=tok, layers=[1, 2]):
        enc = tok(PROMPTS, return_tensors="pt", padding=True)
        batched = model.generate(**enc, **kw)[:, enc["input_ids"].shape[1]:]
    singles = []
    for i, p in enumerate(PROMPTS):
        with steer(model, bank, p0=0.95, gate=Gate([gate.decisions[i]]), tokenizer=tok,
                   layers=[1, 2]):
            e = tok([p], return_tensors="pt")
            singles.append(model.generate(**e, **kw)[0, e["input_ids"].shape[1]:])
    for i in range(3):
        assert torch.equal(batched[i][: len(singles[i])], singles[i])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("positions", ["all", "generated"])
def test_kv_cache_equals_full_recompute(arch, positions):
    model, tok = tiny_model(arch)
    bank = random_bank(model)
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    enc = tok(PROMPTS[:2], return_tensors="pt", padding=True)
    outs = []
    for cache in (True, False):
        with steer(model, bank, p0=0.95, tokenizer=tok, layers=[1, 2], positions=positions):
            outs.append(model.generate(**enc, use_cache=cache, **kw))
    assert torch.equal(outs[0], outs[1])
    plain = model.generate(**enc, **kw)
    assert not torch.equal(outs[0], plain)


def test_multi_value_constraints_and_single_value_reduction():
    torch.manual_seed(0)
    W = torch.randn(3, 16)
    r = torch.randn(50, 3) * 3
    lam = min_norm_shift(W, r)
    delta = lam @ W
    assert ((delta @ W.T) >= r - 1e-4).all()
    assert (lam >= 0).all()
    # optimality: no feasible point found by random search has a smaller norm
    norms = delta.norm(dim=-1)
    for _ in range(200):
        cand = delta + 0.05 * torch.randn_like(delta)
        feasible = ((cand @ W.T) >= r - 1e-4).all(-1)
        assert (cand.norm(dim=-1)[feasible] >= norms[feasible] - 1e-4).all()
    # one value: the closed form eps * v
    w = W[:1]
    r1 = r[:, :1]
    d1 = min_norm_shift(w, r1) @ w
    v = w[0] / w[0].norm()
    eps = (r1[:, 0] / w[0].norm()).clamp(min=0)
    torch.testing.assert_close(d1, eps[:, None] * v)


def test_multi_value_steering_meets_every_probe():
    model, tok = tiny_model("qwen2")
    a, b = random_bank(model, 0, "benevolence"), random_bank(model, 1, "universalism")
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad(), steer(model, [a, b], p0=0.9, tokenizer=tok, layers=[2]):
        out, hs = capture(model, [2])
        model(**enc)
        for h in hs:
            h.remove()
    mask = enc["attention_mask"].bool() & (enc["input_ids"] != tok.bos_token_id)
    h2 = out[2][0]
    for bank in (a, b):
        w, bb = bank.probe(2)
        assert (torch.sigmoid(h2 @ torch.tensor(w) + bb)[mask] >= 0.9 - 1e-4).all()


def test_caa_adds_fixed_vector_on_content_tokens():
    model, tok = tiny_model("llama")
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(20, 4, 32)).astype(np.float32)
    labels = np.r_[np.ones(10), np.zeros(10)]
    caa = caa_vector(acts, labels, "power", [1])
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        base, hs = capture(model, [1])
        model(**enc)
        [h.remove() for h in hs]
        with steer(model, None, caa=caa, multiplier=0.5, tokenizer=tok):
            got, hs = capture(model, [1])
            model(**enc)
            [h.remove() for h in hs]
    mask = enc["attention_mask"].bool() & (enc["input_ids"] != tok.bos_token_id)
    shift = torch.tensor(caa.U[0] * caa.scale[0] * 0.5)
    torch.testing.assert_close(got[1][0][mask], base[1][0][mask] + shift, rtol=1e-5, atol=1e-5)
    assert torch.equal(got[1][0][~mask], base[1][0][~mask])


def test_bad_inputs_are_clear():
    model, tok = tiny_model("gpt2")
    bank = random_bank(model)
    for p0 in (0.5, 1.0, 1.5, -1):
        with pytest.raises(ValueError, match=r"P0 must lie in the open interval \(0.5, 1\)"):
            steer(model, bank, p0=p0)
    with pytest.raises(ValueError, match="target logit"):
        steer(model, bank, p0=None, logit=-1)
    other, _ = tiny_model("llama")
    other_bank = ProbeBank(**{**bank.__dict__, "hidden_size": 64})
    with pytest.raises(ValueError, match="hidden size 64"):
        steer(model, other_bank)
    with pytest.raises(ValueError, match="positions"):
        steer(model, bank, positions="middle")
    with pytest.raises(ValueError, match="tokenizer"):
        steer(model, bank, gate=Gate([True]))
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    assert target_logit(logit=12.0) == 12.0


@pytest.mark.parametrize("use_cache", [True, False])
def test_gate_decides_once_per_generate_call(use_cache):
    model, tok = tiny_model("llama")
    bank = random_bank(model)
    gate = Gate([False, True])
    enc = tok(PROMPTS[:2], return_tensors="pt", padding=True)
    kw = dict(max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id,
              use_cache=use_cache)
    with steer(model, bank, gate=gate, tokenizer=tok, layers=[1]) as s:
        model.generate(**enc, **kw)
        assert gate.calls == 1
        model.generate(**enc, **kw)
        assert gate.calls == 2
    assert s.stats.gate_open == [False, True]
    assert s.stats.row_fraction()[0] == 0.0 and s.stats.row_fraction()[1] > 0


def test_token_edits_reach_p0_and_skip_bos():
    from conva_nb.steering import token_edits
    model, tok = tiny_model("llama")
    bank = random_bank(model)
    r = token_edits(model, tok, bank, "the friend helped my family", layer=1, p0=0.9)
    assert r["tokens"][0] == "<bos>" and r["eps"][0] == 0.0
    for pb, e, pa in zip(r["p_before"][1:], r["eps"][1:], r["p_after"][1:]):
        assert pa >= 0.9 - 1e-4
        assert (e == 0.0) == (pb >= 0.9)
