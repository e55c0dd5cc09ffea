"""MuonClip study: train one small decoder from scratch three times (AdamW, Muon, MuonClip) at one learning
rate and record the max attention logit and the loss per step (the K2 report's figure 2, in small).

The corpus is the Python standard library's own source files, read as bytes (vocabulary 256), so it exists on
any machine with Python and nothing is downloaded. Needs torch; matplotlib only for the plots, which can also
be made later from the metrics JSON:

    python pipelines/muonclip_study.py --out-dir bench/results/muonclip_study          # train + plot
    python pipelines/muonclip_study.py --plot-only bench/results/muonclip_study/metrics.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import sys
import sysconfig
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth.optim import MuonClip, QKClip, attention_specs, split_params
from synth.optim.reference_model import TinyDecoder, TinyDecoderConfig

RUNS = ("adamw", "muon", "muonclip")


def load_corpus(max_bytes: int) -> torch.Tensor:
    """Bytes of the stdlib's .py files in a fixed order (sorted paths), capped at ``max_bytes``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    chunks, total = [], 0
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        chunks.append(data)
        total += len(data)
        if total >= max_bytes:
            break
    if total < 1_000_000:
        raise SystemExit(f"found only {total} bytes of Python sources under {root}; need at least 1 MB")
    return torch.frombuffer(bytearray(b"".join(chunks)[:max_bytes]), dtype=torch.uint8).long()


