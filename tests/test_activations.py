import numpy as np
import pytest
import torch

from conva_nb.activations import extract
from conva_nb.models import decoder_layers

from tiny import tiny_model

TEXTS = ["the friend helped my family", "i won", "she was safe at home today .",
         "they never obey the rules at work and always explore the world", "a new job"]


def _rel(a, b):
    return (np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)).max()


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3", "gpt2", "gpt_neox"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_batch_size_and_padding_side_do_not_matter(arch, pooling):
    model, tok = tiny_model(arch)
    one = extract(model, tok, TEXTS, pooling=pooling, batch_size=1, cache=False, progress=False)
    many = extract(model, tok, TEXTS, pooling=pooling, batch_size=8, cache=False, progress=False)
    assert one.shape == (5, 4, 32) and one.dtype == np.float32
    assert _rel(many, one) < 1e-4
    tok.padding_side = "right"
    right = extract(model, tok, TEXTS, pooling=pooling, batch_size=8, cache=False, progress=False)
    assert _rel(right, one) < 1e-4


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_pooling_matches_manual_and_skips_bos(arch):
    model, tok = tiny_model(arch)
    text = "she was safe at home"
    ids = tok(text, return_tensors="pt").input_ids
    assert ids[0, 0] == tok.bos_token_id
    captured = {}
    layer = decoder_layers(model)[2]
    handle = layer.register_forward_hook(lambda m, a, o: captured.update(h=o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        model(ids)
    handle.remove()
    h = captured["h"][0]
    acts_mean = extract(model, tok, [text], pooling="mean", cache=False, progress=False)
    acts_last = extract(model, tok, [text], pooling="last", cache=False, progress=False)
    np.testing.assert_allclose(acts_mean[0, 2], h[1:].mean(0).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts_last[0, 2], h[-1].numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(acts_mean[0, 2], h.mean(0).numpy(), atol=1e-4)


def test_disk_cache_reuses_and_resumes(tmp_cache):
    model, tok = tiny_model("llama")
    calls = []
    handle = model.base_model.register_forward_hook(lambda m, a, o: calls.append(1))
    first = extract(model, tok, TEXTS[:3], progress=False, chunk=2)
    n_first = len(calls)
    assert n_first == 2  # two chunks of one batch each
    both = extract(model, tok, TEXTS, progress=False)   # only the two new texts run
    assert len(calls) == n_first + 1
    again = extract(model, tok, TEXTS, progress=False)
    assert len(calls) == n_first + 1
    handle.remove()
    np.testing.assert_array_equal(both[:3], first)
    np.testing.assert_array_equal(again, both)
    shards = list((tmp_cache / "activations").rglob("shard-*.safetensors"))
    assert len(shards) == 3
    assert not list((tmp_cache / "activations").rglob("*.pkl"))
    # a shard cut short by a crash is ignored and its rows recomputed
    shards[0].write_bytes(b"\0" * 10)
    redo = extract(model, tok, TEXTS, progress=False)
    np.testing.assert_allclose(redo, both, rtol=1e-6)


def test_bad_inputs():
    model, tok = tiny_model("gpt2")
    with pytest.raises(ValueError, match="pooling"):
        extract(model, tok, TEXTS, pooling="max", cache=False)
    with pytest.raises(ValueError, match="no texts"):
        extract(model, tok, [], cache=False)
    with pytest.raises(ValueError, match="no content tokens"):
        extract(model, tok, [""], cache=False, progress=False)


@pytest.mark.embedded
def test_embedded_batching_is_exact(embedded):
    model, tok = embedded
    texts = ["The cat sat on the mat.", "Hi",
             "She decided to start her own company after years of working for others."]
    one = extract(model, tok, texts, batch_size=1, cache=False, progress=False)
    many = extract(model, tok, texts, batch_size=3, cache=False, progress=False)
    assert one.shape == (3, 18, 640)
    assert _rel(many, one) < 1e-3
