from __future__ import annotations

import torch

from synth.optim.reference_model import TinyDecoder, TinyDecoderConfig


def tiny(attention: str = "mha", layers: int = 1, bias: bool = False, seed: int = 0) -> TinyDecoder:
    torch.manual_seed(seed)
    cfg = TinyDecoderConfig(
        d_model=32,
        n_layers=layers,
        n_heads=4,
        n_kv_heads=2 if attention == "gqa" else 4,
        head_dim=8,
        d_mlp=64,
        nope_dim=8,
        rope_dim=4,
        v_head_dim=8,
        kv_rank=16,
        attention=attention,
        qkv_bias=bias,  # type: ignore[arg-type]
    )
    return TinyDecoder(cfg).double()


def tokens(batch: int = 2, seq: int = 17, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, seq), generator=g)


def fp64_newton_schulz(grad, ns_coefficients, ns_steps, eps, *_ignored):
    """The reference: torch's Newton-Schulz written out in fp64."""
    a, b, c = ns_coefficients
    x = grad.double()
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(ns_steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def ddp_train(rank: int, world: int, init_file: str, out_path: str, steps: int, tau: float) -> None:
    """One rank of the DDP check: half of each batch per rank, gloo, MuonClip with QK-Clip."""
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP

    from synth.optim import MuonClip

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = tiny("gqa")
        ddp = DDP(model)
        opt = MuonClip.for_model(model, tau=tau, lr=0.01, ns_dtype=torch.float64)
        for step in range(steps):
            full = tokens(batch=4, seed=10 + step)
            part = full.chunk(world)[rank]
            logits = ddp(part[:, :-1])
            F.cross_entropy(logits.reshape(-1, logits.size(-1)), part[:, 1:].reshape(-1)).backward()
            opt.step()
            opt.zero_grad()
        if rank == 0:
            torch.save({k: v.clone() for k, v in model.state_dict().items()}, out_path)
    finally:
        dist.destroy_process_group()
