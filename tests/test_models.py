import json
import shutil

import pytest
import torch

from conva_nb.models import LAYER_PATHS, decoder_layers, load_model, model_identity

from tiny import ARCHS, tiny_model


@pytest.mark.parametrize("arch", ARCHS)
def test_decoder_layers_found_for_each_family(arch):
    model, _ = tiny_model(arch)
    layers = decoder_layers(model)
    assert len(layers) == 4
    assert all(isinstance(layer, torch.nn.Module) for layer in layers)


def test_unmappable_model_names_paths_tried():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2)])

    with pytest.raises(ValueError) as err:
        decoder_layers(Odd())
    assert all(p in str(err.value) for p in LAYER_PATHS)
    assert "layers_path" in str(err.value)
    assert len(decoder_layers(Odd(), path="blocks")) == 1


def test_load_local_directory_roundtrip(tmp_path):
    model, tok = tiny_model("qwen2")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, ltok = load_model(str(tmp_path), device="cpu")
    ids = tok("the friend helped", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, loaded(ids).logits, rtol=1e-5, atol=1e-5)
    assert ltok.padding_side == "left"
    assert model_identity(loaded) == str(tmp_path.resolve())


def test_load_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ValueError, match="embedded"):
        load_model("")
    with pytest.raises(ValueError, match="cannot load model"):
        load_model("no-such-org/no-such-model-xyz")


def test_load_with_dtype(tmp_path):
    model, tok = tiny_model("llama")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, _ = load_model(str(tmp_path), device="cpu", dtype="bfloat16")
    assert next(loaded.parameters()).dtype == torch.bfloat16


@pytest.mark.embedded
def test_embedded_copy_matches_gguf(embedded, gguf_embedded):
    model, tok = embedded
    gmodel, gtok = gguf_embedded
    texts = ["The train arrived on time.", "She always helps her neighbours, naïvely or not!"]
    for t in texts:
        for ids in (tok(t, return_tensors="pt").input_ids, gtok(t, return_tensors="pt").input_ids):
            assert ids[0, 0] == tok.bos_token_id
            with torch.no_grad():
                assert torch.equal(model(ids).logits, gmodel(ids).logits)
        assert tok.decode(tok(t).input_ids, skip_special_tokens=True) == t
    assert len(decoder_layers(model)) == model.config.num_hidden_layers == 18
    assert model_identity(model).startswith("embedded:")


@pytest.mark.embedded
def test_embedded_tokenizer_segments_words(embedded, gguf_embedded):
    """Whole words stay whole, and the model finds text at least as likely with our
    tokenizer as with the one transformers builds from the GGUF file."""
    model, tok = embedded
    _, gtok = gguf_embedded
    text = ("The history of the city goes back to Roman times, when a small fort was built on "
            "the river. Today it is known for its old bridges and lively festivals.")
    assert tok.convert_ids_to_tokens(tok(" the river and").input_ids)[1:] == \
        ["▁the", "▁river", "▁and"]

    def nats(t):
        ids = t(text, return_tensors="pt").input_ids
        with torch.no_grad():
            return model(ids, labels=ids).loss.item() * (ids.shape[1] - 1)

    assert nats(tok) <= nats(gtok) + 1e-3
    assert len(tok(text).input_ids) < 40


@pytest.mark.embedded
def test_bpe_merges_rebuilt_from_unigram_scores(embedded):
    """transformers < 5 turns the GGUF vocabulary into a Unigram model scored by merge rank,
    which splits words into fragments; fix_spm_bpe_tokenizer must undo exactly that."""
    import gguf
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from conva_nb.models import embedded_gguf_path, fix_spm_bpe_tokenizer
    _, tok = embedded
    r = gguf.GGUFReader(str(embedded_gguf_path()))
    f, sc = r.fields["tokenizer.ggml.tokens"], r.fields["tokenizer.ggml.scores"]
    vocab = [(bytes(f.parts[i]).decode("utf-8"), float(sc.parts[j][0]))
             for i, j in zip(f.data, sc.data)]
    broken = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    broken.model = models.Unigram(vocab, unk_id=3, byte_fallback=True)
    broken = PreTrainedTokenizerFast(tokenizer_object=broken, bos_token="<bos>",
                                     eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    text = "On Sunday afternoons I pour myself a cold beer and stretch out on the sofa."
    assert "▁the" not in broken.tokenize(text)          # the 4.x failure: "▁t", "he"
    fixed = fix_spm_bpe_tokenizer(broken)
    assert fixed.tokenize(text) == tok.tokenize(text)
    assert "▁the" in fixed.tokenize(text)


@pytest.mark.embedded
@pytest.mark.slow
def test_half_written_cache_is_rebuilt(embedded, gguf_embedded, tmp_cache, monkeypatch):
    """A copy without its completion marker (a crash mid-save) is never loaded.

    The rebuild starts from the model the session already read from the GGUF file (a
    copy of it: the conversion edits its config), instead of a second ~90 s read."""
    import copy
    import os

    import conva_nb.models as models
    from conva_nb.cache import cache_dir
    from conva_nb.models import _EMBEDDED_DIR, embedded_gguf_path
    reads = []
    monkeypatch.setattr(models, "load_embedded_from_gguf",
                        lambda: reads.append(1) or copy.deepcopy(gguf_embedded))
    src_cache = embedded[0].name_or_path
    (tmp_cache / "gguf").mkdir(parents=True)
    real_gguf = os.path.join(os.path.dirname(src_cache), "gguf")
    for f in os.listdir(real_gguf):
        os.symlink(os.path.join(real_gguf, f), tmp_cache / "gguf" / f)
    broken = cache_dir() / _EMBEDDED_DIR
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    (broken / "model.safetensors").write_bytes(b"truncated")
    model, tok = load_model("embedded")
    assert (broken / "CONVA_COMPLETE.json").exists() and reads == [1]
    ids = tok("Hello there", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(model(ids).logits, embedded[0](ids).logits)
    assert embedded_gguf_path().is_symlink()
    shutil.rmtree(broken)
