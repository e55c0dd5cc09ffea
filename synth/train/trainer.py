"""Full fine-tuning of a Hugging Face causal LM on a run's train split, with MuonClip or an AdamW baseline.

One call, ``train(job)`` (a ``synth.train.job.TrainJob``): tokenize the job's rows with the tool template (loss
on assistant tokens only, tool calls included), bucket by length, then step. MuonClip runs with max-logit capture
installed in the model's attention and QK-Clip after every step (K2 keeps Muon for post-training too); the AdamW
baseline runs the same attention, data and steps, with the max logits logged and nothing clipped. Every
``save_every`` steps the model, optimizer and schedule are written to ``_resume/`` (atomically), so a killed run
started again goes on from there and ends with the same weights. The result is a plain HF checkpoint with the
template saved in its tokenizer, which vLLM serves as it is. The ``train`` stage (``synth.stages.train``) runs one
job per optimizer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field
from tqdm.auto import tqdm

from synth.errors import SynthError
from synth.train.data import IGNORE, DataError, DataStats, Example, build_examples, load_rows, schedule
from synth.train.device import DevicePlan, plan_device
from synth.train.job import TrainJob
from synth.train.template import TEMPLATE_PATH, TOOL_CALL_PARSER, install_template

log = logging.getLogger(__name__)
SUMMARY = "train_summary.json"
RESUME = "_resume"


class StepLog(BaseModel):
    step: int
    loss: float = Field(description="Mean loss per assistant token over the step's micro-batches.")
    lr: float
    tokens: int = Field(description="Tokens (padding excluded) in the step.")
    max_logit: float | None = Field(default=None, description="Largest pre-softmax logit of any head this step.")
    heads_clipped: int = 0
    update_rms: float | None = Field(default=None, description="RMS of the step's weight change per unit of the "
                                     "step's lr, on a fixed sample of the hidden matrices (Muon's matrices).")
    wall_s: float


class TrainSummary(BaseModel):
    name: str
    optimizer: str
    checkpoint: str = Field(description="The HF checkpoint directory (serve it with the template and parser).")
    base_model: str
    chat_template: str
    tool_call_parser: str = TOOL_CALL_PARSER
    data_source: str
    data: DataStats
    device: str
    dtype: str
    device_detail: str = ""
    fingerprint: str = Field(default="", description="Hash of the settings and tokens this run trained on.")
    steps: int
    epochs: int
    resumed_from_step: int = 0
    first_loss: float | None = None
    last_loss: float | None = None
    max_logit: float | None = Field(default=None, description="Largest logit seen over the run (before clip).")
    heads_clipped: int = Field(default=0, description="Head clips summed over steps.")
    update_rms: float | None = Field(default=None, description="Mean of the steps' update_rms: how far one "
                                     "step moves a hidden matrix per unit lr (Muon by design ~0.2; AdamW measured).")
    tokens_trained: int = Field(default=0, description="Tokens through forward and backward in this process.")
    tokens_per_s: float | None = Field(default=None, description="Tokens (padding excluded) per wall second of "
                                       "stepping in this process (model loading and saving not counted).")
    wall_s: float = 0.0
    log: list[StepLog] = Field(default_factory=list)


class NotACheckpoint(SynthError, FileNotFoundError):
    """A model folder without a Hugging Face config."""

    hint = "give a Hugging Face checkpoint folder (one with config.json), or leave it unset for the embedded model"


def base_model_dir(path: Path | None) -> Path:
    if path is not None:
        if not (Path(path) / "config.json").exists():
            raise NotACheckpoint(f"base model {path} has no config.json")
        return Path(path)
    from synth.serve.checkpoint import ensure_checkpoint

    return ensure_checkpoint()


_IDENTITIES: dict[tuple, str] = {}


def base_identity(base: Path) -> str:
    """The base model by content (config and weights), not by path: a run trained on another machine (the lent
    GPU, a cluster) from the same base on the same data is recognised as finished here.

    Kept per process by the files' names, sizes and mtimes: the improve loop asks for every optimizer of every
    round, and reading a large model's weights each time would cost more than the check saves."""
    files = [base / "config.json", *sorted(base.glob("*.safetensors")), *sorted(base.glob("*.bin"))]
    key = (str(base.resolve()), *((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key in _IDENTITIES:
        return _IDENTITIES[key]
    config = json.loads(files[0].read_text())
    config.pop("transformers_version", None)  # the writer's version, not the model
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for path in files[1:]:
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 24):
                digest.update(chunk)
    _IDENTITIES[key] = digest.hexdigest()[:16]
    return _IDENTITIES[key]


RUNTIME_FIELDS = {"save_every", "threads", "device", "gradient_checkpointing"}
"""Job fields that change how fast a job runs, not the weights it ends with."""


def _fingerprint(job: TrainJob, base: Path, examples: list[Example]) -> str:
    """What a resume state (or a finished run) must match: the same tokens, base model, optimizer, schedule and
    seed. Where things are (base_model, data, output_dir), its name and how fast it runs are left out; so is the
    held-out share, whose effect is in the tokens."""
    ignored = {*RUNTIME_FIELDS, "name", "data", "base_model", "output_dir", "heldout_share", "seed"}
    if job.optimizer == "adamw":
        ignored.add("muon_lr")  # the baseline has no Muon matrices: the same run whatever it says
    keep = job.model_dump(mode="json", exclude=ignored)
    digest = hashlib.sha256(json.dumps({"cfg": keep, "base": base_identity(base), "seed": job.seed},
                                       sort_keys=True).encode())
    for e in examples:
        digest.update(json.dumps([e.input_ids, e.labels]).encode())
    return digest.hexdigest()[:16]


def _collate(examples: list[Example], pad_id: int, device: str) -> dict[str, torch.Tensor]:
    width = max(e.length for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : e.length] = torch.tensor(e.input_ids)
        labels[i, : e.length] = torch.tensor(e.labels)
        mask[i, : e.length] = 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine down to a tenth of the peak."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model: torch.nn.Module, cfg: TrainJob) -> tuple[torch.optim.Optimizer, Any]:
    """The optimizer and the QK-Clip object whose stats are logged (for AdamW: one that only measures)."""
    from synth.optim import MuonClip, QKClip
    from synth.optim.hf import install_capture

    # Both optimizers run the same capturing attention, so their losses and logits are comparable.
    specs = install_capture(model)
    if cfg.optimizer == "muonclip":
        opt = MuonClip.for_model(model, lr=cfg.muon_lr or cfg.lr, adamw_lr=cfg.lr, weight_decay=cfg.weight_decay,
                                 tau=cfg.tau)
        return opt, opt.qk_clip
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    return opt, QKClip(specs, tau=cfg.tau, enabled=False)


PROBE_MATRICES = 8


def _probe(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """A fixed, evenly spread sample of the hidden matrices whose update RMS is logged: a copy of every matrix
    each step would double a large model's memory."""
    from synth.optim.split import split_params

    matrices = [p for _, p in split_params(model).muon if p.ndim == 2]
    stride = max(1, len(matrices) // PROBE_MATRICES)
    return matrices[::stride][:PROBE_MATRICES]


def _update_rms(probe: list[torch.nn.Parameter], before: list[torch.Tensor], lr: float) -> float | None:
    if not probe or lr <= 0:
        return None
    rms = [float((p.detach() - b).float().pow(2).mean().sqrt()) for p, b in zip(probe, before, strict=True)]
    return sum(rms) / len(rms) / lr


def _save_resume(out: Path, step: int, model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any,
                 fingerprint: str, history: list[StepLog]) -> None:
    tmp = out / f"{RESUME}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "step": step,
                "fingerprint": fingerprint, "history": [h.model_dump() for h in history]}, tmp / "state.pt")
    final = out / RESUME
    old = out / f"{RESUME}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)  # a kill between the two renames leaves .old, which _load_resume also reads
    shutil.rmtree(old, ignore_errors=True)


def _load_resume(out: Path, fingerprint: str) -> dict[str, Any] | None:
    for name in (RESUME, f"{RESUME}.old"):
        path = out / name / "state.pt"
        if path.exists():
            state = torch.load(path, map_location="cpu", weights_only=False)
            if state.get("fingerprint") != fingerprint:
                log.warning("resume state in %s was made with another config or dataset; starting over", path)
                return None
            return state
    return None


def _save_checkpoint(out: Path, model: Any, tokenizer: Any, cfg: TrainJob) -> None:
    tmp = out / "_final.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    dtype = torch.float32 if cfg.save_dtype == "float32" else torch.bfloat16
    # The capturing attention and checkpointing are training devices: the saved config must not carry them.
    if getattr(model, "is_gradient_checkpointing", False):
        model.gradient_checkpointing_disable()
    model.config.use_cache = True
    model.config._attn_implementation = "sdpa"
    model.to(dtype).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "chat_template.jinja").write_text(tokenizer.chat_template)
    for item in tmp.iterdir():
        os.replace(item, out / item.name)
    tmp.rmdir()


def _step_loss(model: Any, inputs: dict[str, torch.Tensor], labels: torch.Tensor, autocast: torch.dtype | None,
               device: str) -> torch.Tensor:
    """Summed next-token loss over the assistant tokens of one micro-batch.

    The output head runs only on the positions that have a label: on a 49k vocabulary it is a fifth of a small
    model's compute and most of its activation memory, and the prompt's positions need no logits.
    """
    with torch.autocast(device, dtype=autocast or torch.float32, enabled=autocast is not None):
        hidden = model.base_model(**inputs).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        logits = model.get_output_embeddings()(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="sum")


def _finished(out: Path, fingerprint: str) -> TrainSummary | None:
    if not ((out / SUMMARY).exists() and (out / "config.json").exists()):
        return None
    done = TrainSummary.model_validate_json((out / SUMMARY).read_text())
    if done.fingerprint != fingerprint:
        return None
    # Trained elsewhere and copied here: the checkpoint is this folder, wherever it was written.
    return done.model_copy(update={"checkpoint": str(out)})


@dataclasses.dataclass
class _Job:
    base: Path
    tokenizer: Any
    examples: list[Example]
    stats: DataStats
    source: str
    fingerprint: str


class NoTrainableRows(DataError):
    """Rows were found, but none is left to train on once held-out, too long and unrenderable rows are dropped."""

    hint = "accept more trajectories (a bigger run), or raise the job's max_seq_len if rows were too long"


def job_rows(job: TrainJob) -> tuple[list[dict[str, Any]], str]:
    """Every row of the job's data sources, in order, and where they came from."""
    rows: list[dict[str, Any]] = []
    sources = []
    for source in job.data:
        got, where = load_rows(source.dataset, None) if source.dataset is not None else load_rows(None, source.files)
        rows += got
        sources.append(where)
    return rows, "; ".join(sources)


def _prepare(cfg: TrainJob) -> _Job:
    from transformers import AutoTokenizer

    base = base_model_dir(cfg.base_model)
    tokenizer = install_template(AutoTokenizer.from_pretrained(base))
    rows, source = job_rows(cfg)
    examples, stats = build_examples(tokenizer, rows, max_seq_len=cfg.max_seq_len, heldout_share=cfg.heldout_share)
    if not examples:
        raise NoTrainableRows(f"no trainable rows in {source}: {stats.model_dump()}")
    return _Job(base, tokenizer, examples, stats, source, _fingerprint(cfg, base, examples))


def training_fingerprint(job: TrainJob) -> str:
    """What ``train(job)`` is known by: its settings, seed, base model (by content) and tokens."""
    return _prepare(job).fingerprint


def trained(job: TrainJob) -> TrainSummary | None:
    """The job's summary when its checkpoint is finished (here, or elsewhere and copied to its output folder)."""
    return _finished(job.output_dir, training_fingerprint(job))


def train(cfg: TrainJob, *, progress: bool = True) -> TrainSummary:
    """Train the job and save an HF checkpoint in its ``output_dir``; returns the summary (also written as
    ``train_summary.json``).

    The same job on the same data is not trained twice: a finished run returns its summary, a killed one resumes
    from its last ``_resume`` state. Other data or settings in the same folder train afresh.
    """
    from transformers import AutoModelForCausalLM

    out = cfg.output_dir
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = time.monotonic()
    job = _prepare(cfg)
    base, tokenizer, examples, stats, source, fingerprint = (
        job.base, job.tokenizer, job.examples, job.stats, job.source, job.fingerprint)
    done = _finished(out, fingerprint)
    if done is not None:
        log.info("%s is already trained on this data with these settings; returning its summary", out)
        return done
    plan: DevicePlan = plan_device(cfg.device, cfg.dtype)
    steps = schedule([e.length for e in examples], micro_batch_tokens=cfg.micro_batch_tokens,
                     grad_accum=cfg.grad_accum, epochs=cfg.epochs, seed=cfg.seed)
    if cfg.max_steps:
        steps = steps[: cfg.max_steps]
    total = len(steps)
    warmup = int(cfg.warmup_ratio * total)

    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(plan.device)
    checkpointing = cfg.gradient_checkpointing == "on" or (cfg.gradient_checkpointing == "auto"
                                                            and plan.device == "cpu")
    if checkpointing:
        model.config.use_cache = False
        # The recomputed forward runs with grad on, so capture sees it again: a MAX of the same logits, unchanged.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    opt, clip = build_optimizer(model, cfg)
    probe = _probe(model)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, total, warmup))
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY).unlink(missing_ok=True)  # a summary of other data must not describe these weights
    history: list[StepLog] = []
    start = 0
    state = _load_resume(out, fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = state["step"]
        history = [StepLog.model_validate(h) for h in state["history"]]
        log.info("resuming %s at step %d of %d", out, start, total)
    # The log holds exactly the steps behind the weights: steps redone after a resume are not listed twice.
    (out / "log.jsonl").write_text("".join(h.model_dump_json() + "\n" for h in history))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokens_here, stepping_s = 0, 0.0
    bar = tqdm(total=total, initial=start, desc=f"train {out.name}", disable=not progress, dynamic_ncols=True)
    for step in range(start, total):
        t0 = time.monotonic()
        micro = [[examples[i] for i in batch] for batch in steps[step]]
        # Summed over the step's assistant tokens and divided once: every token weighs the same, whatever its
        # micro-batch (a mean of means would favour short rows).
        targets = sum(e.trained_tokens for batch in micro for e in batch)
        loss_sum = 0.0
        for batch in micro:
            inputs = _collate(batch, pad_id, plan.device)
            labels = inputs.pop("labels")
            loss = _step_loss(model, inputs, labels, plan.torch_autocast, plan.device)
            (loss / targets).backward()
            loss_sum += float(loss.detach())
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        lr = opt.param_groups[0]["lr"]  # the Muon group's for MuonClip: the probe's matrices are in it
        before = [p.detach().clone() for p in probe]
        opt.step()
        rms = _update_rms(probe, before, lr)
        del before
        clip_stats = clip.last_stats if cfg.optimizer == "muonclip" else clip.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        step_tokens = sum(e.length for batch in micro for e in batch)
        dt = time.monotonic() - t0
        tokens_here += step_tokens
        stepping_s += dt
        entry = StepLog(step=step + 1, loss=loss_sum / max(1, targets), lr=lr, tokens=step_tokens,
                        max_logit=clip_stats.max_logit if clip_stats is not None else None,
                        heads_clipped=clip_stats.total_clipped if clip_stats is not None else 0,
                        update_rms=rms, wall_s=dt)
        history.append(entry)
        bar.set_postfix(loss=f"{entry.loss:.3f}", max_logit=f"{entry.max_logit or 0:.1f}",
                        clipped=entry.heads_clipped, tok_s=f"{tokens_here / stepping_s:.0f}")
        bar.update(1)
        with (out / "log.jsonl").open("a") as fh:
            fh.write(entry.model_dump_json() + "\n")
        if (step + 1) % cfg.save_every == 0 and step + 1 < total:
            _save_resume(out, step + 1, model, opt, sched, fingerprint, history)
    bar.close()
    _save_checkpoint(out, model, tokenizer, cfg)
    logits_seen = [h.max_logit for h in history if h.max_logit is not None]
    rms_seen = [h.update_rms for h in history if h.update_rms is not None]
    summary = TrainSummary(
        name=cfg.name, optimizer=cfg.optimizer, checkpoint=str(out), base_model=str(base),
        chat_template=str(TEMPLATE_PATH), data_source=source, data=stats, device=plan.device,
        dtype=plan.autocast_dtype, device_detail=plan.reason, fingerprint=fingerprint, steps=total,
        epochs=cfg.epochs, resumed_from_step=start,
        first_loss=history[0].loss if history else None, last_loss=history[-1].loss if history else None,
        max_logit=max(logits_seen) if logits_seen else None, heads_clipped=sum(h.heads_clipped for h in history),
        update_rms=sum(rms_seen) / len(rms_seen) if rms_seen else None, tokens_trained=tokens_here,
        tokens_per_s=tokens_here / stepping_s if stepping_s else None,
        wall_s=time.monotonic() - started, log=history,
    )
    (out / SUMMARY).write_text(summary.model_dump_json(indent=2))
    shutil.rmtree(out / RESUME, ignore_errors=True)
    return summary
