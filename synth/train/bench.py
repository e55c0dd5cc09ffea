"""Training throughput on this machine: a few real steps of ``synth train`` per compute dtype, interleaved.

``python -m synth.train.bench --data runs/<run>/dataset/data/rejected-*.parquet --steps 3`` trains the default
model on real trajectories (any split: only their lengths matter here) and writes tokens/s per dtype, the
rows' token counts and the cost of a default-size run to ``bench/results/train_<device>.json``. Rounds alternate
the dtypes, so a machine whose load drifts shows it in the spread rather than in one dtype's favour.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from synth.config import TrainConfig
from synth.machine import machine_info
from synth.train.job import DataSource, TrainJob


def run(data: list[Path], steps: int, dtypes: list[str], rounds: int, base: Path | None,
        threads: int | None, grad_accum: int = 1) -> dict[str, Any]:
    from synth.serve.cpu import read_cpu_info
    from synth.train.trainer import train

    rates: dict[str, list[float]] = {d: [] for d in dtypes}
    summary = None
    for r in range(rounds):
        for dtype in dtypes:
            with tempfile.TemporaryDirectory() as tmp:
                job = TrainJob(name=f"bench-{dtype}-{r}", data=[DataSource(files=data)], base_model=base,
                               max_steps=steps, dtype=dtype, threads=threads, save_every=10_000,  # type: ignore[arg-type]
                               grad_accum=grad_accum, output_dir=Path(tmp) / "out")
                summary = train(job, progress=True)
                rates[dtype].append(summary.tokens_per_s or 0.0)
    assert summary is not None
    data_stats = summary.data
    per_row = data_stats.tokens / max(1, data_stats.examples)
    cfg = TrainConfig()
    best = max(dtypes, key=lambda d: statistics.median(rates[d]))
    rate = statistics.median(rates[best])
    default_tokens = 100 * per_row * cfg.epochs
    return {
        "machine": {**machine_info(), "cpu_flags": read_cpu_info().vector_flags()},
        "device": summary.device, "steps_per_round": steps, "rounds": rounds, "grad_accum": grad_accum,
        "load_average_at_end": list(os.getloadavg()),
        "tokens_per_s": {d: {"median": statistics.median(v), "runs": v} for d, v in rates.items()},
        "rows": data_stats.examples, "mean_tokens_per_row": per_row,
        "mean_trained_tokens_per_row": data_stats.trained_tokens / max(1, data_stats.examples),
        "cost_100_trajectories": {"epochs": cfg.epochs, "tokens": default_tokens, "dtype": best,
                                  "hours": default_tokens / rate / 3600 if rate else None},
        "data": [str(p) for p in data],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", nargs="+", type=Path, required=True, help="Parquet files with messages/tools.")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--base", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--grad-accum", type=int, default=1, help="Micro-batches per step (the config default is 2).")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    result = run(args.data, args.steps, args.dtypes, args.rounds, args.base, args.threads, args.grad_accum)
    out = args.out or Path("bench/results") / f"train_{result['device']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
