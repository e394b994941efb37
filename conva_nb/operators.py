"""Edit rules: what a steering hook adds to one layer's hidden states.

An operator sees, at each steered layer, the hidden states ``e [b, t, H]`` (float32), the
positions it may edit (``mask [b, t]``: content tokens of rows whose gate is open) and a
:class:`Step` saying whether this forward is a prompt's prefill. It returns the shift
``delta`` (broadcastable to ``[b, t, H]``) and where it applies (``apply [b, t]``).
Everything else — hooks, masks, gates, KV-cache bookkeeping, statistics — belongs to
:class:`~conva_nb.steering.Steerer`.

================  ==========================================================================
PromptClosedForm  ConVA as its authors apply it: at the prefill of each steered layer, in
                  order, the minimal shift that makes the probe read ``P0`` at the prompt's
                  last token (already shifted by the earlier layers); the same shift is then
                  added at every position of the prompt and of every generated token
TokenClosedForm   per-token ConVA: every content token gets its own minimal shift, zero
                  where the probe already reads ``P0`` (this package's extension)
ConstantShift     CAA: one fixed vector per layer at every position
================  ==========================================================================

The closed form (one probe ``w, b`` and target logit ``t``)::

    eps = max(0, (t − w·e − b) / ‖w‖),   delta = eps · w / ‖w‖

Several probes at once (multi-value steering) solve the minimal-norm shift meeting every
constraint exactly (:func:`min_norm_shift`).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import UsageError

__all__ = ["Step", "EditOperator", "TokenClosedForm", "PromptClosedForm", "ConstantShift",
           "RULES", "closed_form", "target_logit", "min_norm_shift", "active_sets",
           "CAAVector", "caa_vector", "caa_shift"]


def target_logit(p0: float | None = None, logit: float | None = None) -> float:
    """The probe score to reach: ``logit(P0)`` or a logit given directly (beyond 0.999)."""
    if (p0 is None) == (logit is None):
        raise UsageError("give exactly one of p0 (in (0.5, 1)) or target logit (> 0)")
    if logit is not None:
        if not isinstance(logit, (int, float)) or not math.isfinite(logit) or logit <= 0:
            raise UsageError(f"target logit must be a finite number > 0, got {logit}")
        return float(logit)
    if not (isinstance(p0, (int, float)) and 0.5 < p0 < 1):
        raise UsageError(f"P0 must lie in the open interval (0.5, 1), got {p0}")
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
    """Coefficients ``lam [..., K]`` of the minimal-norm ``delta = lam @ W`` with ``W delta >= r``.

    W ``[K, H]`` probe normals, r ``[..., K]`` required score increases. Solved exactly:
    every active set's KKT system (``sets`` from :func:`active_sets`), keeping the
    feasible one of least norm. K = 1 reduces to ``max(0, r) / ‖w‖²``, i.e.
    ``delta = max(0, r) / ‖w‖ · v``.
    """
    G = W @ W.T
    if W.shape[0] == 1:
        return r.clamp(min=0) / G[0, 0]
    sets = active_sets(W) if sets is None else sets
    best = torch.zeros_like(r)
    best_norm = torch.full(r.shape[:-1], float("inf"), device=r.device, dtype=r.dtype)
    best_norm = torch.where((r <= 0).all(-1), torch.zeros_like(best_norm), best_norm)
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
class Step:
    """What the hooks know about the current forward.

    prefill: the first forward of a prompt (``generate``'s prefill, or a plain forward).
    last: ``[b]`` index of each row's last prompt token in this forward (prefill only).
    """
    prefill: bool
    last: torch.Tensor | None = None


class EditOperator:
    """The interface a :class:`~conva_nb.steering.Steerer` drives (subclass it).

    ``token_local`` is true when a token's edit depends on that token's own state alone,
    so a shared prefix may be computed once for all rows (:mod:`conva_nb.prefix`).
    """
    token_local = True

    _np: dict = {}                 # per-layer arrays on the host, by layer

    @property
    def layers(self) -> list[int]:
        return list(self._np)

    def _keep(self, per_layer: dict) -> None:
        """Hold ``{layer: arrays}`` on the host, sorted by layer, and place it on the CPU."""
        self._np = {int(l): p for l, p in sorted(per_layer.items())}
        self.place({l: torch.device("cpu") for l in self._np})

    def place(self, devices: dict[int, torch.device]) -> None:
        """Move per-layer tensors to each layer's device (before the hooks, and again if a
        layer turns out to run elsewhere)."""
        for layer, device in devices.items():
            self._place(layer, torch.device(device))

    def device(self, layer: int) -> torch.device:
        """Where ``layer``'s tensors are now."""
        raise NotImplementedError

    def _place(self, layer: int, device: torch.device) -> None:
        raise NotImplementedError

    def begin(self, batch: int) -> None:
        """A new prompt batch: forget any per-row state."""

    def select(self, index: torch.Tensor) -> None:
        """Keep (and repeat) per-row state as ``index`` selects rows (a KV cache reordered
        or repeated for the continuations of a prompt)."""

    def shift(self, layer: int, e: torch.Tensor, mask: torch.Tensor, step: Step
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(delta, apply)`` for hidden states ``e [b, t, H]`` (float32) at ``layer``."""
        raise NotImplementedError


class _ClosedForm(EditOperator):
    """Probe constraints per layer: ``W [K, H]``, ``b [K]`` and target logits ``t [K]``."""

    def __init__(self, probes: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]):
        if not probes:
            raise UsageError("a closed-form edit needs at least one steered layer")
        self._keep(probes)

    def _place(self, layer, device) -> None:
        if not hasattr(self, "W"):
            self.W, self.b, self.t, self.sets = {}, {}, {}, {}
        W, b, t = self._np[layer]
        kw = {"device": device, "dtype": torch.float32}
        self.W[layer] = torch.as_tensor(np.asarray(W, np.float32), **kw)
        self.b[layer] = torch.as_tensor(np.asarray(b, np.float32), **kw)
        self.t[layer] = torch.as_tensor(np.asarray(t, np.float32), **kw)
        self.sets[layer] = active_sets(self.W[layer]) if self.W[layer].shape[0] > 1 else None

    def device(self, layer) -> torch.device:
        return self.W[layer].device

    def _lam(self, layer: int, e: torch.Tensor) -> torch.Tensor:
        """Shift coefficients ``[..., K]`` for states ``e [..., H]``."""
        s = e @ self.W[layer].T + self.b[layer]
        return min_norm_shift(self.W[layer], self.t[layer] - s, self.sets[layer])


class TokenClosedForm(_ClosedForm):
    """Per-token minimal edit: each content token independently, zero where ``P >= P0``."""

    def shift(self, layer, e, mask, step):
        lam = self._lam(layer, e)                                   # [b, t, K]
        apply = mask & (lam > 0).any(-1)
        return (lam * apply.unsqueeze(-1)) @ self.W[layer], apply   # [b, t, H]


class PromptClosedForm(_ClosedForm):
    """The authors' rule: one shift per prompt and layer, read at the last prompt token.

    At the prefill, layer by layer in order (each hook sees the stream the earlier layers
    already shifted), the minimal shift that brings the probe to its target at each row's
    last prompt token is fixed for that row; it is added at every editable position then
    and at every later decoding step. Rows whose last token already reads ``P0`` get none.
    """
    token_local = False

    def begin(self, batch: int) -> None:
        self._delta: dict[int, torch.Tensor] = {}
        self._on: dict[int, torch.Tensor] = {}

    def shift(self, layer, e, mask, step):
        if step.prefill:
            rows = torch.arange(e.shape[0], device=e.device)
            lam = self._lam(layer, e[rows, step.last.to(e.device)])   # [b, K]
            self._delta[layer] = (lam @ self.W[layer]).unsqueeze(1)     # [b, 1, H]
            self._on[layer] = (lam > 0).any(-1)                         # [b]
        if layer not in getattr(self, "_delta", {}):
            raise UsageError("the per-prompt rule fixes its shift at the prompt's first "
                             "forward; a cached prefix computed without it cannot be steered")
        return self._delta[layer], mask & self._on[layer].unsqueeze(1)

    def select(self, index):
        self._delta = {l: d[index.to(d.device)] for l, d in self._delta.items()}
        self._on = {l: o[index.to(o.device)] for l, o in self._on.items()}

    def prompt_shift(self) -> dict[int, torch.Tensor]:
        """Per layer, the length of each row's fixed shift (``[b]``) from the last prefill."""
        return {l: d[:, 0].norm(dim=-1) * self._on[l] for l, d in self._delta.items()}


class ConstantShift(EditOperator):
    """A fixed vector per layer, added at every editable position (CAA)."""

    def __init__(self, vectors: dict[int, np.ndarray]):
        if not vectors:
            raise UsageError("a constant shift needs at least one layer")
        self._keep({l: np.asarray(v, np.float32) for l, v in vectors.items()})

    def _place(self, layer, device) -> None:
        if not hasattr(self, "vec"):
            self.vec = {}
        self.vec[layer] = torch.as_tensor(self._np[layer], device=device)

    def device(self, layer) -> torch.device:
        return self.vec[layer].device

    def shift(self, layer, e, mask, step):
        return self.vec[layer], mask


RULES = {"prompt": PromptClosedForm, "token": TokenClosedForm}


def closed_form(banks, p0: float | None = 0.99, logit: float | None = None,
                rule: str = "prompt", layers=None, weights=None, min_acc: float = 0.9,
                exclude_last: int = 5) -> _ClosedForm:
    """The closed-form operator for one :class:`~conva_nb.probes.ProbeBank` or a list.

    rule: ``"prompt"`` (the authors' per-prompt rule) or ``"token"`` (per token). p0 or
    logit: the target; ``weights`` scale each bank's target logit. layers: the decoder
    layers to steer (default: each bank's selection rule, ``min_acc``/``exclude_last``);
    every one must be probed in every bank that steers it.
    """
    if rule not in RULES:
        raise UsageError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}")
    banks = [banks] if hasattr(banks, "probe") else list(banks)
    if not banks:
        raise UsageError("nothing to steer with: give a ProbeBank or a list of them")
    weights = [1.0] * len(banks) if weights is None else [float(w) for w in weights]
    if len(weights) != len(banks):
        raise UsageError(f"{len(weights)} weights for {len(banks)} banks")
    base = target_logit(p0 if logit is None else None, logit)
    chosen: dict[int, list[int]] = {}
    for k, bank in enumerate(banks):
        use = bank.select_layers(min_acc, exclude_last) if layers is None else list(layers)
        for layer in use:
            if layer not in bank.layers:
                raise UsageError(f"layer {layer} has no {bank.value} probe; probed layers: "
                                 f"{bank.layers}")
            chosen.setdefault(int(layer), []).append(k)
    probes = {l: (np.stack([banks[k].probe(l)[0] for k in ks]),
                  np.array([banks[k].probe(l)[1] for k in ks]),
                  np.array([weights[k] * base for k in ks])) for l, ks in chosen.items()}
    return RULES[rule](probes)


