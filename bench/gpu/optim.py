"""Optimizer benchmark: MuonClip's Muon step against torch.optim.Muon, Gram Newton-Schulz against the standard
iteration, the cost of max-logit capture and QK-Clip inside a training step, and (under torchrun with 2+ GPUs)
Newton-Schulz sharded over GPUs. Needs only torch and a CUDA GPU.

    python -m bench.gpu.optim --out-dir bench/results                   # from the project root
    torchrun --nproc_per_node 2 -m bench.gpu.optim --distributed --out-dir bench/results

Parameter sets are the hidden matrices (the Muon share) of three real model shapes (the 358M, 973M and 1.6B sets
of SETS), bf16 by default. torch.optim.Muon's time moves by a factor of two between runs (its per-matrix loop is
bound by the host), so every variant is timed in interleaved rounds in one process (A, B, C, A, B, C, ...: CUDA-
event means over ``--steps`` steps per round) and medians over the rounds are reported, with ratios from the same
rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from synth.optim import MuonClip, QKClip, attention_specs, newton_schulz_batched
from synth.optim.capture import enable_capture
from synth.optim.distributed import ns_flops
from synth.optim.newton_schulz import newton_schulz_iterate, uses_gram
from synth.optim.reference_model import TinyDecoder, TinyDecoderConfig


@dataclass(frozen=True)
class ParamSet:
    name: str
    layers: int
    hidden: int
    mlp: int
    heads: int
    kv_heads: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def shapes(self) -> list[tuple[int, int]]:
        kv = self.kv_heads * self.head_dim
        per_layer = [
            (self.hidden, self.hidden),  # q
            (kv, self.hidden),  # k
            (kv, self.hidden),  # v
            (self.hidden, self.hidden),  # o
            (self.mlp, self.hidden),  # gate
            (self.mlp, self.hidden),  # up
            (self.hidden, self.mlp),  # down
        ]
        return per_layer * self.layers

    def numel(self) -> int:
        return sum(a * b for a, b in self.shapes())

    def ns_flops(self, steps: int = 5, method: str = "standard") -> float:
        return sum(ns_flops(a, b, steps, method) for a, b in self.shapes())


SETS = {
    "358M": ParamSet("358M", layers=24, hidden=896, mlp=4864, heads=14, kv_heads=2),
    "973M": ParamSet("973M", layers=16, hidden=2048, mlp=8192, heads=32, kv_heads=8),
    "1.6B": ParamSet("1.6B", layers=8, hidden=4096, mlp=11008, heads=32, kv_heads=32),
}


def cuda_time(fn: Callable[[], object], steps: int, warmup: int) -> float:
    """Mean milliseconds per call, CUDA events around ``steps`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / steps


def gpu_busy_time(fn: Callable[[], object], steps: int, warmup: int) -> float:
    """Milliseconds per call that GPU kernels ran (profiler sum of kernel durations). Unlike wall time it does
    not move with the host's load: an eager training step of this size is partly bound by kernel launches."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    total_us = sum(
        getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0)
        for e in prof.key_averages()
    )
    return total_us / 1e3 / steps


def matmul_peak(steps: int = 10) -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = cuda_time(lambda: a @ b, steps, 3)
    return 2 * 8192**3 / (ms * 1e-3) / 1e12


def _variants() -> dict[str, Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]]:
    group = lambda ps: [{"params": ps, "use_muon": True}]  # noqa: E731
    return {
        "torch_muon_ms": lambda ps: torch.optim.Muon(
            ps, lr=2e-4, weight_decay=0.1, momentum=0.95, adjust_lr_fn="match_rms_adamw"
        ),
        "muonclip_ms": lambda ps: MuonClip(group(ps), lr=2e-4),
        "muonclip_gram_ms": lambda ps: MuonClip(group(ps), lr=2e-4, ns_method="gram"),
        "muonclip_fused_diag_ms": lambda ps: MuonClip(group(ps), lr=2e-4, fuse_diagonal=True),
        "muonclip_gram_fused_diag_ms": lambda ps: MuonClip(group(ps), lr=2e-4, ns_method="gram", fuse_diagonal=True),
    }


def bench_set(ps: ParamSet, dtype: torch.dtype, steps: int, warmup: int, rounds: int) -> dict:
    """Every variant's optimizer is built once (its own momentum state over the same parameters) and timed in
    interleaved rounds; medians over rounds, ratios against torch.optim.Muon's median."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, device="cuda", dtype=dtype) * 0.02) for s in ps.shapes()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opts = {key: make(params) for key, make in _variants().items()}
    for opt in opts.values():
        for _ in range(warmup):
            opt.step()
    times: dict[str, list[float]] = {k: [] for k in opts}
    for _ in range(rounds):
        for key, opt in opts.items():
            times[key].append(cuda_time(opt.step, steps, 1))
    med = {k: statistics.median(v) for k, v in times.items()}
    row: dict = {
        "set": ps.name,
        "params_M": ps.numel() / 1e6,
        "dtype": str(dtype).split(".")[-1],
        "interleaved": True,
        "rounds": rounds,
        "steps_per_round": steps,
        **med,
        "ratio": med["muonclip_ms"] / med["torch_muon_ms"],
    }
    for key in med:
        if key not in ("torch_muon_ms", "muonclip_ms"):
            row[key.removesuffix("_ms") + "_ratio"] = med[key] / med["torch_muon_ms"]
    row["round_times_ms"] = times
    del opts
    opt_a = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.1, fused=True)
    row["fused_adamw_ms"] = cuda_time(opt_a.step, steps, warmup)
    del opt_a
    params.clear()  # free the set before the next one
    torch.cuda.empty_cache()
    row["ns_tflop"] = ps.ns_flops() / 1e12
    row["ns_tflop_gram"] = ps.ns_flops(method="gram") / 1e12
    row["muonclip_tflops"] = ps.ns_flops() / (med["muonclip_ms"] * 1e-3) / 1e12
    row["torch_muon_tflops"] = ps.ns_flops() / (med["torch_muon_ms"] * 1e-3) / 1e12
    return row


def _gradient_like(n: int, rows: int, cols: int, decay: float | None, seed: int) -> torch.Tensor:
    """fp64 stack on the GPU; ``decay``: singular values log-spaced from 1 down to it (random singular vectors)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(n, rows, cols, device="cuda", dtype=torch.float64, generator=g)
    if decay is None:
        return x
    m = min(rows, cols)
    u = torch.linalg.qr(torch.randn(n, rows, m, device="cuda", dtype=torch.float64, generator=g)).Q
    v = torch.linalg.qr(torch.randn(n, cols, m, device="cuda", dtype=torch.float64, generator=g)).Q
    s = torch.logspace(0, math.log10(decay), m, device="cuda", dtype=torch.float64)
    return (u * s) @ v.mT


def bench_gram(steps: int, rounds: int) -> list[dict]:
    """Per matrix shape of the three sets: Newton-Schulz alone on a stack (as many matrices as one layer of the
    set has of that shape), standard against Gram in bf16, interleaved; and each one's relative deviation from
    the fp64 standard iteration on Gaussian and on decaying (1 to 1e-3) spectra."""
    rows = []
    seen: set[tuple[int, int]] = set()
    for ps in SETS.values():
        per_layer = ps.shapes()[: len(ps.shapes()) // ps.layers]
        for shape in per_layer:
            if shape in seen or not uses_gram(*shape, "gram"):
                continue
            seen.add(shape)
            n = per_layer.count(shape)
            x = _gradient_like(n, *shape, None, 0).to(torch.bfloat16)
            fns = {
                "standard": lambda x=x: newton_schulz_batched(x, 5),
                "gram": lambda x=x: newton_schulz_batched(x, 5, method="gram"),
            }
            times: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(rounds):
                for k, fn in fns.items():
                    times[k].append(cuda_time(fn, steps, 2))
            row: dict = {"shape": list(shape), "stack": n}
            for k, v in times.items():
                row[f"{k}_ms"] = statistics.median(v)
            row["gram_over_standard"] = row["gram_ms"] / row["standard_ms"]
            for decay in (None, 1e-3):
                ref_in = _gradient_like(2, *shape, decay, 1)
                ref_in = ref_in / ref_in.norm(dim=(1, 2), keepdim=True)
                exact = newton_schulz_iterate(ref_in, 5)
                tag = "gauss" if decay is None else "decay1e-3"
                for method in ("standard", "gram"):
                    out = newton_schulz_batched(ref_in.float(), 5, method=method).double()
                    row[f"{method}_dev_{tag}"] = float((out - exact).norm() / exact.norm())
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def bench_capture(steps: int, warmup: int, batch: int, seq: int, rounds: int) -> dict[str, float | str]:
    """A training step of a 358M-shaped decoder (bf16): plain flex, flex + max-logit capture + QK-Clip, and
    SDPA."""
    cfg = TinyDecoderConfig(
        vocab_size=32000,
        d_model=896,
        n_layers=24,
        n_heads=14,
        n_kv_heads=2,
        head_dim=64,
        d_mlp=4864,
        attention="gqa",
        backend="flex",
    )
    torch.manual_seed(0)
    model = TinyDecoder(cfg).cuda().to(torch.bfloat16)
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq + 1), device="cuda")
    specs = attention_specs(model)
    clip = QKClip(specs, tau=100.0)
    opt = MuonClip.for_model(model, tau=None)

    def train_step(with_clip: bool) -> None:
        model.loss(tokens).backward()
        opt.step()
        if with_clip:
            clip.step()
        opt.zero_grad(set_to_none=False)

    def set_capture(on: bool) -> None:
        for s in specs:
            enable_capture(s.module, on)

    row: dict[str, float | str] = {"model": "358M-shaped GQA decoder, bf16", "batch": batch, "seq": seq}
    variants = {
        "flex": (False, False),
        "capture": (True, False),
        "capture_clip": (True, True),
    }
    # Wall time: interleaved rounds, median of each variant (the host's load moves it by 20%). GPU time (the
    # kernels' own durations) is the stable measure of what capture and clip add.
    walls: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, (capture, with_clip) in variants.items():
            set_capture(capture)
            walls[name].append(cuda_time(lambda w=with_clip: train_step(w), steps, warmup))
    gpu: dict[str, float] = {}
    for name, (capture, with_clip) in variants.items():
        set_capture(capture)
        gpu[name] = gpu_busy_time(lambda w=with_clip: train_step(w), steps, warmup)
    wall = {k: statistics.median(v) for k, v in walls.items()}
    row["rounds"] = rounds
    row["round_times_ms"] = walls  # type: ignore[assignment]
    for name in variants:
        row[f"step_{name}_ms"] = wall[name]
        row[f"gpu_{name}_ms"] = gpu[name]

    def clip_alone() -> None:
        for s in specs:  # stand-in maxima so every call has something to clip
            s.module.qk_max_logits = torch.full((cfg.n_heads,), 150.0, device="cuda")
        clip.step()

    row["clip_only_ms"] = cuda_time(clip_alone, steps, warmup)
    row["gpu_clip_only_ms"] = gpu_busy_time(clip_alone, steps, warmup)
    set_capture(False)
    for layer in model.layers:
        layer.attn.cfg = TinyDecoderConfig(**{**cfg.__dict__, "backend": "eager"})
    row["step_sdpa_ms"] = cuda_time(lambda: train_step(False), steps, warmup)
    row["optimizer_step_ms"] = cuda_time(opt.step, steps, warmup)
    row["capture_clip_overhead_pct"] = 100 * (wall["capture_clip"] - wall["flex"]) / wall["flex"]
    row["gpu_capture_clip_overhead_pct"] = 100 * (gpu["capture_clip"] - gpu["flex"]) / gpu["flex"]
    row["clip_share_pct"] = 100 * float(row["clip_only_ms"]) / wall["capture_clip"]
    return row


def profile_step(ps: ParamSet, dtype: torch.dtype) -> str:
    """Top CUDA kernels of one MuonClip step (where the time goes)."""
    from torch.profiler import ProfilerActivity, profile

    params = [torch.nn.Parameter(torch.randn(s, device="cuda", dtype=dtype) * 0.02) for s in ps.shapes()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt = MuonClip([{"params": params, "use_muon": True}], lr=2e-4)
    for _ in range(2):
        opt.step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            opt.step()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=60)


def machine_info() -> dict[str, str]:
    return {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "python": platform.python_version(),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
    }


def to_markdown(info: dict[str, str], peak: float, rows: list[dict], gram: list[dict], cap: dict | None) -> str:
    lines = [
        f"# Optimizer benchmark ({info['gpu']}, torch {info['torch']}, {info['date_utc']} UTC)",
        "",
        f"bf16 8192^3 matmul peak measured in the same run: {peak:.0f} TFLOP/s. Interleaved rounds in one process, "
        "medians over rounds; every ratio is to torch.optim.Muon's median in the same rounds.",
        "",
        "| set | params | dtype | rounds | torch.optim.Muon | MuonClip (default) | ratio | ns_method=gram "
        "| fuse_diagonal | gram + fuse_diagonal | fused AdamW | NS work (gram) | default TFLOP/s (% of peak) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['params_M']:.0f} M | {r['dtype']} | {r['rounds']} | {r['torch_muon_ms']:.1f} ms | "
            f"{r['muonclip_ms']:.1f} ms | {r['ratio']:.2f} | "
            f"{r['muonclip_gram_ms']:.1f} ms ({r['muonclip_gram_ratio']:.2f}) | "
            f"{r['muonclip_fused_diag_ms']:.1f} ms ({r['muonclip_fused_diag_ratio']:.2f}) | "
            f"{r['muonclip_gram_fused_diag_ms']:.1f} ms ({r['muonclip_gram_fused_diag_ratio']:.2f}) | "
            f"{r['fused_adamw_ms']:.1f} ms | {r['ns_tflop']:.1f} ({r['ns_tflop_gram']:.1f}) TFLOP | "
            f"{r['muonclip_tflops']:.0f} ({100 * r['muonclip_tflops'] / peak:.0f}%) |"
        )
    if gram:
        lines += [
            "",
            "Newton-Schulz alone, one layer's stack of each rectangular shape, bf16 (medians of interleaved rounds), "
            "and the relative deviation from the fp64 iteration:",
            "",
            "| shape | stack | standard | gram | gram / standard | deviation, Gaussian: standard / gram "
            "| deviation, spectrum 1..1e-3: standard / gram |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for g in gram:
            lines.append(
                f"| {g['shape'][0]} x {g['shape'][1]} | {g['stack']} | {g['standard_ms']:.2f} ms | "
                f"{g['gram_ms']:.2f} ms | {g['gram_over_standard']:.2f} | "
                f"{g['standard_dev_gauss']:.4f} / {g['gram_dev_gauss']:.4f} | "
                f"{g['standard_dev_decay1e-3']:.4f} / {g['gram_dev_decay1e-3']:.4f} |"
            )
    if cap:
        lines += [
            "",
            f"Capture + clip in a training step ({cap['model']}, batch {cap['batch']} x {cap['seq']} tokens):",
            "",
            "| | step, flex, no capture | + capture | + capture + QK-Clip | capture + clip overhead | QK-Clip alone |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| GPU time (kernel durations) | {cap['gpu_flex_ms']:.1f} ms | {cap['gpu_capture_ms']:.1f} ms | "
            f"{cap['gpu_capture_clip_ms']:.1f} ms | {cap['gpu_capture_clip_overhead_pct']:.2f}% | "
            f"{cap['gpu_clip_only_ms']:.2f} ms |",
            f"| wall time (median of {cap['rounds']} rounds) | {cap['step_flex_ms']:.1f} ms | "
            f"{cap['step_capture_ms']:.1f} ms | {cap['step_capture_clip_ms']:.1f} ms | "
            f"{cap['capture_clip_overhead_pct']:.2f}% | {cap['clip_only_ms']:.2f} ms ({cap['clip_share_pct']:.1f}%) |",
            "",
            f"Same step with SDPA instead of flex (no capture): {cap['step_sdpa_ms']:.1f} ms; "
            f"the optimizer step alone: {cap['optimizer_step_ms']:.1f} ms.",
        ]
    return "\n".join(lines) + "\n"


def bench_distributed(args: argparse.Namespace) -> None:
    """Under torchrun: each rank holds the whole parameter set (DDP's replicas) and times MuonClip's step with
    Newton-Schulz sharded over the ranks against the same step unsharded (what one GPU does), interleaved."""
    import torch.distributed as dist

    # One GPU per rank, chosen before NCCL starts (it binds to the current device).
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    info = {**machine_info(), "world_size": str(world)}
    rows = []
    for name in args.sets.split(","):
        ps = SETS[name]
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, device="cuda", dtype=torch.bfloat16) * 0.02) for s in ps.shapes()]
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        opts = {
            "step_ms_1gpu": MuonClip([{"params": params, "use_muon": True}], lr=2e-4, distributed=False),
            f"step_ms_{world}gpu": MuonClip([{"params": params, "use_muon": True}], lr=2e-4),
        }
        assert opts[f"step_ms_{world}gpu"].shards_newton_schulz()
        for opt in opts.values():
            for _ in range(args.warmup):
                opt.step()
        times: dict[str, list[float]] = {k: [] for k in opts}
        for _ in range(args.rounds):
            for key, opt in opts.items():
                dist.barrier()
                times[key].append(cuda_time(opt.step, args.steps, 1))
        med = {k: statistics.median(v) for k, v in times.items()}
        # The slowest rank sets the step time.
        t = torch.tensor(list(med.values()), device="cuda")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        row = {"set": name, "dtype": "bfloat16", "interleaved": True, "rounds": args.rounds}
        row.update(dict(zip(med, t.tolist(), strict=True)))
        row["ratio"] = row[f"step_ms_{world}gpu"] / row["step_ms_1gpu"]
        rows.append(row)
        if rank == 0:
            print(json.dumps(row), flush=True)
        del opts
        params.clear()
        torch.cuda.empty_cache()
    if rank == 0:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"optim_bench_{world}gpu_" + info["gpu"].replace(" ", "_").replace("/", "_")
        (args.out_dir / f"{stem}.json").write_text(json.dumps({"machine": info, "sets": rows}, indent=2))
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=Path("bench/results"))
    ap.add_argument("--sets", default="358M,973M,1.6B", help=f"comma list of {sorted(SETS)}")
    ap.add_argument("--dtypes", default="bfloat16", help="comma list of parameter dtypes: bfloat16, float32")
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps per timed round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per set; medians are reported")
    ap.add_argument("--gram-rounds", type=int, default=5, help="rounds of the Newton-Schulz-alone timing (0: skip)")
    # Batch 8 x 2048 keeps the GPU the bottleneck, as in real training: at batch 4 this eager model is partly
    # bound by kernel launches and its wall time moves with the host's load.
    ap.add_argument("--capture-batch", type=int, default=8, help="0 skips the capture benchmark")
    ap.add_argument("--capture-seq", type=int, default=2048)
    ap.add_argument("--capture-rounds", type=int, default=7, help="interleaved rounds; medians are reported")
    ap.add_argument("--profile", default="", help="print a kernel profile of one set's MuonClip step, e.g. 358M")
    ap.add_argument("--distributed", action="store_true", help="under torchrun: sharded vs unsharded step")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench.gpu.optim needs a CUDA GPU; run it on the GPU machine (make bench-optim)")
    unknown = [s for s in args.sets.split(",") if s not in SETS]
    if unknown:
        raise SystemExit(f"unknown parameter sets {unknown}; supported: {sorted(SETS)}")
    dtypes = {"bfloat16": torch.bfloat16, "float32": torch.float32}
    bad = [d for d in args.dtypes.split(",") if d not in dtypes]
    if bad:
        raise SystemExit(f"unknown dtypes {bad}; supported: {sorted(dtypes)}")
    if args.distributed:
        bench_distributed(args)
        return
    info = machine_info()
    peak = matmul_peak()
    print(f"{info}  peak {peak:.0f} TFLOP/s", flush=True)
    if args.profile:
        print(profile_step(SETS[args.profile], torch.bfloat16), flush=True)
    rows = []
    for name in args.sets.split(","):
        for dname in args.dtypes.split(","):
            row = bench_set(SETS[name], dtypes[dname], args.steps, args.warmup, args.rounds)
            print(json.dumps({k: v for k, v in row.items() if k != "round_times_ms"}), flush=True)
            rows.append(row)
    gram = bench_gram(args.steps, args.gram_rounds) if args.gram_rounds else []
    cap = (
        bench_capture(args.steps, args.warmup, args.capture_batch, args.capture_seq, args.capture_rounds)
        if args.capture_batch
        else None
    )
    if cap:
        print(json.dumps(cap), flush=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "optim_bench_" + info["gpu"].replace(" ", "_").replace("/", "_")
    (args.out_dir / f"{stem}.json").write_text(
        json.dumps(
            {"machine": info, "matmul_peak_tflops": peak, "sets": rows, "gram_newton_schulz": gram, "capture": cap},
            indent=2,
        )
    )
    md = to_markdown(info, peak, rows, gram, cap)
    (args.out_dir / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
