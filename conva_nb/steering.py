"""Closed-form, gated value steering through removable forward hooks.

``with steer(model, bank, p0=0.99, gate=gate, tokenizer=tok): model.generate(...)``

At each selected decoder layer and each content token (never BOS or padding)
the hook reads ``s = w·e + b`` in float32 and, where ``s < logit(P0)``, adds the
smallest shift along ``v = w/‖w‖`` that makes the probe say ``P0``::

    eps = max(0, (logit(P0) − w·e − b) / ‖w‖),   e ← e + eps·v

Rows whose gate is closed are left exactly as they are. Several values at once
(``steer(model, [bank_a, bank_b])``) solve, per token, the minimal-norm shift
meeting every probe's constraint (a small QP solved exactly over active sets).
CAA (a fixed vector × multiplier) runs through the same machinery.
All hooks are removed on exit, also when generation raises.
"""
from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .models import decoder_layers
from .probes import ProbeBank

__all__ = ["steer", "Steerer", "SteerStats", "target_logit", "min_norm_shift", "CAAVector",
           "caa_vector", "POSITIONS", "token_edits"]

POSITIONS = ("all", "generated", "prompt")


def target_logit(p0: float | None = None, logit: float | None = None) -> float:
    """The probe score to reach: ``logit(P0)`` or a logit given directly (for beyond 0.999)."""
    if (p0 is None) == (logit is None):
        raise ValueError("give exactly one of p0 (in (0.5, 1)) or target logit (> 0)")
    if logit is not None:
        if not math.isfinite(logit) or logit <= 0:
            raise ValueError(f"target logit must be a finite number > 0, got {logit}")
        return float(logit)
    if not (isinstance(p0, (int, float)) and 0.5 < p0 < 1):
        raise ValueError(f"P0 must lie in the open interval (0.5, 1), got {p0}")
    return math.log(p0 / (1 - p0))


def active_sets(W: torch.Tensor) -> list[tuple[list[int], torch.Tensor]]:
    """Every non-degenerate subset S of the K constraints with ``inv(G_SS)ᵀ`` (G = W Wᵀ)."""
    G = W @ W.T
    out = []
    for k in range(1, W.shape[0] + 1):
        for S in itertools.combinations(range(W.shape[0]), k):
            Gs = G[list(S)][:, list(S)]
            if torch.linalg.matrix_rank(Gs) == k:
                out.append((list(S), torch.linalg.inv(Gs).T))
    return out


def min_norm_shift(W: torch.Tensor, r: torch.Tensor, sets=None) -> torch.Tensor:
    """Coefficients ``lam`` ``[..., K]`` of the minimal-norm ``delta = lam @ W`` with ``W delta >= r``.

    W ``[K, H]`` probe normals, r ``[..., K]`` required score increases. Solved
    exactly: every active set's KKT system (``sets`` from :func:`active_sets`),
    keeping the feasible one of least norm. K = 1 reduces to ``max(0, r) / ‖w‖²``,
    i.e. ``delta = max(0, r) / ‖w‖ · v``.
    """
    K = W.shape[0]
    G = W @ W.T
    if K == 1:
        return r.clamp(min=0) / G[0, 0]
    sets = active_sets(W) if sets is None else sets
    best = torch.zeros_like(r)
    best_norm = torch.full(r.shape[:-1], float("inf"), device=r.device, dtype=r.dtype)
    feasible0 = (r <= 0).all(-1)
    best_norm = torch.where(feasible0, torch.zeros_like(best_norm), best_norm)
    tol = 1e-5 * (1 + r.abs().amax(-1, keepdim=True))
    for S, inv_t in sets:
        lam_s = r[..., S] @ inv_t                                   # [..., |S|]
        lam = torch.zeros_like(r)
        lam[..., S] = lam_s
        ok = (lam_s >= -1e-7).all(-1) & ((lam @ G) >= r - tol).all(-1)
        norm = (lam @ G * lam).sum(-1)
        better = ok & (norm < best_norm)
        best = torch.where(better.unsqueeze(-1), lam, best)
        best_norm = torch.where(better, norm, best_norm)
    return best.clamp(min=0)


@dataclass
class CAAVector:
    """Contrastive activation addition: a fixed shift ``multiplier · scale_l · u_l``.

    ``u_l`` is the unit mean difference (positives − negatives) at layer ``l`` and
    ``scale_l`` the mean activation norm there, so ``multiplier`` is relative to the
    hidden-state norm (0.1–0.2 keeps a small model fluent).
    """
    value: str
    layers: list[int]
    U: np.ndarray
    scale: np.ndarray


