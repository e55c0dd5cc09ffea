"""MuonClip: Muon (K2's update rule) for hidden matrices, AdamW for the rest, QK-Clip after every step.

Usage::

    opt = MuonClip.for_model(model, lr=2e-4, tau=100.0)
    for micro_batch in batches:          # gradient accumulation: max logits are MAXed over micro-batches
        model.loss(micro_batch).backward()
    opt.step()                           # Muon + AdamW, then QK-Clip from this step's captured max logits
    opt.zero_grad()
    opt.last_clip_stats.as_dict()        # {layer: {"max_logit": ..., "heads_clipped": ...}}

What must NOT go to Muon: embeddings, the output head, norms, biases (see ``synth.optim.split``). MoE expert
weights stored as 3-D tensors ``(experts, out, in)`` go to Muon as one matrix per expert. Parameter groups say
which rule they take with ``use_muon``; ``split_params(model).param_groups()`` builds them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from synth.optim.newton_schulz import NS_COEFFICIENTS, NS_EPS, check_method
from synth.optim.qk_clip import ClipStats, GqaRule, OnNonFinite, QKClip
from synth.optim.split import split_params
from synth.optim.updates import DEFAULT_MAX_STACK_NUMEL, adamw_update_, muon_update_

# Kimi K2's settings (arXiv 2507.20534, section 2.1 and 2.4): peak lr 2e-4, wd 0.1, momentum 0.95, tau 100.
K2_LR = 2e-4
K2_WEIGHT_DECAY = 0.1
K2_MOMENTUM = 0.95
K2_TAU = 100.0


class MuonClip(torch.optim.Optimizer):
    """Muon with per-head QK-Clip.

    Muon groups (``use_muon=True``), K2's Algorithm 1: ``M = mu*M + G``; ``O = NS5(M)`` in ``ns_dtype`` (bf16);
    ``W -= lr*(0.2*sqrt(max(A,B))*O + wd*W)``. ``nesterov=True`` orthogonalises ``G + mu*M`` instead
    (torch.optim.Muon's default, not K2's). 3-D tensors in a Muon group are stacks of expert matrices: each
    expert is its own matrix with its own ``sqrt(max(A,B))``. AdamW groups: torch.optim.AdamW's rule with the
    same lr and wd unless the group overrides them. Then, if ``qk_clip`` is set, ``qk_clip.step()``. The clip's
    checks (a layer with no max logit, a NaN or infinite one: ``QKClip.gather_checked``) run before the update,
    so a step that raises changes no parameter and no optimizer state.

    Defaults are K2's: lr 2e-4, weight decay 0.1, momentum 0.95 without Nesterov, 5 Newton-Schulz steps in
    bf16, tau 100 (in ``for_model``). ``ns_method="gram"`` runs Gram Newton-Schulz on rectangular matrices
    (``synth.optim.newton_schulz``). Under torch.distributed (DDP: replicated parameters and gradients) each
    rank orthogonalises its FLOP-balanced share of the matrices and the results are all-gathered
    (``synth.optim.distributed``; ``distributed=False`` turns it off). ``fuse_diagonal=True`` trades
    Newton-Schulz accuracy for speed (see ``newton_schulz_batched``). ``fused=False`` keeps the elementwise work
    in plain torch ops instead of the Triton kernels of ``synth.optim.fused`` (CUDA only; same numerics up to
    the fp32 norm's summation order).
    """

    def __init__(
        self,
        params: Iterable[dict[str, Any]],
        lr: float = K2_LR,
        weight_decay: float = K2_WEIGHT_DECAY,
        momentum: float = K2_MOMENTUM,
        nesterov: bool = False,
        ns_steps: int = 5,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = NS_EPS,
        ns_dtype: torch.dtype = torch.bfloat16,
        rms_scale: float = 0.2,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-8,
        qk_clip: QKClip | None = None,
        fused_adamw: bool | None = None,
        max_stack_numel: int = DEFAULT_MAX_STACK_NUMEL,
        fuse_diagonal: bool = False,
        fused: bool = True,
        ns_method: str = "standard",
        distributed: bool | None = None,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        check_method(ns_method)
        if lr < 0:
            raise ValueError(f"lr must be >= 0; got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1); got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
        if ns_steps < 1:
            raise ValueError(f"ns_steps must be >= 1; got {ns_steps}")
        groups = list(params)
        if not groups or not all(isinstance(g, dict) for g in groups):
            raise ValueError(
                "MuonClip takes parameter groups that say which rule they use (use_muon=True/False); "
                "build them with synth.optim.split_params(model).param_groups() or use "
                "MuonClip.for_model(model)"
            )
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_steps": ns_steps,
            "ns_coefficients": ns_coefficients,
            "eps": eps,
            "rms_scale": rms_scale,
            "betas": adamw_betas,
            "adamw_eps": adamw_eps,
            "ns_method": ns_method,
        }
        super().__init__(groups, defaults)
        self.ns_dtype = ns_dtype
        self.qk_clip = qk_clip
        self.fused_adamw = fused_adamw
        self.max_stack_numel = max_stack_numel
        self.fuse_diagonal = fuse_diagonal
        self.fused = fused
        self.distributed = distributed
        self.process_group = process_group

    def shards_newton_schulz(self) -> bool:
        """Whether this step shards Newton-Schulz over the ranks: ``distributed=None`` (the default) does when
        torch.distributed is initialised with more than one rank in ``process_group``; ``True`` whenever it is
        initialised (one rank included, which runs the same code path)."""
        if self.distributed is False or not (dist.is_available() and dist.is_initialized()):
            return False
        return self.distributed is True or dist.get_world_size(self.process_group) > 1

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's add_param_group (the constructor calls it for every group too), after checking that the group
        says which rule it takes and that a Muon group holds only matrices."""
        if not isinstance(param_group, dict) or "use_muon" not in param_group:
            raise ValueError(
                "every MuonClip parameter group needs use_muon=True (hidden matrices) or use_muon=False "
                "(embeddings, head, norms, biases); build the groups with "
                "synth.optim.split_params(model).param_groups(), or add the key to this group "
                f"(its keys: {sorted(param_group) if isinstance(param_group, dict) else type(param_group).__name__})"
            )
        if not isinstance(param_group["use_muon"], bool):
            raise ValueError(f"use_muon must be True or False; got {param_group['use_muon']!r}")
        if param_group["use_muon"]:
            params = param_group["params"]
            params = [params] if isinstance(params, Tensor) else list(params)
            bad = [tuple(p.shape) for p in params if p.ndim not in (2, 3)]
            if bad:
                raise ValueError(
                    f"Muon groups take 2-D matrices (or 3-D stacks of expert matrices); got shapes {bad[:3]}: "
                    "send these to AdamW (use_muon=False)"
                )
            param_group = {**param_group, "params": params}
        if "ns_method" in param_group:
            check_method(param_group["ns_method"])
        super().add_param_group(param_group)

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        *,
        tau: float | None = K2_TAU,
        adamw_lr: float | None = None,
        family: str | None = None,
        gqa_rule: GqaRule = "query",
        on_nonfinite: OnNonFinite = "raise",
        **kwargs: Any,
    ) -> MuonClip:
        """Split ``model``'s parameters and attach QK-Clip to its attention layers (``tau=None``: no clip).

        ``on_nonfinite``: a NaN or infinite max logit raises (``"raise"``) or leaves those heads unclipped with a
        counted warning (``"skip"``); see ``QKClip``.

        A Hugging Face model must have its attention switched to a capturing implementation first
        (``synth.optim.hf.install_capture(model)``): its own attention never records max logits, so the clip
        would never fire. That raises here rather than clipping nothing.
        """
        overrides = {} if adamw_lr is None else {"lr": adamw_lr}
        clip = None
        if tau is not None:
            from synth.optim.families import attention_specs, require_capture

            specs = attention_specs(model, family)
            require_capture(model, specs)
            clip = QKClip(specs, tau=tau, gqa_rule=gqa_rule, on_nonfinite=on_nonfinite)
        return cls(split_params(model).param_groups(**overrides), qk_clip=clip, **kwargs)

    @property
    def last_clip_stats(self) -> ClipStats | None:
        return None if self.qk_clip is None else self.qk_clip.last_stats

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Checked before anything moves: a missing or non-finite max logit raises with the model as it was.
        gathered = None if self.qk_clip is None else self.qk_clip.gather_checked()
        sharded = self.shards_newton_schulz()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if any(g.is_sparse for g in grads):
                raise RuntimeError("MuonClip does not support sparse gradients")
            if group["use_muon"]:
                bufs = []
                for p in params:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    bufs.append(state["momentum_buffer"])
                muon_update_(
                    params,
                    grads,  # type: ignore[arg-type]
                    bufs,
                    lr=group["lr"],
                    weight_decay=group["weight_decay"],
                    momentum=group["momentum"],
                    nesterov=group["nesterov"],
                    ns_steps=group["ns_steps"],
                    ns_coefficients=group["ns_coefficients"],
                    eps=group["eps"],
                    ns_dtype=self.ns_dtype,
                    rms_scale=group["rms_scale"],
                    max_stack_numel=self.max_stack_numel,
                    fuse_diagonal=self.fuse_diagonal,
                    fused=self.fused,
                    # .get: param groups loaded from a state dict saved before ns_method existed lack the key.
                    ns_method=group.get("ns_method", "standard"),
                    distributed=sharded,
                    process_group=self.process_group if sharded else None,
                )
            else:
                exp_avgs, exp_avg_sqs, steps = [], [], []
                for p in params:
                    state = self.state[p]
                    if "step" not in state:
                        fused_here = p.is_cuda if self.fused_adamw is None else self.fused_adamw
                        state["step"] = torch.zeros(
                            (), dtype=torch.float32, device=p.device if fused_here else "cpu"
                        )
                        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    exp_avgs.append(state["exp_avg"])
                    exp_avg_sqs.append(state["exp_avg_sq"])
                    steps.append(state["step"])
                adamw_update_(
                    params,
                    grads,  # type: ignore[arg-type]
                    exp_avgs,
                    exp_avg_sqs,
                    steps,
                    lr=group["lr"],
                    betas=group["betas"],
                    eps=group["adamw_eps"],
                    weight_decay=group["weight_decay"],
                    fused=self.fused_adamw,
                )
        if self.qk_clip is not None:
            self.qk_clip.step(gathered)
        return loss

    def momentum_buffers(self) -> dict[int, Tensor]:
        return {id(p): s["momentum_buffer"] for p, s in self.state.items() if "momentum_buffer" in s}