def batches(data: torch.Tensor, batch: int, seq: int, seed: int, device: str):
    g = torch.Generator().manual_seed(seed)
    while True:
        starts = torch.randint(0, data.numel() - seq - 1, (batch,), generator=g)
        yield torch.stack([data[s : s + seq + 1] for s in starts.tolist()]).to(device, non_blocking=True)


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    # Linear warm-up, constant, then cosine decay over the last 20% (a short WSD, as in K2).
    if step < warmup:
        return peak * (step + 1) / warmup
    decay_start = int(0.8 * total)
    if step < decay_start:
        return peak
    frac = (step - decay_start) / max(1, total - decay_start)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def train_run(name: str, args: argparse.Namespace, train: torch.Tensor, val: torch.Tensor) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    cfg = TinyDecoderConfig(
        vocab_size=256,
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        n_kv_heads=args.heads,
        head_dim=args.d_model // args.heads,
        d_mlp=4 * args.d_model,
        attention="mha",
    )
    model = TinyDecoder(cfg).to(device)
    clip = QKClip(attention_specs(model), tau=args.tau, enabled=(name == "muonclip"))
    if name == "adamw":
        groups = split_params(model)
        opt: torch.optim.Optimizer = torch.optim.AdamW(
            [p for _, p in groups.muon + groups.adamw],
            lr=args.lr,
            betas=(0.9, 0.95),
            weight_decay=0.1,
            fused=device == "cuda",
        )
    else:
        opt = MuonClip(split_params(model).param_groups(), lr=args.lr)
    it = batches(train, args.batch, args.seq, args.seed, device)
    # Several fixed held-out batches: one batch of bytes is too noisy to rank runs that end 1% apart.
    val_iter = batches(val, args.batch, args.seq, args.seed + 1, device)
    val_batches = [next(val_iter) for _ in range(args.val_batches)]
    log: dict[str, list] = {
        "step": [],
        "loss": [],
        "max_logit": [],
        "heads_clipped": [],
        "lr": [],
        "recheck_step": [],
        "recheck_max_logit": [],
    }
    evals: dict[str, list] = {"step": [], "val_loss": []}
    t0 = time.time()
    for step in range(args.steps):
        lr = lr_at(step, args.steps, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        tokens = next(it)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model.loss(tokens)
        loss.backward()
        opt.step()
        stats = clip.step()  # logs max logits for every run; clips only in the MuonClip run
        opt.zero_grad(set_to_none=True)
        if step % args.recheck_every == 0 or step == args.steps - 1:
            # Measure, not assume, what the clip left: the same batch again, through the same capture.
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                model.loss(tokens)
            log["recheck_step"].append(step)
            log["recheck_max_logit"].append(float(clip.gather_table().max()))
            clip.reset()
        log["step"].append(step)
        log["loss"].append(float(loss.detach()))
        log["max_logit"].append(stats.max_logit)
        log["heads_clipped"].append(stats.total_clipped)
        log["lr"].append(lr)
        if step % args.eval_every == 0 or step == args.steps - 1:
            with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                evals["step"].append(step)
                evals["val_loss"].append(sum(float(model.loss(v)) for v in val_batches) / len(val_batches))
            print(
                f"[{name}] step {step} loss {log['loss'][-1]:.4f} val {evals['val_loss'][-1]:.4f} "
                f"max_logit {stats.max_logit:.1f} clipped {stats.total_clipped} ({time.time() - t0:.0f}s)",
                flush=True,
            )
        if not math.isfinite(log["loss"][-1]):
            print(f"[{name}] loss is not finite at step {step}; stopping this run", flush=True)
            break
    return {"train": log, "eval": evals, "seconds": time.time() - t0, "config": cfg.__dict__}


def summarise(metrics: dict) -> str:
    a = metrics["args"]
    lines = [
        f"# MuonClip study ({metrics['machine'].get('gpu', 'cpu')}, torch {metrics['machine']['torch']}, "
        f"{metrics['machine']['date_utc']} UTC)",
        "",
        f"Byte-level decoder ({a['layers']} layers, d_model {a['d_model']}, {a['heads']} heads, MHA), "
        f"stdlib Python sources ({metrics['corpus_bytes'] / 1e6:.1f} MB), batch {a['batch']} x {a['seq']} "
        f"bytes, {a['steps']} steps, peak lr {a['lr']} for all three runs, tau {a['tau']}.",
        "",
        "| run | max logit in forward, peak | same batch re-measured after the step, peak "
        "| max logit, last step | heads clipped (sum over steps) | final train loss (mean of last 50) "
        "| final val loss | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in RUNS:
        r = metrics["runs"].get(name)
        if not r:
            continue
        t = r["train"]
        finite = [x for x in t["max_logit"] if math.isfinite(x)]
        tail = [x for x in t["loss"][-50:] if math.isfinite(x)]
        lines.append(
            f"| {name} | {max(finite):.1f} | {max(t.get('recheck_max_logit') or [float('nan')]):.1f} | "
            f"{t['max_logit'][-1]:.1f} | {sum(t['heads_clipped'])} | "
            f"{sum(tail) / max(1, len(tail)):.4f} | {r['eval']['val_loss'][-1]:.4f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(metrics: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tau = metrics["args"]["tau"]
    colors = {"adamw": "tab:blue", "muon": "tab:red", "muonclip": "tab:green"}
    paths = []
    fig, ax = plt.subplots(figsize=(7, 5.2))
    for name, r in metrics["runs"].items():
        ax.plot(
            r["train"]["step"],
            r["train"]["max_logit"],
            label=f"{name} (in the step's forward)",
            color=colors.get(name),
            lw=1,
        )
        if r["train"].get("recheck_step"):
            ax.plot(
                r["train"]["recheck_step"],
                r["train"]["recheck_max_logit"],
                ls="none",
                marker=".",
                ms=3,
                color=colors.get(name),
                label=f"{name} (same batch after the step)",
            )
    ax.set_yscale("log")
    ax.axhline(tau, ls="--", color="k", lw=1, label=f"tau = {tau:g}")
    ax.set_xlabel("step")
    ax.set_ylabel("max attention logit (all layers, heads)")
    ax.set_title(f"Max attention logit per step (lr {metrics['args']['lr']}, tau {tau:g})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / "max_logit.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in metrics["runs"].items():
        loss = r["train"]["loss"]
        k = 25  # running mean: per-step byte losses are noisy
        smooth = [
            sum(loss[max(0, i - k + 1) : i + 1]) / len(loss[max(0, i - k + 1) : i + 1])
            for i in range(len(loss))
        ]
        # MuonClip's curve lies on Muon's: dash it so both stay visible.
        ax.plot(
            r["train"]["step"],
            smooth,
            label=f"{name} (train, mean of {k})",
            color=colors.get(name),
            ls="--" if name == "muonclip" else "-",
            lw=1.2,
        )
        ax.plot(r["eval"]["step"], r["eval"]["val_loss"], ls=":", marker=".", color=colors.get(name))
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/byte); dotted: held-out")
    ax.set_ylim(0.4, min(3.0, ax.get_ylim()[1]))
    ax.set_title("Loss per step")
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "loss.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=Path("bench/results/muonclip_study"))
    ap.add_argument("--plot-only", type=Path, help="make plots and table from an existing metrics.json")
    ap.add_argument("--runs", default=",".join(RUNS))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--tau", type=float, default=100.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--corpus-mb", type=float, default=40.0)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--val-batches", type=int, default=8, help="held-out batches per evaluation")
    ap.add_argument("--recheck-every", type=int, default=10, help="re-measure max logits after the step")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if args.plot_only:
        metrics = json.loads(args.plot_only.read_text())
        out = args.plot_only.parent
        (out / "results.md").write_text(summarise(metrics))
        print(summarise(metrics))
        print(plot(metrics, out))
        return

    unknown = [r for r in args.runs.split(",") if r not in RUNS]
    if unknown:
        raise SystemExit(f"unknown runs {unknown}; supported: {list(RUNS)}")
    data = load_corpus(int(args.corpus_mb * 1e6))
    split = int(0.95 * data.numel())
    train, val = data[:split], data[split:]
    machine = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
    }
    metrics = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine,
        "corpus_bytes": int(data.numel()),
        "runs": {},
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.runs.split(","):
        metrics["runs"][name] = train_run(name, args, train, val)
        (args.out_dir / "metrics.json").write_text(json.dumps(metrics))
    (args.out_dir / "machine.json").write_text(json.dumps(machine, indent=2))
    (args.out_dir / "results.md").write_text(summarise(metrics))
    print(summarise(metrics))
    try:
        print(plot(metrics, args.out_dir))
    except ImportError:
        print(
            "matplotlib not installed: plots skipped; run again with --plot-only on metrics.json", flush=True
        )


if __name__ == "__main__":
    main()
