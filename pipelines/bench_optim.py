"""Optimizer benchmark: MuonClip's Muon step against torch.optim.Muon and fused AdamW, plus the cost of
max-logit capture and QK-Clip inside a training step. Needs only torch and a CUDA GPU.

    python pipelines/bench_optim.py --out-dir bench/results

Parameter sets are the hidden matrices (the Muon share) of three real model shapes (DESIGN.md section 6).
Timings are CUDA-event means over ``--steps`` steps after ``--warmup`` steps, with fixed random gradients.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth.optim import MuonClip, QKClip, attention_specs
from synth.optim.capture import enable_capture
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

    def ns_flops(self, steps: int = 5) -> float:
        total = 0.0
        for a, b in self.shapes():
            m, n = min(a, b), max(a, b)
            total += steps * (4 * m * m * n + 2 * m**3)
        return total


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


def bench_set(ps: ParamSet, dtype: torch.dtype, steps: int, warmup: int, rounds: int) -> dict[str, float | str]:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, device="cuda", dtype=dtype) * 0.02) for s in ps.shapes()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    row: dict[str, float | str] = {
        "set": ps.name,
        "params_M": ps.numel() / 1e6,
        "dtype": str(dtype).split(".")[-1],
    }

    # Interleaved rounds, best of each: torch.optim.Muon's time moves by 20% between runs (its per-matrix
    # loop is bound by kernel launches), so a single round can flatter either side.
    best: dict[str, float] = {}

    def timed(key: str, make: Callable[[], torch.optim.Optimizer]) -> None:
        opt = make()
        best[key] = min(best.get(key, float("inf")), cuda_time(opt.step, steps, warmup))
        del opt
        torch.cuda.empty_cache()

    for _ in range(rounds):
        timed(
            "torch_muon_ms",
            lambda: torch.optim.Muon(params, lr=2e-4, weight_decay=0.1, momentum=0.95, adjust_lr_fn="match_rms_adamw"),
        )
        timed("muonclip_ms", lambda: MuonClip([{"params": params, "use_muon": True}], lr=2e-4))
        timed(
            "muonclip_unfused_ms",
            lambda: MuonClip([{"params": params, "use_muon": True}], lr=2e-4, fused=False),
        )
        timed(
            "muonclip_fused_diag_ms",
            lambda: MuonClip([{"params": params, "use_muon": True}], lr=2e-4, fuse_diagonal=True),
        )
    row.update(best)

    opt_a = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.1, fused=True)
    row["fused_adamw_ms"] = cuda_time(opt_a.step, steps, warmup)
    del opt_a
    params.clear()  # free the set before the next one
    torch.cuda.empty_cache()

    row["ns_tflop"] = ps.ns_flops() / 1e12
    row["muonclip_tflops"] = ps.ns_flops() / (float(row["muonclip_ms"]) * 1e-3) / 1e12
    row["torch_muon_tflops"] = ps.ns_flops() / (float(row["torch_muon_ms"]) * 1e-3) / 1e12
    row["speedup_vs_torch"] = float(row["torch_muon_ms"]) / float(row["muonclip_ms"])
    return row


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


def to_markdown(info: dict[str, str], peak: float, rows: list[dict], cap: dict | None) -> str:
    lines = [
        f"# Optimizer benchmark ({info['gpu']}, torch {info['torch']}, {info['date_utc']} UTC)",
        "",
        f"bf16 8192^3 matmul peak measured in the same run: {peak:.0f} TFLOP/s.",
        "",
        "| set | params | dtype | torch.optim.Muon | MuonClip (ours) | ours / torch "
        "| ours, fused=False (torch elementwise ops) | ours, fuse_diagonal=True | fused AdamW | NS work "
        "| ours TFLOP/s | ours % of peak |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['params_M']:.0f} M | {r['dtype']} | {r['torch_muon_ms']:.1f} ms | "
            f"{r['muonclip_ms']:.1f} ms | {r['muonclip_ms'] / r['torch_muon_ms']:.2f} | "
            f"{r['muonclip_unfused_ms']:.1f} ms ({r['muonclip_unfused_ms'] / r['torch_muon_ms']:.2f}) | "
            f"{r['muonclip_fused_diag_ms']:.1f} ms ({r['muonclip_fused_diag_ms'] / r['torch_muon_ms']:.2f}) "
            f"| {r['fused_adamw_ms']:.1f} ms | {r['ns_tflop']:.1f} TFLOP | {r['muonclip_tflops']:.0f} | "
            f"{100 * r['muonclip_tflops'] / peak:.0f}% |"
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=Path("bench/results"))
    ap.add_argument("--sets", default="358M,973M,1.6B", help=f"comma list of {sorted(SETS)}")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per set; the best of each is kept")
    ap.add_argument("--bf16-sets", default="358M", help="sets also timed with bf16 parameters ('' for none)")
    # Batch 8 x 2048 keeps the GPU the bottleneck, as in real training: at batch 4 this eager model is partly
    # bound by kernel launches and its wall time moves with the host's load.
    ap.add_argument("--capture-batch", type=int, default=8, help="0 skips the capture benchmark")
    ap.add_argument("--capture-seq", type=int, default=2048)
    ap.add_argument("--capture-rounds", type=int, default=7, help="interleaved rounds; medians are reported")
    ap.add_argument("--profile", default="", help="print a kernel profile of one set's MuonClip step, e.g. 358M")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_optim needs a CUDA GPU; run it on the GPU machine (make bench-optim)")
    unknown = [s for s in args.sets.split(",") if s not in SETS]
    if unknown:
        raise SystemExit(f"unknown parameter sets {unknown}; supported: {sorted(SETS)}")
    info = machine_info()
    peak = matmul_peak()
    print(f"{info}  peak {peak:.0f} TFLOP/s", flush=True)
    if args.profile:
        print(profile_step(SETS[args.profile], torch.float32), flush=True)
    rows = []
    for name in args.sets.split(","):
        dtypes = [torch.float32] + ([torch.bfloat16] if name in args.bf16_sets.split(",") else [])
        for dtype in dtypes:
            row = bench_set(SETS[name], dtype, args.steps, args.warmup, args.rounds)
            print(json.dumps(row), flush=True)
            rows.append(row)
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
        json.dumps({"machine": info, "matmul_peak_tflops": peak, "sets": rows, "capture": cap}, indent=2)
    )
    md = to_markdown(info, peak, rows, cap)
    (args.out_dir / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
