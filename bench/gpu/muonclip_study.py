"""MuonClip study: train one small decoder from scratch with AdamW, Muon and MuonClip (standard and Gram
Newton-Schulz), three seeds each, in two settings, and record the max attention logit and the loss per step (the
K2 report's figure 2, in small):

- ``k2``: peak lr 1e-2, tau 100: Muon's max logit grows to about 200, MuonClip holds it at tau;
- ``runaway``: peak lr 3e-2: Muon's max logit runs far past 500 (the runaway the report describes).

The corpus is the Python standard library's own source files, read as bytes (vocabulary 256), so it exists on
any machine with Python and nothing is downloaded. Needs torch; matplotlib only for the plots, which can also
be made later from the metrics JSON:

    python -m bench.gpu.muonclip_study --out-dir bench/results/muonclip_study --jobs 6   # train + plot
    python -m bench.gpu.muonclip_study --plot-only bench/results/muonclip_study/metrics.json

Run it from the project root (``synth.optim`` is imported from there) or with the project installed.

``--jobs N`` trains up to N (setting, seed) pairs at once in separate processes: the model is small, so one
process leaves the GPU mostly idle between kernels.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import torch

from synth.optim import MuonClip, QKClip, attention_specs, split_params
from synth.optim.reference_model import TinyDecoder, TinyDecoderConfig

RUNS = ("adamw", "muon", "muonclip", "muonclip_gram")
# Each setting: peak lr and the runs it trains (AdamW at 3e-2 only diverges; it adds nothing to the runaway).
SETTINGS: dict[str, dict] = {
    "k2": {"lr": 1e-2, "runs": RUNS},
    "runaway": {"lr": 3e-2, "runs": ("muon", "muonclip", "muonclip_gram")},
}


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


def train_run(
    name: str, args: argparse.Namespace, lr_peak: float, seed: int, train: torch.Tensor, val: torch.Tensor
) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)
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
    clip = QKClip(attention_specs(model), tau=args.tau, enabled=name.startswith("muonclip"))
    if name == "adamw":
        groups = split_params(model)
        opt: torch.optim.Optimizer = torch.optim.AdamW(
            [p for _, p in groups.muon + groups.adamw],
            lr=lr_peak,
            betas=(0.9, 0.95),
            weight_decay=0.1,
            fused=device == "cuda",
        )
    else:
        ns_method = "gram" if name == "muonclip_gram" else "standard"
        opt = MuonClip(split_params(model).param_groups(), lr=lr_peak, ns_method=ns_method)
    it = batches(train, args.batch, args.seq, seed, device)
    # Several fixed held-out batches (the same for every seed): one batch of bytes is too noisy to rank runs that
    # end 1% apart.
    val_iter = batches(val, args.batch, args.seq, 12345, device)
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
        lr = lr_at(step, args.steps, lr_peak, args.warmup)
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
                f"[{name} lr {lr_peak} seed {seed}] step {step} loss {log['loss'][-1]:.4f} "
                f"val {evals['val_loss'][-1]:.4f} "
                f"max_logit {stats.max_logit:.1f} clipped {stats.total_clipped} ({time.time() - t0:.0f}s)",
                flush=True,
            )
        if not math.isfinite(log["loss"][-1]):
            print(f"[{name} seed {seed}] loss is not finite at step {step}; stopping this run", flush=True)
            break
    return {"train": log, "eval": evals, "seconds": time.time() - t0, "config": cfg.__dict__}


def _stats(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "nan"
    if len(finite) == 1:
        return f"{finite[0]:.4g}"
    return f"{statistics.mean(finite):.4g} ({min(finite):.4g}-{max(finite):.4g})"


def run_summary(r: dict) -> dict[str, float]:
    t = r["train"]
    finite = [x for x in t["max_logit"] if math.isfinite(x)]
    tail = [x for x in t["loss"][-50:] if math.isfinite(x)]
    return {
        "peak_max_logit": max(finite) if finite else float("nan"),
        "peak_recheck": max(t.get("recheck_max_logit") or [float("nan")]),
        "last_max_logit": t["max_logit"][-1],
        "heads_clipped": float(sum(t["heads_clipped"])),
        "train_loss": sum(tail) / max(1, len(tail)),
        "val_loss": r["eval"]["val_loss"][-1],
        "seconds": r["seconds"],
    }


def gram_verdict(setting: dict) -> dict[str, float] | None:
    """MuonClip with Gram Newton-Schulz against the standard iteration, seed by seed (same init and batches)."""
    runs = setting["runs"]
    if "muonclip" not in runs or "muonclip_gram" not in runs:
        return None
    seeds = sorted(set(runs["muonclip"]) & set(runs["muonclip_gram"]))
    if not seeds:
        return None
    std = [run_summary(runs["muonclip"][s]) for s in seeds]
    gram = [run_summary(runs["muonclip_gram"][s]) for s in seeds]
    diffs = [g["val_loss"] - a["val_loss"] for a, g in zip(std, gram, strict=True)]
    return {
        "seeds": len(seeds),
        "val_loss_diff_mean": statistics.mean(diffs),
        "val_loss_diff_max_abs": max(abs(d) for d in diffs),
        "heads_clipped_standard": sum(a["heads_clipped"] for a in std),
        "heads_clipped_gram": sum(g["heads_clipped"] for g in gram),
        "peak_max_logit_standard": max(a["peak_max_logit"] for a in std),
        "peak_max_logit_gram": max(g["peak_max_logit"] for g in gram),
    }


def summarise(metrics: dict) -> str:
    a = metrics["args"]
    lines = [
        f"# MuonClip study ({metrics['machine'].get('gpu', 'cpu')}, torch {metrics['machine']['torch']}, "
        f"{metrics['machine']['date_utc']} UTC)",
        "",
        f"Byte-level decoder ({a['layers']} layers, d_model {a['d_model']}, {a['heads']} heads, MHA), "
        f"stdlib Python sources ({metrics['corpus_bytes'] / 1e6:.1f} MB), batch {a['batch']} x {a['seq']} "
        f"bytes, {a['steps']} steps, tau {a['tau']}, seeds {a['seeds']} (init and batch order; the held-out "
        "batches are the same for all). Each cell: mean over seeds (min-max). Seconds are wall time with up to "
        f"{a.get('jobs', 1)} runs sharing the GPU, not a speed comparison.",
    ]
    for note in metrics.get("reruns", []):
        lines += ["", f"Re-run: {note}"]
    for name, setting in metrics["settings"].items():
        lines += [
            "",
            f"## {name}: peak lr {setting['lr']}",
            "",
            "| run | seeds | max logit in forward, peak | same batch re-measured after the step, peak "
            "| max logit, last step | heads clipped (sum over steps) | final train loss (mean of last 50) "
            "| final val loss | seconds |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for run in RUNS:
            per_seed = setting["runs"].get(run)
            if not per_seed:
                continue
            rows = [run_summary(r) for _, r in sorted(per_seed.items())]
            cols = ["peak_max_logit", "peak_recheck", "last_max_logit", "heads_clipped", "train_loss", "val_loss"]
            cells = " | ".join(_stats([r[c] for r in rows]) for c in cols)
            lines.append(f"| {run} | {len(rows)} | {cells} | {_stats([r['seconds'] for r in rows])} |")
        v = gram_verdict(setting)
        if v:
            lines += [
                "",
                f"Gram against standard Newton-Schulz (MuonClip, {v['seeds']} seeds, same init and batches): final "
                f"val loss differs by {v['val_loss_diff_mean']:+.4f} on average (largest |difference| "
                f"{v['val_loss_diff_max_abs']:.4f}); heads clipped {v['heads_clipped_gram']:.0f} against "
                f"{v['heads_clipped_standard']:.0f}; peak max logit {v['peak_max_logit_gram']:.1f} against "
                f"{v['peak_max_logit_standard']:.1f}.",
            ]
    return "\n".join(lines) + "\n"


COLORS = {"adamw": "tab:blue", "muon": "tab:red", "muonclip": "tab:green", "muonclip_gram": "tab:purple"}


def plot(metrics: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tau = metrics["args"]["tau"]
    settings = metrics["settings"]
    paths = []
    fig, axes = plt.subplots(1, len(settings), figsize=(6.5 * len(settings), 5.2), squeeze=False)
    for ax, (sname, setting) in zip(axes[0], settings.items(), strict=True):
        for run, per_seed in setting["runs"].items():
            for k, (seed, r) in enumerate(sorted(per_seed.items())):
                ax.plot(
                    r["train"]["step"],
                    r["train"]["max_logit"],
                    color=COLORS.get(run),
                    lw=1 if k == 0 else 0.6,
                    alpha=1.0 if k == 0 else 0.5,
                    ls="--" if run == "muonclip_gram" else "-",
                    label=f"{run} (seed {seed}; other seeds faint)" if k == 0 else None,
                )
        ax.set_yscale("log")
        ax.axhline(tau, ls=":", color="k", lw=1, label=f"tau = {tau:g}")
        ax.set_xlabel("step")
        ax.set_ylabel("max attention logit in the step's forward (all layers, heads)")
        ax.set_title(f"{sname}: peak lr {setting['lr']}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / "max_logit.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(settings), figsize=(6.5 * len(settings), 4.2), squeeze=False)
    for ax, (sname, setting) in zip(axes[0], settings.items(), strict=True):
        for run, per_seed in setting["runs"].items():
            for k, (seed, r) in enumerate(sorted(per_seed.items())):
                ax.plot(
                    r["eval"]["step"],
                    r["eval"]["val_loss"],
                    color=COLORS.get(run),
                    marker="." if k == 0 else None,
                    lw=1 if k == 0 else 0.6,
                    alpha=1.0 if k == 0 else 0.5,
                    ls="--" if run == "muonclip_gram" else "-",
                    label=f"{run} (seed {seed}; other seeds faint)" if k == 0 else None,
                )
        ax.set_xlabel("step")
        ax.set_ylabel("held-out loss (nats/byte)")
        ax.set_ylim(0.6, 2.0)
        ax.set_title(f"{sname}: peak lr {setting['lr']}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / "loss.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def _merge(parts: list[dict]) -> dict:
    merged = {**parts[0], "settings": {}}
    for part in parts:
        for sname, setting in part["settings"].items():
            dst = merged["settings"].setdefault(sname, {"lr": setting["lr"], "runs": {}})
            for run, per_seed in setting["runs"].items():
                dst["runs"].setdefault(run, {}).update(per_seed)
    merged["args"]["seeds"] = ",".join(
        sorted({s for st in merged["settings"].values() for ps in st["runs"].values() for s in ps}, key=int)
    )
    return merged


def _run_jobs(args: argparse.Namespace, pairs: list[tuple[str, int]]) -> dict:
    """Train each (setting, seed) pair in its own process, ``args.jobs`` at a time; merge their metrics."""
    base = [a for a in sys.argv[1:]]
    for flag in ("--jobs", "--settings", "--seeds", "--out-dir"):
        while flag in base:
            i = base.index(flag)
            del base[i : i + 2]
    pending, running, parts = list(pairs), [], []
    while pending or running:
        while pending and len(running) < args.jobs:
            sname, seed = pending.pop(0)
            out = args.out_dir / "parts" / f"{sname}_seed{seed}"
            cmd = [sys.executable, "-m", __spec__.name, *base, "--settings", sname, "--seeds", str(seed),
                   "--out-dir", str(out.resolve())]
            out.mkdir(parents=True, exist_ok=True)
            log = (args.out_dir / "parts" / f"{sname}_seed{seed}.log").open("w")
            # The same cwd as this process: `-m` finds the module (and synth) where this one found them.
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), out, log))
        time.sleep(2)
        for job in list(running):
            proc, out, log = job
            if proc.poll() is None:
                continue
            running.remove(job)
            log.close()
            if proc.returncode != 0:
                print(f"job {out.name} failed ({proc.returncode}); see {log.name}", flush=True)
            if (out / "metrics.json").exists():
                parts.append(json.loads((out / "metrics.json").read_text()))
                print(f"job {out.name} done", flush=True)
    if not parts:
        raise SystemExit("every study job failed; see the logs under parts/")
    merged = _merge(parts)
    merged["args"]["jobs"] = args.jobs
    return merged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=Path("bench/results/muonclip_study"))
    ap.add_argument("--plot-only", type=Path, help="make plots and table from an existing metrics.json")
    ap.add_argument("--merge", type=Path, help="merge DIR/parts/*/metrics.json (runs of --jobs) into DIR/metrics.json")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {list(SETTINGS)}")
    ap.add_argument("--runs", default=",".join(RUNS), help="restrict every setting to these runs")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=1, help="(setting, seed) pairs trained at once, one process each")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--warmup", type=int, default=50)
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
    args = ap.parse_args()

    if args.merge:
        # Also what a caller can do after a time limit killed the jobs: every finished run is in its part's file.
        found = sorted(args.merge.glob("parts/*/metrics.json"))
        if not found:
            raise SystemExit(f"no parts/*/metrics.json under {args.merge}")
        metrics = _merge([json.loads(f.read_text()) for f in found])
        (args.merge / "metrics.json").write_text(json.dumps(metrics))
        (args.merge / "results.md").write_text(summarise(metrics))
        print(summarise(metrics))
        return
    if args.plot_only:
        metrics = json.loads(args.plot_only.read_text())
        out = args.plot_only.parent
        (out / "results.md").write_text(summarise(metrics))
        print(summarise(metrics))
        print(plot(metrics, out))
        return

    settings = args.settings.split(",")
    unknown = [x for x in settings if x not in SETTINGS] + [r for r in args.runs.split(",") if r not in RUNS]
    if unknown:
        raise SystemExit(f"unknown settings or runs {unknown}; supported: {list(SETTINGS)}, {list(RUNS)}")
    seeds = [int(x) for x in args.seeds.split(",")]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    pairs = [(sname, seed) for sname in settings for seed in seeds]
    if args.jobs > 1 and len(pairs) > 1:
        metrics = _run_jobs(args, pairs)
    else:
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
            "settings": {},
        }
        wanted = args.runs.split(",")
        for sname, seed in pairs:
            setting = metrics["settings"].setdefault(sname, {"lr": SETTINGS[sname]["lr"], "runs": {}})
            for name in SETTINGS[sname]["runs"]:
                if name in wanted:
                    result = train_run(name, args, SETTINGS[sname]["lr"], seed, train, val)
                    setting["runs"].setdefault(name, {})[str(seed)] = result
                    (args.out_dir / "metrics.json").write_text(json.dumps(metrics))
    (args.out_dir / "metrics.json").write_text(json.dumps(metrics))
    (args.out_dir / "machine.json").write_text(json.dumps(metrics["machine"], indent=2))
    (args.out_dir / "results.md").write_text(summarise(metrics))
    print(summarise(metrics))
    try:
        print(plot(metrics, args.out_dir))
    except ImportError:
        print("matplotlib not installed: plots skipped; run again with --plot-only on metrics.json", flush=True)


if __name__ == "__main__":
    main()
