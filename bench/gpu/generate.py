"""Greedy replies of one or more checkpoints to prepared chat requests, on a machine with torch and transformers only.

For scoring models where vLLM cannot run (a lent GPU machine has torch and transformers, not vLLM): the requests
are exported here by ``synth bfcl export`` (the messages and ``tools`` each BFCL item sends), every checkpoint
renders them with the same chat template the server would use (``--chat-template``), generates greedily, and
the raw texts come back as JSONL. ``synth bfcl score-replies`` then parses them with vLLM's own tool parser and
scores them with BFCL's checker, exactly as it scores a served model's replies.

    python -m bench.gpu.generate --requests requests.jsonl --template tool_chat.jinja \
        --model base=/path/base --model muonclip=/path/ckpt --out replies/

writes ``replies/<name>.jsonl`` with ``{"key", "text", "finish_reason"}`` per request.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def _load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _prompts(tokenizer: Any, requests: list[dict[str, Any]]) -> list[str]:
    return [
        tokenizer.apply_chat_template(r["messages"], tools=r.get("tools") or None, tokenize=False,
                                      add_generation_prompt=True)
        for r in requests
    ]


def generate(model_dir: Path, template: str, requests: list[dict[str, Any]], *, max_new_tokens: int,
             batch: int) -> list[dict[str, Any]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.chat_template = template
    tok.padding_side = "left"  # generation continues every row from its own last token
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dtype).to(device).eval()
    end_ids = [i for i in {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")} if isinstance(i, int)]
    prompts = _prompts(tok, requests)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
    out: list[dict[str, Any] | None] = [None] * len(prompts)
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=end_ids,
                                 pad_token_id=tok.pad_token_id)
        for row, i in enumerate(idx):
            new = gen[row, enc["input_ids"].shape[1]:].tolist()
            stopped = any(t in end_ids for t in new)
            if stopped:
                new = new[: min(new.index(t) for t in end_ids if t in new)]
            out[i] = {"key": requests[i]["key"], "text": tok.decode(new, skip_special_tokens=False),
                      "finish_reason": "stop" if stopped else "length"}
    return [o for o in out if o is not None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=Path, required=True)
    ap.add_argument("--template", type=Path, required=True, help="The chat template the server would use.")
    ap.add_argument("--model", action="append", required=True, help="NAME=CHECKPOINT_DIR (repeatable).")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--batch", type=int, default=96)
    args = ap.parse_args()
    requests = _load(args.requests)
    template = args.template.read_text()
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in args.model:
        name, _, path = spec.partition("=")
        t0 = time.time()
        replies = generate(Path(path), template, requests, max_new_tokens=args.max_new_tokens, batch=args.batch)
        with (args.out / f"{name}.jsonl").open("w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in replies)
        print(f"{name}: {len(replies)} replies in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
