"""Export value vectors to llama.cpp's GGUF control-vector format.

llama.cpp adds ``direction.N`` (a vector of the hidden size) to the output of
decoder layer N (0-based; layer 0 cannot be controlled there) and scales it by
``--control-vector-scaled FILE S``. What is lost on the way: the gate (every
prompt is steered) and the per-token adaptivity of ConVA (each token gets the
same fixed shift instead of the minimal one that reaches P0).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .probes import ProbeBank

__all__ = ["to_control_vector"]


def to_control_vector(bank: ProbeBank, path, magnitude, layers=None,
                      model_hint: str = "gemma3") -> Path:
    """Write ``magnitude · v`` per layer as a llama.cpp control vector.

    magnitude: one float, or ``{layer: float}`` (e.g. the ``mean_edit_norm`` of
    :meth:`SteerStats.summary` from a steering run). layers: default the bank's
    selected layers; layer 0 is skipped (llama.cpp cannot steer it).
    """
    import gguf
    layers = bank.select_layers() if layers is None else list(layers)
    mags = magnitude if isinstance(magnitude, dict) else {l: float(magnitude) for l in layers}
    path = Path(path)
    w = gguf.GGUFWriter(str(path), arch="controlvector")
    w.add_string("controlvector.model_hint", model_hint)
    w.add_uint32("controlvector.layer_count", len([l for l in layers if l > 0]))
    for l in layers:
        if l == 0:
            continue
        vec = (bank.v[bank.layers.index(l)] * float(mags[l])).astype(np.float32)
        w.add_tensor(f"direction.{l}", vec)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.resolve()
