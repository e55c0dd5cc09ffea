"""QK-Clip (Kimi K2, section 2.1): after each optimizer step, rescale the query/key weights of every attention
head whose largest pre-softmax logit in that step exceeded tau, so the same batch would now top out at exactly
tau.

For head h with ``S_max^h > tau``, ``gamma_h = tau / S_max^h``:

- MHA: head h's rows of ``W_q`` and ``W_k`` (and biases) times ``sqrt(gamma_h)``.
- GQA (``gqa_rule="query"``, the default): a key head is shared by a group of query heads, so it is treated
  like MLA's shared rotary key: left untouched, and head h's query rows take its whole ``gamma_h``. Heads at or
  under tau, and every key row, stay bitwise unchanged.
- GQA, ``gqa_rule="split"``: the shared key rows take ``sqrt(gamma_g)`` with ``gamma_g`` from the group's
  largest ``S_max``; each query head of the group takes ``gamma_h / sqrt(gamma_g)``. Every head's logits still
  scale by exactly its own ``gamma_h``, and the clip is shared between W_q and W_k as in MHA (the worst head's
  query rows shrink by ``sqrt(gamma)``, not ``gamma``), but the query rows of the group's heads under tau are
  scaled up by ``1/sqrt(gamma_g)`` (their logits are unchanged, their weights are not).
- MLA: head h's non-rotary query and key rows times ``sqrt(gamma_h)``, its rotary query rows times
  ``gamma_h``; the rotary key is shared by all heads and left untouched.

A QK-norm layer (RMSNorm on q and k per head, as in Qwen3) renormalises q and k after the projection and so
cancels the clip; specs built for such models carry ``has_qk_norm=True`` and QKClip warns. Heads are laid out
head-major in the projection rows (``W_q.view(H, head_dim, d_in)``), as in Llama, Qwen and DeepSeek.

The clip is never silently skipped: a layer that recorded no max logit raises ``MissingMaxLogitError`` (it would
report -inf and never be clipped), and a NaN or infinite max logit raises ``NonFiniteMaxLogitError`` (``NaN > tau``
is false, so the head would go unclipped), unless ``on_nonfinite="skip"`` asks to leave those heads alone with a
counted warning. Both name the layer.
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from synth.errors import SynthError
from synth.optim.capture import CAPTURE_ATTR, enable_capture, reset_max_logits
from synth.optim.families import attention_specs, require_capture
from synth.optim.spec import AttentionSpec

logger = logging.getLogger("synth.optim.qk_clip")

GqaRule = Literal["query", "split"]
GQA_RULES: tuple[str, ...] = ("query", "split")
OnNonFinite = Literal["raise", "skip"]
ON_NONFINITE: tuple[str, ...] = ("raise", "skip")


class QKClipError(SynthError, RuntimeError):
    """QK-Clip cannot clip what this step recorded. Also a RuntimeError, which the missing-capture check raised
    before it named layers."""


class MissingMaxLogitError(QKClipError):
    """An attention layer recorded no max logit since the last step, so its heads could never be clipped."""


class NonFiniteMaxLogitError(QKClipError):
    """A recorded max logit is NaN or infinite: ``tau / S_max`` is no clip factor, and ``NaN > tau`` is false."""


_CAPTURE_HINT = (
    "A Hugging Face model needs synth.optim.hf.install_capture(model) before training, and every attention layer "
    "must keep the implementation it sets; custom attention must call "
    "synth.optim.attention_with_max_logits(..., module=self); forward passes under torch.no_grad are not "
    "captured. If this step really ran no forward pass with gradients through these layers, build the QKClip "
    "with require_capture=False."
)
_NONFINITE_HINT = (
    "The forward pass diverged (look at this step's loss and gradients; lower the lr or restart from the last "
    "good checkpoint). The capture was reset and nothing was clipped (under MuonClip.step nothing was updated "
    "either), so catching this error, zeroing the gradients and going on with the next batch is safe. To leave "
    "those heads unclipped and go on with a counted warning instead, pass on_nonfinite='skip' "
    "(MuonClip.for_model(..., on_nonfinite='skip') or QKClip(..., on_nonfinite='skip'))."
)


def check_tau(tau: float) -> float:
    """tau as a float, or a ValueError that says what a valid one is (nan would never clip: S > nan is False)."""
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise ValueError(f"tau must be a positive finite number (K2 uses 100); got {tau!r} ({type(tau).__name__})")
    value = float(tau)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"tau must be a positive finite number (K2 uses 100); got {tau!r}. To log max logits without "
            "clipping use QKClip(..., enabled=False); for Muon without QK-Clip pass tau=None to MuonClip.for_model"
        )
    return value


def clip_factors(s_max: Tensor, tau: float) -> Tensor:
    """``gamma = tau / S_max`` where ``S_max > tau``, else exactly 1.0 (so x*gamma is bitwise x)."""
    return torch.where(s_max > tau, tau / s_max, torch.ones_like(s_max))


def mha_gqa_scales(
    s_max: Tensor, tau: float, group: int, rule: GqaRule = "query"
) -> tuple[Tensor, Tensor | None]:
    """Row scales ``(q_scale (..., H), k_scale (..., H/group) or None)`` for MHA (group 1) or GQA, batched over
    leading dims. Each head's logits end up multiplied by exactly its own ``gamma_h``. ``None``: the key rows
    are left alone (GQA's default rule)."""
    if rule not in GQA_RULES:
        raise ValueError(f"unknown gqa_rule {rule!r}; supported: {', '.join(GQA_RULES)}")
    gamma = clip_factors(s_max, tau)
    if group == 1:
        root = gamma.sqrt()
        return root, root
    if rule == "query":
        # The shared key is left alone, as MLA's shared rotary key is: the clipped head's query rows take its
        # whole factor, and heads at or under tau get exactly 1.0 (bitwise unchanged).
        return gamma, None
    # "split": the shared key head takes the clip of its group's worst query head; the others make up the
    # difference on their own query rows (a factor >= 1 for heads under tau whose group was clipped).
    grouped = s_max.unflatten(-1, (s_max.size(-1) // group, group)).amax(-1)
    k_scale = clip_factors(grouped, tau).sqrt()
    q_scale = gamma / k_scale.repeat_interleave(group, dim=-1)
    return q_scale, k_scale


def _scale_head_rows_(
    weight: Tensor, scale: Tensor, rows_per_head: int, start: int = 0, stop: int | None = None
) -> None:
    # View (heads, rows_per_head, ...) and scale rows [start:stop) of each head; x*1.0 leaves x bitwise
    # intact.
    view = weight.view(scale.numel(), rows_per_head, *weight.shape[1:])
    sl = view[:, start:stop]
    sl.mul_(scale.to(weight.dtype).view(-1, *([1] * (sl.ndim - 1))))


@torch.no_grad()
def apply_mha_gqa_(spec: AttentionSpec, q_scale: Tensor, k_scale: Tensor | None) -> None:
    _scale_head_rows_(spec.q_weight, q_scale, spec.head_dim)
    if spec.q_bias is not None:
        _scale_head_rows_(spec.q_bias, q_scale, spec.head_dim)
    if k_scale is None:
        return
    _scale_head_rows_(spec.k_weight, k_scale, spec.head_dim)
    if spec.k_bias is not None:
        _scale_head_rows_(spec.k_bias, k_scale, spec.head_dim)


@torch.no_grad()
def apply_mla_(spec: AttentionSpec, gamma: Tensor) -> None:
    """Non-rotary q and k rows times sqrt(gamma), rotary q rows times gamma; the shared rotary key (outside
    ``k_weight``) and the value rows are never touched."""
    root = gamma.sqrt()
    q_rows, kv_rows = spec.nope_dim + spec.rope_dim, spec.nope_dim + spec.v_head_dim
    _scale_head_rows_(spec.q_weight, root, q_rows, 0, spec.nope_dim)
    _scale_head_rows_(spec.q_weight, gamma, q_rows, spec.nope_dim, q_rows)
    _scale_head_rows_(spec.k_weight, root, kv_rows, 0, spec.nope_dim)
    if spec.q_bias is not None:
        _scale_head_rows_(spec.q_bias, root, q_rows, 0, spec.nope_dim)
        _scale_head_rows_(spec.q_bias, gamma, q_rows, spec.nope_dim, q_rows)
    if spec.k_bias is not None:
        _scale_head_rows_(spec.k_bias, root, kv_rows, 0, spec.nope_dim)


@torch.no_grad()
def clip_mha_gqa_(spec: AttentionSpec, s_max: Tensor, tau: float, gqa_rule: GqaRule = "query") -> Tensor:
    """QK-Clip one MHA/GQA layer from its ``(num_heads,)`` maxima; returns the heads over tau (tensor, no
    sync)."""
    q_scale, k_scale = mha_gqa_scales(s_max, check_tau(tau), spec.num_heads // spec.num_kv_heads, gqa_rule)
    apply_mha_gqa_(spec, q_scale, k_scale)
    return (s_max > tau).sum()


@torch.no_grad()
def clip_mla_(spec: AttentionSpec, s_max: Tensor, tau: float) -> Tensor:
    """QK-Clip one MLA layer from its ``(num_heads,)`` maxima; returns the heads over tau (no sync)."""
    apply_mla_(spec, clip_factors(s_max, check_tau(tau)))
    return (s_max > tau).sum()


@dataclass
class ClipStats:
    """One step's QK-Clip record: per-layer max logit (after the MAX over micro-batches and ranks) and the
    number of heads clipped. Tensors stay on the device; ``as_dict`` syncs."""

    names: list[str]
    max_logits: Tensor  # (layers,)
    heads_clipped: Tensor  # (layers,)
    tau: float
    per_head: list[Tensor] = field(default_factory=list)
    # Heads left unclipped this step for a non-finite max logit (on_nonfinite="skip"); None: none were.
    heads_skipped: Tensor | None = None  # (layers,)
    skipped_total: int = 0  # heads skipped over every step of this QKClip so far

    def as_dict(self) -> dict[str, dict[str, float]]:
        maxes = self.max_logits.tolist()
        clipped = self.heads_clipped.tolist()
        skipped = [0] * len(self.names) if self.heads_skipped is None else self.heads_skipped.tolist()
        return {
            n: {"max_logit": m, "heads_clipped": int(c), "heads_skipped": int(k)}
            for n, m, c, k in zip(self.names, maxes, clipped, skipped, strict=True)
        }

    @property
    def max_logit(self) -> float:
        return float(self.max_logits.max()) if self.max_logits.numel() else float("-inf")

    @property
    def total_clipped(self) -> int:
        return int(self.heads_clipped.sum()) if self.heads_clipped.numel() else 0


@dataclass
class GatheredMaxLogits:
    """One step's maxima after the checks: ``table`` as recorded (the stats show NaN as NaN) and, only when
    ``on_nonfinite="skip"`` found some, the ``(layers, width)`` mask of heads to leave unclipped."""

    table: Tensor
    nonfinite: Tensor | None = None


def _head_list(heads: list[int]) -> str:
    shown = ", ".join(map(str, heads[:16])) + (f" and {len(heads) - 16} more" if len(heads) > 16 else "")
    return f"head{'s' if len(heads) > 1 else ''} {shown}"


def describe_nonfinite(names: Sequence[str], table: Tensor, bad: Tensor, max_layers: int = 8) -> str:
    """``layer: nan in head 2; layer: inf in heads 0, 1`` for the flagged heads (host sync: error path only)."""
    values, flags = table.tolist(), bad.tolist()
    parts = []
    for name, row, row_bad in zip(names, values, flags, strict=True):
        kinds: dict[str, list[int]] = {}
        for h, (v, b) in enumerate(zip(row, row_bad, strict=True)):
            if b:
                kinds.setdefault(str(v), []).append(h)
        if kinds:
            parts.append(f"{name}: " + ", ".join(f"{k} in {_head_list(hs)}" for k, hs in kinds.items()))
    more = f"; and {len(parts) - max_layers} more layers" if len(parts) > max_layers else ""
    return "; ".join(parts[:max_layers]) + more


class QKClip:
    """Per-head QK-Clip over a list of attention layers, fed by the maxima captured in their forwards.

    ``gqa_rule``: how a clip reaches a key head shared by several query heads (module docstring).
    ``require_capture``: ``step()`` raises ``MissingMaxLogitError`` naming every layer that recorded no max logit
    since the last step (its attention does not capture, so its heads would never be clipped); pass False for
    steps that legitimately run no forward pass with gradients through some or all layers.
    ``on_nonfinite``: what ``step()`` does when a recorded max logit is NaN or infinite (a diverged forward):
    ``"raise"`` (the default) raises ``NonFiniteMaxLogitError`` naming the layers and heads; ``"skip"`` leaves
    those heads unclipped, clips the rest, logs a warning and counts them (``heads_skipped_total``,
    ``steps_skipped``, ``ClipStats.skipped_total``). A disabled clip (``enabled=False``) only measures, so it
    records such values in its stats without either.
    """

    def __init__(
        self,
        specs: Sequence[AttentionSpec],
        tau: float = 100.0,
        enabled: bool = True,
        process_group: dist.ProcessGroup | None = None,
        gqa_rule: GqaRule = "query",
        require_capture: bool = True,
        on_nonfinite: OnNonFinite = "raise",
    ) -> None:
        if not specs:
            raise ValueError("QKClip needs at least one attention layer spec")
        if gqa_rule not in GQA_RULES:
            raise ValueError(f"unknown gqa_rule {gqa_rule!r}; supported: {', '.join(GQA_RULES)}")
        if on_nonfinite not in ON_NONFINITE:
            raise ValueError(f"unknown on_nonfinite {on_nonfinite!r}; supported: {', '.join(ON_NONFINITE)}")
        self.specs = list(specs)
        self.tau = tau
        self.gqa_rule: GqaRule = gqa_rule
        self.require_capture = require_capture
        self.on_nonfinite: OnNonFinite = on_nonfinite
        self.heads_skipped_total = 0
        self.steps_skipped = 0
        self._head_masks: dict[torch.device, Tensor] = {}
        self.enabled = enabled
        self.process_group = process_group
        self.last_stats: ClipStats | None = None
        normed = [s.name for s in self.specs if s.has_qk_norm]
        if normed:
            warnings.warn(
                f"{len(normed)} attention layers apply QK-norm after the projections (e.g. {normed[0]}): "
                "the norm cancels QK-Clip's rescaling of W_q/W_k there, so max logits are logged but "
                "clipping has no effect.",
                stacklevel=2,
            )
        for s in self.specs:
            enable_capture(s.module)

    @property
    def tau(self) -> float:
        return self._tau

    @tau.setter
    def tau(self, value: float) -> None:
        self._tau = check_tau(value)

    @classmethod
    def for_model(cls, model: nn.Module, tau: float = 100.0, **kwargs: object) -> QKClip:
        """Find the attention layers of ``model`` (see ``synth.optim.families``) and build a QKClip; a Hugging Face
        model must have ``synth.optim.hf.install_capture`` run first (raises otherwise)."""

        specs = attention_specs(model)
        require_capture(model, specs)
        return cls(specs, tau=tau, **kwargs)  # type: ignore[arg-type]

    def reset(self) -> None:
        for s in self.specs:
            reset_max_logits(s.module)

    @torch.no_grad()
    def gather_table(self) -> Tensor:
        """``(layers, max heads)`` table of this step's per-head maxima, MAX-reduced over ranks in one
        all_reduce. Layers that ran no forward pass, and padding past a layer's head count, are -inf."""
        device = self.specs[0].q_weight.device
        # fp64 models keep fp64 maxima, so tests can check min(S_max, tau) to fp64 precision.
        dtype = torch.float64 if any(s.q_weight.dtype == torch.float64 for s in self.specs) else torch.float32
        width = max(s.num_heads for s in self.specs)
        captured = [getattr(s.module, CAPTURE_ATTR, None) for s in self.specs]
        if all(c is not None and c.numel() == width for c in captured):
            table = torch.stack(captured).to(device=device, dtype=dtype)  # type: ignore[arg-type]
        else:
            table = torch.full((len(self.specs), width), float("-inf"), device=device, dtype=dtype)
            for i, c in enumerate(captured):
                if c is not None:
                    table[i, : c.numel()] = c.to(device=device, dtype=dtype)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size(self.process_group) > 1:
            dist.all_reduce(table, op=dist.ReduceOp.MAX, group=self.process_group)
        return table

    def gather(self) -> list[Tensor]:
        """Per-layer ``(num_heads,)`` maxima (see ``gather_table``)."""
        table = self.gather_table()
        return [table[i, : s.num_heads] for i, s in enumerate(self.specs)]

    def check_captured(self) -> None:
        """Raise ``MissingMaxLogitError`` naming every layer that recorded no max logit since the last step
        (unless ``require_capture=False``). Host-side only: no device sync."""
        if not self.require_capture:
            return
        missing = [s for s in self.specs if getattr(s.module, CAPTURE_ATTR, None) is None]
        if not missing:
            return
        if len(missing) == len(self.specs):
            message = (
                f"QK-Clip: none of the {len(self.specs)} attention layers (e.g. {self.specs[0].name}) recorded a "
                "max logit since the last step, so nothing can be clipped"
            )
        else:
            named = []
            for s in missing[:8]:
                # A Hugging Face layer says which attention it ran; the common cause is one left on sdpa.
                impl = getattr(getattr(s.module, "config", None), "_attn_implementation", None)
                named.append(s.name if impl is None else f"{s.name} (runs attention {impl!r})")
            more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
            message = (
                f"QK-Clip: {len(missing)} of {len(self.specs)} attention layers recorded no max logit since the "
                f"last step, so their heads would never be clipped: {', '.join(named)}{more}"
            )
        raise MissingMaxLogitError(message, hint=_CAPTURE_HINT)

    def _head_mask(self, table: Tensor) -> Tensor | None:
        """``(layers, width)`` True where a column is a real head of its layer; None when every layer is full
        width. Built once per device, so a step pays no host-to-device copy for it."""
        heads = [s.num_heads for s in self.specs]
        if all(h == table.size(1) for h in heads):
            return None
        mask = self._head_masks.get(table.device)
        if mask is None:
            mask = torch.arange(table.size(1)) < torch.tensor(heads)[:, None]
            mask = self._head_masks[table.device] = mask.to(table.device)
        return mask

    @torch.no_grad()
    def gather_checked(self) -> GatheredMaxLogits:
        """``gather_table`` behind the two checks that keep the clip from being silently skipped: a layer with no
        max logit raises (``check_captured``), and so does a NaN or infinite one (``on_nonfinite="raise"``) or
        it is marked to be skipped (``"skip"``). The finiteness check costs one device sync per step, on the
        gathered table (never one per layer); it runs after the all-reduce, so every rank decides alike. A
        raise resets the capture, so a caller that catches it can go on with the next batch."""
        self.check_captured()
        table = self.gather_table()
        if not self.enabled:
            return GatheredMaxLogits(table)
        bad = ~torch.isfinite(table)
        real = self._head_mask(table)
        if real is not None:
            bad &= real  # padding past a layer's head count is -inf by construction
        if not self.require_capture:
            # Layers that ran no forward pass on any rank (all -inf) are what require_capture=False allows.
            bad &= ~torch.isneginf(table).all(dim=1, keepdim=True)
        if not bool(bad.any()):
            return GatheredMaxLogits(table)
        if self.on_nonfinite == "raise":
            names = [s.name for s in self.specs]
            detail = describe_nonfinite(names, table, bad)
            self.reset()
            raise NonFiniteMaxLogitError(
                f"QK-Clip: non-finite max logit recorded, so tau/S_max is no clip factor and these heads would "
                f"go unclipped: {detail}",
                hint=_NONFINITE_HINT,
            )
        return GatheredMaxLogits(table, bad)

    @torch.no_grad()
    def step(self, gathered: GatheredMaxLogits | None = None) -> ClipStats:
        """Gather and check this step's maxima (``gather_checked``), clip the heads over tau (unless disabled),
        reset the capture, return stats. ``gathered``: this step's ``gather_checked()`` result when the caller
        took it already (``MuonClip.step`` does, before its update, so a raise leaves the model untouched).

        Scale factors are computed for all layers of one shape at once, so the per-layer work is just the
        in-place row scaling of W_q and W_k: a few dozen small kernels for a whole model. The only host sync is
        the finiteness check's, once per step.
        """
        if gathered is None:
            gathered = self.gather_checked()
        table = gathered.table
        if gathered.nonfinite is not None:
            # -inf is never over tau: the skipped heads get a factor of exactly 1.0, their rows stay bitwise.
            table = table.masked_fill(gathered.nonfinite, float("-inf"))
        if self.enabled:
            by_shape: dict[tuple[str, int, int], list[int]] = {}
            for i, s in enumerate(self.specs):
                by_shape.setdefault((s.kind, s.num_heads, s.num_kv_heads), []).append(i)
            for (kind, heads, kv_heads), rows in by_shape.items():
                sub = table[rows, :heads] if len(rows) < len(self.specs) or heads < table.size(1) else table
                wdtype = self.specs[rows[0]].q_weight.dtype  # cast the factors once, not once per layer
                if kind == "mla":
                    gamma = clip_factors(sub, self.tau)
                    for j, i in enumerate(rows):
                        apply_mla_(self.specs[i], gamma[j])
                else:
                    q_scale, k_scale = mha_gqa_scales(sub, self.tau, heads // kv_heads, self.gqa_rule)
                    q_scale = q_scale.to(wdtype)
                    k_scale = None if k_scale is None else k_scale.to(wdtype)
                    for j, i in enumerate(rows):
                        apply_mha_gqa_(self.specs[i], q_scale[j], None if k_scale is None else k_scale[j])
        self.reset()
        over = (table > self.tau).sum(dim=1)
        skipped = None
        if gathered.nonfinite is not None:
            skipped = gathered.nonfinite.sum(dim=1)
            count = int(skipped.sum())
            self.heads_skipped_total += count
            self.steps_skipped += 1
            logger.warning(
                "qk-clip: left %d head%s unclipped for a non-finite max logit (on_nonfinite='skip'): %s; "
                "%d heads in %d steps so far",
                count,
                "s" if count > 1 else "",
                describe_nonfinite([s.name for s in self.specs], gathered.table, gathered.nonfinite),
                self.heads_skipped_total,
                self.steps_skipped,
            )
        recorded = gathered.table  # the stats show what was recorded, NaN included
        stats = ClipStats(
            names=[s.name for s in self.specs],
            max_logits=recorded.amax(dim=1),
            heads_clipped=over if self.enabled else torch.zeros_like(over),
            tau=self.tau,
            per_head=[recorded[i, : s.num_heads] for i, s in enumerate(self.specs)],
            heads_skipped=skipped,
            skipped_total=self.heads_skipped_total,
        )
        self.last_stats = stats
        if logger.isEnabledFor(logging.INFO):
            # Only pays for a device sync when someone listens.
            d = stats.as_dict()
            logger.info(
                "qk-clip tau=%.1f max_logit=%.2f heads_clipped=%d heads_skipped_total=%d per_layer=%s",
                self.tau,
                stats.max_logit,
                stats.total_clipped,
                stats.skipped_total,
                {k: (round(v["max_logit"], 2), v["heads_clipped"]) for k, v in d.items()},
            )
        return stats
