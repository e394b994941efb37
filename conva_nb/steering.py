"""Gated steering through removable forward hooks, with any edit rule of :mod:`.operators`.

``with steer(model, bank, p0=0.99, gate=gate, tokenizer=tok): model.generate(...)``

:class:`Steerer` installs one pre-forward hook on the model (it reads the batch: which
tokens are content, which rows the gate opens, whether this forward is a prompt's prefill
or a decoding step) and one forward hook per steered decoder layer, which asks the edit
operator for a shift and applies it in float32 where allowed: never at BOS or padding,
never in rows whose gate is closed (those stay bit-identical). All hooks are removed on
exit, also when generation raises; the model is untouched afterwards.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from .errors import UsageError
from .models import decoder_layers
from .operators import EditOperator, Step, closed_form, target_logit
from .probes import ProbeBank

__all__ = ["steer", "Steerer", "SteerStats", "POSITIONS", "token_edits", "active_steerer"]

POSITIONS = ("all", "generated", "prompt")


@dataclass
class SteerStats:
    """Per-layer counts accumulated on the device; read them after the block."""
    steered: dict = field(default_factory=dict)     # layer -> tokens shifted
    seen: dict = field(default_factory=dict)        # layer -> content tokens seen (open rows)
    edit: dict = field(default_factory=dict)        # layer -> sum of shift norms
    rel_edit: dict = field(default_factory=dict)    # layer -> sum of shift norm / ‖e‖
    row_steered: torch.Tensor | None = None         # [batch] (token, layer) slots shifted
    row_seen: torch.Tensor | None = None            # [batch] content (token, layer) slots
    row_rel_edit: torch.Tensor | None = None        # [batch] sum of ‖δ‖/‖e‖ over shifted slots
    gate_open: list[bool] = field(default_factory=list)

    def summary(self) -> dict:
        """Per layer: steered fraction, mean edit norm, mean edit relative to ‖e‖."""
        out = {}
        for layer in sorted(self.seen):
            seen, st = float(self.seen[layer]), float(self.steered[layer])
            out[layer] = {"steered_fraction": st / seen if seen else 0.0,
                          "mean_edit_norm": float(self.edit[layer]) / st if st else 0.0,
                          "mean_rel_edit": float(self.rel_edit[layer]) / st if st else 0.0}
        return out

    def row_fraction(self) -> list[float]:
        """Share of (token, layer) slots shifted, per row of the last generate call."""
        if self.row_seen is None:
            return []
        return (self.row_steered / self.row_seen.clamp(min=1)).tolist()

    def row_mean_rel_edit(self) -> list[float]:
        """Mean ‖δ‖/‖e‖ over each row's shifted slots in the last generate call (0 if none)."""
        if self.row_seen is None:
            return []
        return (self.row_rel_edit / self.row_steered.clamp(min=1)).tolist()

    def _reset_rows(self, batch: int, device) -> None:
        self.row_steered = torch.zeros(batch, device=device)
        self.row_seen = torch.zeros(batch, device=device)
        self.row_rel_edit = torch.zeros(batch, device=device)