def caa_vector(acts: np.ndarray, labels: np.ndarray, value: str, layers: list[int]) -> CAAVector:
    """CAA vectors from twin activations ``[n, L_all, H]`` (labels 1 = positive)."""
    diff = acts[labels == 1].mean(0) - acts[labels == 0].mean(0)   # [L_all, H]
    U = diff[layers] / np.linalg.norm(diff[layers], axis=1, keepdims=True)
    scale = np.linalg.norm(acts[:, layers], axis=-1).mean(0)
    return CAAVector(value, list(layers), U.astype(np.float32), scale.astype(np.float32))


@dataclass
class SteerStats:
    """Per-layer counts accumulated on the device; read them after the block."""
    steered: dict = field(default_factory=dict)     # layer -> tokens shifted
    seen: dict = field(default_factory=dict)        # layer -> content tokens seen (open rows)
    edit: dict = field(default_factory=dict)        # layer -> sum of shift norms
    rel_edit: dict = field(default_factory=dict)    # layer -> sum of shift norm / ‖e‖
    row_steered: torch.Tensor | None = None         # [batch] tokens shifted, last call
    row_seen: torch.Tensor | None = None            # [batch] content tokens, last call
    gate_open: list[bool] = field(default_factory=list)

    def summary(self) -> dict:
        """Per layer: steered fraction, mean edit norm, mean edit relative to ‖e‖."""
        out = {}
        for l in sorted(self.seen):
            seen, st = float(self.seen[l]), float(self.steered[l])
            out[l] = {"steered_fraction": st / seen if seen else 0.0,
                      "mean_edit_norm": float(self.edit[l]) / st if st else 0.0,
                      "mean_rel_edit": float(self.rel_edit[l]) / st if st else 0.0}
        return out

    def row_fraction(self) -> list[float]:
        """Share of (token, layer) slots shifted, per row of the last generate call."""
        if self.row_seen is None:
            return []
        return (self.row_steered / self.row_seen.clamp(min=1)).tolist()


