"""Under DDP (gloo, 2 CPU processes) MuonClip ends where one process with gradient accumulation ends:
gradients are averaged by DDP, and the max logits are MAX-reduced over ranks exactly as over micro-batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from synth.optim import MuonClip
from tests.fixtures.optim import ddp_train, tiny, tokens

STEPS, TAU = 3, 0.6


# Two spawned processes each import torch: 90-100 s on a busy 2-core machine, hence slow.
@pytest.mark.slow
def test_ddp_on_cpu_equals_one_process(tmp_path: Path) -> None:
    out = tmp_path / "rank0.pt"
    mp.spawn(ddp_train, args=(2, str(tmp_path / "init"), str(out), STEPS, TAU), nprocs=2, join=True)
    distributed = torch.load(out, weights_only=True)

    model = tiny("gqa")
    # fp64 Newton-Schulz: bf16 rounding would magnify the last-bit differences of the gradient all-reduce.
    opt = MuonClip.for_model(model, tau=TAU, lr=0.01, ns_dtype=torch.float64)
    clipped = 0
    for step in range(STEPS):
        for part in tokens(batch=4, seed=10 + step).chunk(2):
            (model.loss(part) / 2).backward()
        opt.step()
        clipped += opt.last_clip_stats.total_clipped  # type: ignore[union-attr]
        opt.zero_grad()
    assert clipped > 0, "pick a tau that clips, or the MAX over ranks is not exercised"
    for name, p in model.state_dict().items():
        torch.testing.assert_close(distributed[name], p, rtol=1e-10, atol=1e-12, msg=name)
