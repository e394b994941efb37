"""Tiny random-init causal LMs of several architectures, built from configs (no downloads)."""
from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    GemmaConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

WORDS = ("the a an i you she he we they it is was be to of and in on at for with my your her his "
         "help helped friend family money power safe rules old new fun win won lost city home work "
         "school train arrived did not never no time today always people world nature job boss "
         "party tradition obey risk explore choose question answer what why how who . , ? !").split()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B",
                                                       special_tokens=[("<bos>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>",
                                   model_input_names=["input_ids", "attention_mask"])
    fast.padding_side = "left"
    return fast


def _configs(vocab: int) -> dict:
    common = dict(vocab_size=vocab, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    return {
        "llama": LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                             num_attention_heads=4, num_key_value_heads=2, **common),
        "qwen2": Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                             num_attention_heads=4, num_key_value_heads=2, **common),
        "gemma": GemmaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                             num_attention_heads=4, num_key_value_heads=1, head_dim=8, **common),
        "gemma3": Gemma3TextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                   num_attention_heads=4, num_key_value_heads=1, head_dim=8,
                                   sliding_window=4, **common),
        "gpt2": GPT2Config(n_embd=32, n_layer=4, n_head=4, n_positions=128, **common),
        "gpt_neox": GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                  num_attention_heads=4, **common),
    }


ARCHS = tuple(_configs(10))


def tiny_model(arch: str, seed: int = 0):
    """``(model, tokenizer)`` of a 4-layer random-init model of ``arch``."""
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = _configs(len(tok))[arch]
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    model.eval()
    model.conva_identity = f"tiny-{arch}-{seed}"
    return model, tok


def save_reader_model(path, seed: int = 0):
    """An 8-layer random-init Llama and its tokenizer saved to ``path``, as a reader's own
    model folder would be (nothing the package ships knows it); returns ``path``."""
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=8,
                      num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tok),
                      pad_token_id=0, eos_token_id=1, bos_token_id=2)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path
