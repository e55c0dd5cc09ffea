"""Newton-Schulz sharded over ranks (gloo, 2 CPU processes) ends where one process ends, in fp64; the FLOP
balance of the assignment; ranks with different matrices are refused."""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from pathlib import Path

import pytest
import torch

from synth.optim import MuonClip
from synth.optim.distributed import assign_owners, ns_flops

# Mixed shapes (wide, tall, square, one 3-D expert stack) so the assignment splits same-shape stacks over ranks.
SHAPES = [(8, 40), (40, 8), (16, 16), (8, 40), (12, 30), (16, 16), (3, 10, 6), (24, 24)]
STEPS = 3


def _params() -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, dtype=torch.float64, generator=g)) for s in SHAPES]


def _grads(step: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(s, dtype=torch.float64, generator=g) for s in SHAPES]


def _train(ps: list[torch.nn.Parameter], ns_method: str, **kwargs) -> None:
    opt = MuonClip([{"params": ps, "use_muon": True}], lr=0.02, ns_dtype=torch.float64, ns_method=ns_method, **kwargs)
    for step in range(STEPS):
        for p, g in zip(ps, _grads(step)[: len(ps)], strict=True):
            p.grad = g.clone()
        opt.step()


def _worker(rank: int, world: int, init: str, out: str, ns_method: str, bad_layout: bool) -> None:
    import torch.distributed as dist

    # A forked child must not enter the OpenMP pool that the parent may have started (it would wait forever for
    # threads that fork did not copy); with one thread torch runs its CPU kernels inline.
    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
        ps = _params()
        if bad_layout and rank == 1:
            ps = ps[:-1]
        calls = []
        from synth.optim import distributed as d

        orig = d.newton_schulz_batched

        def counting(x, *a, **k):
            calls.append(x.size(0))
            return orig(x, *a, **k)

        d.newton_schulz_batched = counting
        try:
            _train(ps, ns_method)
        except RuntimeError as exc:
            torch.save({"error": str(exc)}, f"{out}.{rank}")
            return
        torch.save({"params": [p.detach() for p in ps], "matrices": sum(calls)}, f"{out}.{rank}")
    except Exception:
        torch.save({"error": traceback.format_exc()}, f"{out}.{rank}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _run_ranks(tmp_path: Path, ns_method: str, bad_layout: bool = False) -> list[dict]:
    # fork, not spawn: the children inherit the imported torch (spawning two fresh interpreters costs a minute
    # on a busy 2-core machine).
    ctx = mp.get_context("fork")
    out = str(tmp_path / "rank")
    procs = [
        ctx.Process(target=_worker, args=(r, 2, str(tmp_path / "init"), out, ns_method, bad_layout))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0, p.exitcode
    return [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]


@pytest.mark.skipif(os.name != "posix", reason="needs fork")
@pytest.mark.parametrize("ns_method", ["standard", "gram"])
def test_two_ranks_equal_one_process_in_fp64(tmp_path: Path, ns_method: str) -> None:
    results = _run_ranks(tmp_path, ns_method)
    for r in results:
        assert "error" not in r, r.get("error")
    ref = _params()
    _train(ref, ns_method, distributed=False)
    for r in results:
        for got, want in zip(r["params"], ref, strict=True):
            torch.testing.assert_close(got, want.detach(), rtol=1e-12, atol=1e-13)
    # Each rank orthogonalised only its share of the 10 matrices (7 plus 3 experts) in each step.
    matrices = [s[-2:] for s in SHAPES for _ in range(s[0] if len(s) == 3 else 1)]
    owner = assign_owners(matrices, 2, method=ns_method)  # type: ignore[arg-type]
    counts = [r["matrices"] for r in results]
    assert counts == [STEPS * owner.count(0), STEPS * owner.count(1)] and min(counts) > 0, counts


@pytest.mark.skipif(os.name != "posix", reason="needs fork")
def test_ranks_with_different_matrices_are_refused(tmp_path: Path) -> None:
    results = _run_ranks(tmp_path, "standard", bad_layout=True)
    # Both raise; a rank that exits first may cut the other's last gloo read short (then it reports that).
    errors = [r.get("error", "") for r in results]
    assert all(errors) and any("same Muon matrices" in e for e in errors), errors


def test_assignment_balances_flops() -> None:
    # The 1.6B benchmark set: 8 layers of four 4096^2 and three 4096 x 11008 matrices.
    shapes = [(4096, 4096)] * 32 + [(11008, 4096)] * 16 + [(4096, 11008)] * 8
    for world in (2, 4):
        owner = assign_owners(shapes, world)
        load = [sum(ns_flops(*s) for s, o in zip(shapes, owner, strict=True) if o == r) for r in range(world)]
        assert max(load) / (sum(load) / world) < 1.05, load
    assert assign_owners(shapes, 2) == assign_owners(list(shapes), 2)  # deterministic
