"""Training rows: a run's train split as token ids with a loss mask on the assistant's tokens, in length buckets.

Rows come from ``runs/<run>/dataset/``: the SFT view (``sft/``, ``messages`` and ``tools``) when it carries
``task_id``, else the train split's Parquet (``data/train-*``, the same rows with their ids). Either way a row of
a held-out task is dropped here as well, so a training run never sees an evaluation task even if an older
dataset let one into ``train``.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from synth.data.heldout import row_side
from synth.errors import SynthError
from synth.train.template import TemplateError, render_for_training

log = logging.getLogger(__name__)
IGNORE = -100
"""Label of a token the loss skips (torch's cross_entropy ignore_index)."""


class DataError(SynthError, FileNotFoundError):
    """No usable training rows where the job looks for them."""

    hint = "run the pipeline (`make pipeline`) and accept some trajectories first, or point the job's data at rows"


class Example(BaseModel):
    input_ids: list[int]
    labels: list[int] = Field(description="input_ids on assistant tokens, IGNORE elsewhere.")

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE for label in self.labels)


class DataStats(BaseModel):
    rows: int = Field(description="Rows read from the dataset.")
    heldout_dropped: int = Field(default=0, description="Rows of held-out tasks, dropped.")
    too_long: int = Field(default=0, description="Rows longer than max_seq_len tokens, dropped (not truncated).")
    unrenderable: int = Field(default=0, description="Rows the template could not render, dropped.")
    no_assistant: int = Field(default=0, description="Rows without an assistant token to learn, dropped.")
    examples: int = 0
    tokens: int = Field(default=0, description="Tokens in the kept examples.")
    trained_tokens: int = Field(default=0, description="Assistant tokens the loss is taken on.")


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _parquet_rows(files: list[Path]) -> list[dict[str, Any]]:
    jsonl = [f for f in files if f.suffix == ".jsonl"]
    if jsonl:
        # JSON lines need nothing beyond the standard library: the form to carry rows to a machine that has only
        # torch and transformers (the lent GPU).
        if len(jsonl) != len(files):
            raise DataError("the job's data files mix .jsonl and Parquet files", hint="give files of one kind")
        return [json.loads(line) for f in jsonl for line in f.read_text().splitlines() if line.strip()]
    try:
        from datasets import load_dataset
    except ImportError:
        import pyarrow.parquet as pq

        # Without datasets the Json columns arrive as strings: tools are decoded here, arguments may stay
        # strings (the template renders both alike).
        rows = [r for f in files for r in pq.read_table(f).to_pylist()]
        for r in rows:
            r["tools"] = [_decoded(t) for t in r.get("tools") or []]
        return rows
    # datasets restores the Json columns (tools, arguments) from the schema it wrote. One file at a time: the
    # rounds of an improve run may come from versions with other columns (a column added later), which one
    # load_dataset call over all of them refuses.
    return [row for f in files for row in load_dataset("parquet", data_files=[str(f)], split="train")]


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    """Rows (messages, tools, task_id) as JSON lines, e.g. to train on a machine without datasets/pyarrow."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keep = ("messages", "tools", "task_id")
    path.write_text("".join(json.dumps({k: r[k] for k in keep if k in r}, ensure_ascii=False) + "\n" for r in rows))
    return path


def load_rows(dataset_dir: Path | None, data_files: list[Path] | None = None) -> tuple[list[dict[str, Any]], str]:
    """Rows with ``messages``, ``tools`` and, when known, ``task_id``; and where they came from: ``data_files``
    when given, else the dataset folder ``dataset_dir``."""
    if data_files:
        missing = [str(f) for f in data_files if not Path(f).exists()]
        if missing:
            raise DataError(f"training data files not found: {', '.join(missing)}",
                            hint="copy the job's data beside it, or point its data at the files (--set data=...)")
        return _parquet_rows([Path(f) for f in data_files]), ", ".join(str(f) for f in data_files)
    if dataset_dir is None:
        raise DataError("no training data given", hint="give a dataset folder or row files")
    sft = sorted((dataset_dir / "sft").glob("train-*.parquet"))
    split = sorted((dataset_dir / "data").glob("train-*.parquet"))
    if sft:
        rows = _parquet_rows(sft)
        if not rows or "task_id" in rows[0]:
            return rows, str(dataset_dir / "sft")
    if split:
        # The split carries task ids, so held-out tasks can be dropped; its arguments are JSON strings, which
        # the template renders exactly as the SFT view's objects.
        return _parquet_rows(split), str(dataset_dir / "data")
    if sft:
        raise DataError(f"{dataset_dir}/sft has no task_id column and {dataset_dir}/data has no train split: "
                        "held-out tasks cannot be told apart", hint="rebuild the dataset with `synth dataset`")
    raise DataError(f"no training rows under {dataset_dir} (sft/train-*.parquet or data/train-*.parquet)")


def tokenize(tokenizer: Any, row: dict[str, Any]) -> Example:
    """Token ids of the rendered row; labels only on the characters of assistant turns."""
    rendered = render_for_training(tokenizer, row["messages"], row.get("tools") or None)
    enc = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    labels = [IGNORE] * len(ids)
    spans = rendered.assistant_spans
    for t, (start, end) in enumerate(enc["offset_mapping"]):
        # A token is the assistant's when it starts inside one of its spans (spans begin at a turn boundary,
        # after "<|im_start|>assistant\n", so no token straddles the start).
        if any(s <= start < e for s, e in spans) and end > start:
            labels[t] = ids[t]
    return Example(input_ids=ids, labels=labels)


def build_examples(tokenizer: Any, rows: list[dict[str, Any]], *, max_seq_len: int,
                   heldout_share: float) -> tuple[list[Example], DataStats]:
    stats = DataStats(rows=len(rows))
    examples = []
    for row in rows:
        task_id = row.get("task_id")
        if task_id and heldout_share > 0 and row_side(row, heldout_share) != "train":
            stats.heldout_dropped += 1
            continue
        try:
            ex = tokenize(tokenizer, row)
        except TemplateError as exc:
            log.warning("row dropped: %s", exc)
            stats.unrenderable += 1
            continue
        if ex.length > max_seq_len:
            stats.too_long += 1
            continue
        if ex.trained_tokens == 0:
            stats.no_assistant += 1
            continue
        examples.append(ex)
    stats.examples = len(examples)
    stats.tokens = sum(e.length for e in examples)
    stats.trained_tokens = sum(e.trained_tokens for e in examples)
    return examples, stats


def bucket(lengths: list[int], micro_batch_tokens: int) -> list[list[int]]:
    """Micro-batches of example indices, similar lengths together, each at most ``micro_batch_tokens`` once
    padded to its longest member (a longer example gets a batch of its own). Deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max([lengths[j] for j in current] + [lengths[i]])
        if current and longest * (len(current) + 1) > micro_batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def schedule(lengths: list[int], *, micro_batch_tokens: int, grad_accum: int, epochs: int,
             seed: int) -> list[list[list[int]]]:
    """Every optimizer step's micro-batches, for all epochs, fixed by the seed: a resumed run takes the same
    steps as an uninterrupted one by skipping the ones it already did."""
    batches = bucket(lengths, micro_batch_tokens)
    steps: list[list[list[int]]] = []
    for epoch in range(epochs):
        order = list(batches)
        random.Random(f"{seed}:{epoch}").shuffle(order)
        steps += [order[i: i + grad_accum] for i in range(0, len(order), grad_accum)]
    return steps