@dataclass
class CAAVector:
    """Contrastive activation addition: unit mean differences ``U [L, H]`` (positives −
    negatives) at ``layers`` and the mean activation norm ``scale [L]`` there, so that a
    multiplier is relative to the hidden-state norm (0.05–0.2 keeps a small model fluent)."""
    value: str
    layers: list[int]
    U: np.ndarray
    scale: np.ndarray


def caa_vector(acts: np.ndarray, labels: np.ndarray, value: str, layers) -> CAAVector:
    """CAA vectors from twin activations ``acts [n, L_all, H]`` (labels 1 = positive)."""
    layers = list(layers)
    diff = acts[labels == 1].mean(0) - acts[labels == 0].mean(0)   # [L_all, H]
    U = diff[layers] / np.linalg.norm(diff[layers], axis=1, keepdims=True)
    scale = np.linalg.norm(acts[:, layers], axis=-1).mean(0)
    return CAAVector(value, layers, U.astype(np.float32), scale.astype(np.float32))


def caa_shift(caa: CAAVector, multiplier: float) -> ConstantShift:
    """The constant shift ``multiplier · scale_l · u_l`` at each of ``caa``'s layers."""
    return ConstantShift({l: caa.U[i] * caa.scale[i] * float(multiplier)
                          for i, l in enumerate(caa.layers)})