class Steerer(contextlib.AbstractContextManager):
    """Installs the hooks on enter and removes them on exit (see :func:`steer`)."""

    def __init__(self, model, banks, p0: float | None = 0.99, logit: float | None = None,
                 gate=None, tokenizer=None, layers=None, positions: str = "all",
                 weights=None, caa: CAAVector | None = None, multiplier: float = 0.0,
                 min_acc: float = 0.9, exclude_last: int = 5, gate_text=None):
        if positions not in POSITIONS:
            raise ValueError(f"unknown positions {positions!r}; valid: {', '.join(POSITIONS)}")
        if gate is not None and tokenizer is None:
            raise ValueError("a gate reads the prompt text: pass tokenizer=")
        self.model, self.gate, self.tokenizer, self.positions = model, gate, tokenizer, positions
        self.gate_text = gate_text or (lambda text: text)
        self._special = (torch.tensor(sorted(set(tokenizer.all_special_ids)))
                         if tokenizer is not None else None)
        self.blocks = decoder_layers(model, getattr(model, "conva_layers_path", None))
        self.caa, self.multiplier = caa, float(multiplier)
        banks = [] if banks is None else ([banks] if isinstance(banks, ProbeBank) else list(banks))
        if not banks and caa is None:
            raise ValueError("nothing to steer with: give a ProbeBank (or a list) or caa=")
        for b in banks:
            b.check_compatible(model)
        self.banks = banks
        weights = [1.0] * len(banks) if weights is None else [float(w) for w in weights]
        if len(weights) != len(banks):
            raise ValueError(f"{len(weights)} weights for {len(banks)} banks")
        self.targets = [w * target_logit(p0 if logit is None else None, logit) for w in weights] \
            if banks else []
        self.plan = self._plan(layers, min_acc, exclude_last)
        self.stats = SteerStats()
        self._handles: list = []
        self._state: dict = {}

    def _plan(self, layers, min_acc, exclude_last) -> dict:
        """Per decoder layer: device tensors W [K,H], b [K], t [K] (probes) or a CAA shift."""
        plan = {}
        if self.caa is not None:
            for i, l in enumerate(self.caa.layers):
                dev = next(self.blocks[l].parameters()).device
                plan[l] = {"caa": torch.tensor(self.caa.U[i] * self.caa.scale[i] * self.multiplier,
                                               device=dev, dtype=torch.float32)}
            return plan
        chosen = {}
        for k, bank in enumerate(self.banks):
            use = layers if layers is not None else bank.select_layers(min_acc, exclude_last)
            for l in use:
                if l not in bank.layers:
                    raise ValueError(f"layer {l} has no {bank.value} probe; probed layers: "
                                     f"{bank.layers}")
                chosen.setdefault(l, []).append(k)
        for l, ks in sorted(chosen.items()):
            dev = next(self.blocks[l].parameters()).device
            W = np.stack([self.banks[k].probe(l)[0] for k in ks])
            plan[l] = {"W": torch.tensor(W, device=dev, dtype=torch.float32),
                       "b": torch.tensor([self.banks[k].probe(l)[1] for k in ks], device=dev,
                                         dtype=torch.float32),
                       "t": torch.tensor([self.targets[k] for k in ks], device=dev,
                                         dtype=torch.float32)}
            plan[l]["sets"] = active_sets(plan[l]["W"]) if len(ks) > 1 else None
        return plan

    @property
    def layers(self) -> list[int]:
        return sorted(self.plan)

    # --- hooks -----------------------------------------------------------------------------
    def _pre_forward(self, _module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            raise ValueError("steering needs input_ids (inputs_embeds alone carry no BOS/pad info)")
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
            self.stats.row_steered = torch.zeros(ids.shape[0], device=ids.device)
            self.stats.row_seen = torch.zeros(ids.shape[0], device=ids.device)
        if past_len == 0:
            st["ids"] = ids
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
            self._state["paused"] = True
            try:
                open_ = [bool(x) for x in self.gate.decide(texts)]
            finally:
                self._state["paused"] = False
        self.stats.gate_open = open_
        return torch.tensor(open_, device=ids.device)

    def _make_hook(self, layer: int):
        p = self.plan[layer]
        st, stats = self._state, self.stats

        def hook(_module, _args, output):
            if st.get("paused"):
                return None
            h = output[0] if isinstance(output, tuple) else output
            mask = st["mask"].to(h.device)
            e = h.float()
            if "caa" in p:
                delta = p["caa"].expand_as(e)
                apply = mask
                size = p["caa"].norm().expand(mask.shape)
            else:
                s = e @ p["W"].T + p["b"]                                   # [b, t, K]
                lam = min_norm_shift(p["W"], p["t"] - s, p["sets"])         # [b, t, K]
                apply = mask & (lam > 0).any(-1)
                lam = lam * apply.unsqueeze(-1)
                delta = lam @ p["W"]                                        # [b, t, H]
                size = delta.norm(dim=-1)
            new = torch.where(apply.unsqueeze(-1), (e + delta).to(h.dtype), h)
            n_apply = apply.sum()
            stats.steered[layer] = stats.steered.get(layer, 0) + n_apply
            stats.seen[layer] = stats.seen.get(layer, 0) + mask.sum()
            stats.edit[layer] = stats.edit.get(layer, 0) + (size * apply).sum()
            stats.rel_edit[layer] = stats.rel_edit.get(layer, 0) + \
                (size * apply / e.norm(dim=-1).clamp(min=1e-6)).sum()
            if stats.row_steered is not None and stats.row_steered.shape[0] == apply.shape[0]:
                stats.row_steered += apply.sum(-1).to(stats.row_steered.device)
                stats.row_seen += mask.sum(-1).to(stats.row_seen.device)
            if isinstance(output, tuple):
                return (new,) + tuple(output[1:])
            return new
        return hook

    def __enter__(self):
        try:
            self._handles.append(self.model.register_forward_pre_hook(self._pre_forward,
                                                                      with_kwargs=True))
            for l in self.layers:
                self._handles.append(self.blocks[l].register_forward_hook(self._make_hook(l)))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._state.clear()

    def __exit__(self, *exc):
        self.remove()
        return False


def steer(model, banks, p0: float | None = 0.99, **kwargs) -> Steerer:
    """Context manager that steers ``model`` toward the value(s) of ``banks``.

    banks: a :class:`ProbeBank` or a list of them (multi-value; ``weights=`` scale
    each target). p0: target probability in (0.5, 1); or ``logit=`` for a target
    logit beyond ``logit(0.999)``. gate: an object with ``decide(texts) -> bools``,
    one decision per batch row, made on the prompt at the first forward of each
    call. positions: ``"all"``, ``"generated"`` or ``"prompt"``. layers: override
    the selection rule (``min_acc``, ``exclude_last``). gate_text: maps the decoded
    prompt to what the gate reads (e.g. the question without a few-shot preamble).
    """
    return Steerer(model, banks, p0=p0, **kwargs)


@torch.no_grad()
def token_edits(model, tokenizer, bank: ProbeBank, text: str, layer: int,
                p0: float | None = 0.99, logit: float | None = None) -> dict:
    """Per-token view of the closed-form edit at one ``layer`` (for plots).

    Returns ``tokens`` (strings), ``p_before``, ``eps`` (shift length along ``v``) and
    ``p_after`` per token, as lists; special tokens (BOS) get ``eps = 0``.
    """
    block = decoder_layers(model, getattr(model, "conva_layers_path", None))[layer]
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
