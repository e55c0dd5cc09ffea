"""Forward+backward time of a SmolLM2-135M-shaped model (random weights) with max-logit capture on flex_attention,
over micro-batches of many shapes as a fine-tune makes them: flex compiled static (one compile per shape, the
slow reference past dynamo's recompile limit) against dynamic. CUDA only; needs torch and transformers.

    python -m bench.gpu.flex_shapes [--steps 60] [--out bench/results/flex_shapes.json]   # from the project root

Each mode runs in its own process (dynamo's caches are per process) on the same shape sequence; the first steps
include compiles, so the total and the median after step 10 are both reported, with the max logits of one
fixed batch in each mode (they must agree).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shapes(n: int, tokens: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        width = rng.randint(150, 1400)
        out.append((max(1, tokens // width), width))
    return out


def worker(dynamic: bool, steps: int, tokens: int) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from synth.optim import capture
    from synth.optim.hf import install_capture

    capture.FLEX_DYNAMIC = dynamic
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).cuda()
    specs = install_capture(model)
    model.train()

    def step(b: int, w: int, seed: int) -> float:
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, cfg.vocab_size, (b, w), generator=g).cuda()
        mask = torch.ones_like(ids)
        mask[1:, w - w // 3:] = 0  # padded rows, as a collated micro-batch has
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        return time.perf_counter() - t

    step(4, 512, 0)
    fixed = [float(getattr(sp.module, capture.CAPTURE_ATTR).max()) for sp in specs]
    times = [step(b, w, i + 1) for i, (b, w) in enumerate(shapes(steps, tokens, seed=1))]
    return {"dynamic": dynamic, "total_s": sum(times), "median_after_10_s": statistics.median(times[10:]),
            "first_10_s": sum(times[:10]), "max_logit_fixed_batch": max(fixed), "step_s": times}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--tokens", type=int, default=4096, help="padded tokens a micro-batch (train.micro_batch_tokens)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "flex_shapes.json")
    ap.add_argument("--worker", choices=["static", "dynamic"])
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker == "dynamic", args.steps, args.tokens)))
        return
    import torch

    runs = {}
    for mode in ("static", "dynamic"):
        done = subprocess.run([sys.executable, "-m", __spec__.name, "--worker", mode, "--steps", str(args.steps),
                               "--tokens", str(args.tokens)], capture_output=True, text=True, check=True, cwd=ROOT)
        runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        print(mode, {k: v for k, v in runs[mode].items() if k != "step_s"}, flush=True)
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "device": torch.cuda.get_device_name(),
              "torch": torch.__version__, "python": platform.python_version(), "steps": args.steps,
              "distinct_shapes": len(set(shapes(args.steps, args.tokens, seed=1))), "tokens": args.tokens,
              "runs": runs,
              "total_ratio_dynamic_over_static": runs["dynamic"]["total_s"] / runs["static"]["total_s"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))


if __name__ == "__main__":
    main()