class Steerer(contextlib.AbstractContextManager):
    """Applies ``edit`` (an :class:`~conva_nb.operators.EditOperator`) while active.

    gate: ``decide(texts) -> bools``, one decision per batch row, made on the prompt at
    each call's first forward and held for the whole generation (needs ``tokenizer``).
    positions: edit ``"all"`` content tokens, only ``"generated"`` ones or only the
    ``"prompt"``. gate_text: maps the decoded prompt to what the gate reads.
    """

    def __init__(self, model, edit: EditOperator, gate=None, tokenizer=None,
                 positions: str = "all", gate_text=None):
        if not isinstance(edit, EditOperator):
            raise UsageError(f"edit must be an EditOperator, got {type(edit).__name__}")
        if positions not in POSITIONS:
            raise UsageError(f"unknown positions {positions!r}; valid: {', '.join(POSITIONS)}")
        if gate is not None and tokenizer is None:
            raise UsageError("a gate reads the prompt text: pass tokenizer=")
        self.model, self.edit, self.gate, self.tokenizer = model, edit, gate, tokenizer
        self.positions = positions
        self.gate_text = gate_text or (lambda text: text)
        self._special = (torch.tensor(sorted(set(tokenizer.all_special_ids)))
                         if tokenizer is not None else None)
        self.blocks = decoder_layers(model)
        bad = [layer for layer in edit.layers if not 0 <= layer < len(self.blocks)]
        if bad:
            raise UsageError(f"layers {bad} do not exist; the model has decoder layers "
                             f"0..{len(self.blocks) - 1}")
        edit.place({layer: _execution_device(self.blocks[layer]) for layer in edit.layers})
        self.stats = SteerStats()
        self._handles: list = []
        self._state: dict = {}

    @property
    def layers(self) -> list[int]:
        return list(self.edit.layers)

    @property
    def shareable(self) -> bool:
        """Whether rows may share a prefix computed once: every edit depends on its own
        token alone, and no gate or position rule needs the whole prompt."""
        return self.edit.token_local and self.gate is None and self.positions == "all"

    def select_rows(self, index: torch.Tensor) -> None:
        """Reorder or repeat the per-row state of the current call as ``index`` selects rows,
        to follow a KV cache that was (e.g. one prompt's cache copied to each of its
        continuations before they are scored)."""
        st = self._state
        st["open"] = st["open"][index.to(st["open"].device)]
        st["ids"] = st["ids"][index.to(st["ids"].device)]
        s = self.stats
        if s.row_seen is not None:
            i = index.to(s.row_seen.device)
            s.row_steered, s.row_seen, s.row_rel_edit = (s.row_steered[i], s.row_seen[i],
                                                         s.row_rel_edit[i])
        s.gate_open = [s.gate_open[j] for j in index.tolist()] if s.gate_open else []
        self.edit.select(index)

    # --- hooks -----------------------------------------------------------------------------
    def _pre_forward(self, _module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            raise UsageError("steering needs input_ids (inputs_embeds alone carry no BOS/pad "
                             "information)")
        am = kwargs.get("attention_mask")
        # transformers 4.x passes the KV cache as past_key_values, 5.x as cache
        past = kwargs.get("past_key_values", kwargs.get("cache"))
        if past is not None and hasattr(past, "get_seq_length"):
            past_len = past.get_seq_length()
        else:  # generate's attention mask spans past and current tokens
            past_len = am.shape[1] - ids.shape[1] if am is not None else 0
        am = torch.ones_like(ids) if am is None else am[:, -ids.shape[1]:]
        st = self._state
        fresh = past_len == 0
        # generate(use_cache=False) re-runs the whole sequence at every step: a full forward
        # right after another full forward that it extends is the same call, not a new one
        if fresh and st.get("prev_full") and self._continues(st["ids"], ids):
            fresh = False
        st["prev_full"] = past_len == 0
        if fresh:
            st["prompt_len"] = ids.shape[1]
            st["open"] = self._decide(ids)
            self.stats._reset_rows(ids.shape[0], ids.device)
            self.edit.begin(ids.shape[0])
        if past_len == 0:
            st["ids"] = ids
        last = am.shape[1] - 1 - am.flip(-1).argmax(-1) if fresh else None
        st["step"] = Step(prefill=fresh, last=last)
        if self._special is not None:
            if self._special.device != ids.device:
                self._special = self._special.to(ids.device)
            mask = am.bool() & ~torch.isin(ids, self._special)
        else:
            mask = am.bool().clone()
            mask[:, 0] &= past_len > 0   # without a tokenizer: treat the first token as BOS
        pos = torch.arange(past_len, past_len + ids.shape[1], device=ids.device)
        if self.positions == "generated":
            mask &= pos >= st["prompt_len"]
        elif self.positions == "prompt":
            mask &= pos < st["prompt_len"]
        st["mask"] = mask & st["open"].unsqueeze(1)

    @staticmethod
    def _continues(prev: torch.Tensor, ids: torch.Tensor) -> bool:
        return (ids.shape[0] == prev.shape[0] and ids.shape[1] > prev.shape[1]
                and bool(torch.equal(ids[:, :prev.shape[1]], prev)))

    def _decide(self, ids: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            open_ = [True] * ids.shape[0]
        else:
            texts = [self.gate_text(t) for t in
                     self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
            self._state["paused"] = True     # a gate may run the model itself (probe gate)
            try:
                open_ = [bool(x) for x in self.gate.decide(texts)]
            finally:
                self._state["paused"] = False
        self.stats.gate_open = open_
        return torch.tensor(open_, device=ids.device)

    def _make_hook(self, layer: int):
        st, stats, edit = self._state, self.stats, self.edit

        def hook(_module, _args, output):
            if st.get("paused"):
                return None
            h = output[0] if isinstance(output, tuple) else output
            if edit.device(layer) != h.device:      # the layer ran elsewhere than expected
                edit.place({layer: h.device})
            mask = st["mask"].to(h.device)
            e = h.float()
            delta, apply = edit.shift(layer, e, mask, st["step"])
            new = torch.where(apply.unsqueeze(-1), (e + delta).to(h.dtype), h)
            size = torch.broadcast_to(delta.norm(dim=-1), apply.shape) * apply
            rel = size / e.norm(dim=-1).clamp(min=1e-6)
            stats.steered[layer] = stats.steered.get(layer, 0) + apply.sum()
            stats.seen[layer] = stats.seen.get(layer, 0) + mask.sum()
            stats.edit[layer] = stats.edit.get(layer, 0) + size.sum()
            stats.rel_edit[layer] = stats.rel_edit.get(layer, 0) + rel.sum()
            if stats.row_steered is not None and stats.row_steered.shape[0] == apply.shape[0]:
                dev = stats.row_steered.device
                stats.row_steered += apply.sum(-1).to(dev)
                stats.row_seen += mask.sum(-1).to(dev)
                stats.row_rel_edit += rel.sum(-1).to(dev)
            if isinstance(output, tuple):
                return (new,) + tuple(output[1:])
            return new
        return hook

    def __enter__(self):
        try:
            self._handles.append(self.model.register_forward_pre_hook(self._pre_forward,
                                                                      with_kwargs=True))
            for layer in self.layers:
                self._handles.append(
                    self.blocks[layer].register_forward_hook(self._make_hook(layer)))
            self.model._conva_steerer = self
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._state.clear()
        if getattr(self.model, "_conva_steerer", None) is self:
            del self.model._conva_steerer

    def __exit__(self, *exc):
        self.remove()
        return False


def _execution_device(block) -> torch.device:
    """Where ``block`` computes: accelerate's execution device for offloaded or dispatched
    blocks, else the device of its weights."""
    hook = getattr(block, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    return torch.device(device) if device is not None else next(block.parameters()).device


def active_steerer(model) -> Steerer | None:
    """The :class:`Steerer` currently active on ``model``, if any."""
    return getattr(model, "_conva_steerer", None)


def steer(model, what, p0: float | None = 0.99, *, logit: float | None = None,
          rule: str = "token", layers=None, weights=None, min_acc: float = 0.9,
          exclude_last: int = 5, gate=None, tokenizer=None, positions: str = "all",
          gate_text=None) -> Steerer:
    """Context manager that steers ``model`` while it is active.

    what: a :class:`~conva_nb.probes.ProbeBank` or a list of them (multi-value; ``weights``
    scale each target logit), steered by the closed form of ``rule`` (``"prompt"``: the
    authors' per-prompt rule; ``"token"``: per token) toward ``p0`` in (0.5, 1) or
    ``logit`` (a target logit, e.g. beyond ``logit(0.999)``), at ``layers`` (default: each
    bank's selection rule, ``min_acc``/``exclude_last``); or any ready
    :class:`~conva_nb.operators.EditOperator` (e.g. :func:`~conva_nb.operators.caa_shift`).
    gate, tokenizer, positions, gate_text: see :class:`Steerer`.
    """
    if isinstance(what, EditOperator):
        edit = what
    else:
        if what is None:
            raise UsageError("nothing to steer with: give a ProbeBank (or a list) or an "
                             "EditOperator")
        banks = [what] if isinstance(what, ProbeBank) else list(what)
        for b in banks:
            b.check_compatible(model)
        edit = closed_form(banks, p0=p0 if logit is None else None, logit=logit, rule=rule,
                           layers=layers, weights=weights, min_acc=min_acc,
                           exclude_last=exclude_last)
    return Steerer(model, edit, gate=gate, tokenizer=tokenizer, positions=positions,
                   gate_text=gate_text)


@torch.no_grad()
def token_edits(model, tokenizer, bank: ProbeBank, text: str, layer: int,
                p0: float | None = 0.99, logit: float | None = None) -> dict:
    """Per-token view of the closed-form edit at one ``layer`` (for plots).

    Returns ``tokens`` (strings), ``p_before``, ``eps`` (shift length along ``v``) and
    ``p_after`` per token, as lists; special tokens (BOS) get ``eps = 0``.
    """
    block = decoder_layers(model)[layer]
    got = {}
    handle = block.register_forward_hook(
        lambda _m, _a, o: got.setdefault("h", (o[0] if isinstance(o, tuple) else o).detach()))
    enc = tokenizer(text, return_tensors="pt")
    device = model.get_input_embeddings().weight.device
    try:
        model(**{k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")})
    finally:
        handle.remove()
    e = got["h"][0].float().cpu()
    w, b = bank.probe(layer)
    w = torch.tensor(w, dtype=torch.float32)
    s = e @ w + b
    t = target_logit(p0 if logit is None else None, logit)
    eps = ((t - s) / w.norm()).clamp(min=0)
    ids = enc.input_ids[0]
    special = torch.isin(ids, torch.tensor(sorted(set(tokenizer.all_special_ids))))
    eps = torch.where(special, torch.zeros_like(eps), eps)
    return {"tokens": tokenizer.convert_ids_to_tokens(ids.tolist()),
            "p_before": torch.sigmoid(s).tolist(), "eps": eps.tolist(),
            "p_after": torch.sigmoid(s + eps * w.norm()).tolist()}
