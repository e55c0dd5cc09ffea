"""A training job (``synth.train.job.TrainJob``, ``synth train --job``) on a tiny Llama built from a config: the
loss falls, every Muon matrix moves, QK-Clip sees the attention, a killed run resumes to the same weights, held-out
tasks never reach the batches, a job trained elsewhere and copied back is finished here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from synth.train.job import DataSource, JobError, TrainJob, load_job, write_job
from tests.fixtures.train import sft_rows, tiny_model, write_sft

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _job(root: Path, base: Path, data: Path, **settings: object) -> TrainJob:
    optimizer = str(settings.pop("optimizer", "muonclip"))
    return TrainJob.model_validate({
        "name": optimizer, "optimizer": optimizer, "base_model": base, "data": [{"files": [data]}],
        "output_dir": root / "runs" / "t" / "train" / optimizer, "lr": 3e-3, "epochs": 1, "micro_batch_tokens": 512,
        "grad_accum": 1, "warmup_ratio": 0.0, "threads": 1, **settings})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_cli_trains_a_job_file_loss_falls_and_every_muon_matrix_moves(tmp_path: Path, base: Path) -> None:
    from typer.testing import CliRunner

    from synth.cli import app
    from synth.optim import split_params
    from synth.train.template import template_text

    data = write_sft(tmp_path / "sft.parquet", sft_rows(4))
    spec = write_job(_job(tmp_path, base, data), tmp_path / "job.yaml")
    # One batch repeated: the loss on the same tokens must fall step after step (the job file's lr and schedule
    # overridden on the command line, as on a GPU machine).
    args = ["train", "--job", str(spec), "--set", "lr=1e-2", "--set", "epochs=6", "--set", "micro_batch_tokens=4096"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "runs" / "t" / "train" / "muonclip"
    summary = json.loads((out / "train_summary.json").read_text())
    losses = [s["loss"] for s in summary["log"]]
    assert summary["steps"] == 6 and summary["optimizer"] == "muonclip"
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(s["max_logit"] is not None and s["max_logit"] > 0 for s in summary["log"])  # capture installed
    assert summary["data"]["examples"] == 4 and summary["data"]["trained_tokens"] > 0
    assert summary["tokens_per_s"] > 0

    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    after = _weights(out)
    muon = split_params(before).muon
    assert muon, "the tiny Llama has hidden matrices for Muon"
    for name, p in muon:
        assert not torch.equal(p.detach(), after[name]), f"{name} did not move"
    # The checkpoint carries the tool template, in the tokenizer config and as the file vLLM reads.
    assert (out / "chat_template.jinja").read_text() == template_text()
    cfg = json.loads((out / "config.json").read_text())
    assert "muonclip" not in json.dumps(cfg)  # the capturing attention stays a training device


def test_adamw_baseline_same_steps(tmp_path: Path, base: Path) -> None:
    from synth.train.trainer import train

    data = write_sft(tmp_path / "sft.parquet", sft_rows(6))
    muon = train(_job(tmp_path, base, data, epochs=2), progress=False)
    adamw = train(_job(tmp_path, base, data, epochs=2, optimizer="adamw"), progress=False)
    assert adamw.name == "adamw" and muon.name == "muonclip"
    assert adamw.steps == muon.steps and [s.tokens for s in adamw.log] == [s.tokens for s in muon.log]
    assert adamw.heads_clipped == 0 and adamw.max_logit is not None  # logged, never clipped
    assert adamw.last_loss < adamw.first_loss


def test_qk_clip_acts_when_tau_is_low(tmp_path: Path, base: Path) -> None:
    from synth.train.trainer import train

    data = write_sft(tmp_path / "sft.parquet", sft_rows(2))
    summary = train(_job(tmp_path, base, data, tau=1e-3, max_steps=2), progress=False)
    assert summary.heads_clipped > 0


def test_killed_run_resumes_to_the_same_weights(tmp_path: Path, base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synth.train import trainer

    data = write_sft(tmp_path / "sft.parquet", sft_rows(8))
    whole = trainer.train(_job(tmp_path / "a", base, data, save_every=2), progress=False)

    calls = {"n": 0}
    real_step = trainer._step_loss

    def dies_in_step_4(*args: object, **kwargs: object) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trainer, "_step_loss", dies_in_step_4)
    cfg = _job(tmp_path / "b", base, data, save_every=2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(cfg, progress=False)
    out = cfg.output_dir
    assert (out / "_resume" / "state.pt").exists() and not (out / "train_summary.json").exists()
    monkeypatch.setattr(trainer, "_step_loss", real_step)
    resumed = trainer.train(cfg, progress=False)
    assert resumed.resumed_from_step == 2 and resumed.steps == whole.steps
    assert [s.step for s in resumed.log] == list(range(1, whole.steps + 1))
    a, b = _weights(Path(whole.checkpoint)), _weights(Path(resumed.checkpoint))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    # Finished: the same call returns the summary and trains nothing.
    again = trainer.train(cfg, progress=False)
    assert again.fingerprint == resumed.fingerprint and again.wall_s == resumed.wall_s


def test_heldout_tasks_never_train(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from synth.data.heldout import is_heldout
    from synth.serve.checkpoint import ensure_checkpoint
    from synth.train.data import build_examples, load_rows
    from synth.train.template import install_template

    ids = [f"task-{i}" for i in range(40)]
    held = [t for t in ids if is_heldout(t, 0.3)]
    assert 0 < len(held) < len(ids)
    write_sft(tmp_path / "dataset" / "sft" / "train-00000-of-00001.parquet", sft_rows(40), with_task_ids=ids)
    rows, source = load_rows(tmp_path / "dataset")
    assert source.endswith("sft")
    tok = install_template(AutoTokenizer.from_pretrained(ensure_checkpoint()))
    _examples, stats = build_examples(tok, rows, max_seq_len=4096, heldout_share=0.3)
    assert stats.heldout_dropped == len(held) and stats.examples == len(ids) - len(held)


def test_no_rows_says_what_to_run(tmp_path: Path) -> None:
    from synth.train.data import DataError, load_rows

    with pytest.raises(DataError, match="no training rows") as err:
        load_rows(tmp_path / "dataset")
    assert "make pipeline" in err.value.hint


def test_jsonl_rows_train_like_parquet(tmp_path: Path) -> None:
    """JSON lines (stdlib only, for a torch-only GPU machine) give the same tokens as the Parquet view."""
    from transformers import AutoTokenizer

    from synth.serve.checkpoint import ensure_checkpoint
    from synth.train.data import build_examples, load_rows, write_jsonl
    from synth.train.template import install_template

    parquet = write_sft(tmp_path / "sft.parquet", sft_rows(3))
    rows, _ = load_rows(tmp_path, [parquet])
    jsonl = write_jsonl(rows, tmp_path / "rows.jsonl")
    again, _ = load_rows(tmp_path, [jsonl])
    tok = install_template(AutoTokenizer.from_pretrained(ensure_checkpoint()))
    a, _ = build_examples(tok, rows, max_seq_len=4096, heldout_share=0.0)
    b, _ = build_examples(tok, again, max_seq_len=4096, heldout_share=0.0)
    assert [e.input_ids for e in a] == [e.input_ids for e in b] and [e.labels for e in a] == [e.labels for e in b]


def test_cpu_dtype_follows_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from synth.train import device

    monkeypatch.setattr(device.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "_cpu_native_bf16", lambda: (False, "AVX2-only EPYC"))
    assert device.plan_device("auto", "auto").autocast_dtype == "float32"
    forced = device.plan_device("auto", "bfloat16")
    assert forced.autocast_dtype == "bfloat16" and "5x slower" in forced.reason
    monkeypatch.setattr(device, "_cpu_native_bf16", lambda: (True, "EPYC with avx512_bf16"))
    assert device.plan_device("cpu", "auto").autocast_dtype == "bfloat16"
    assert device.plan_device("cpu", "float32").autocast_dtype == "float32"
    with pytest.raises(RuntimeError, match="no CUDA"):
        device.plan_device("cuda", "auto")


def test_run_trained_elsewhere_is_recognised_as_finished(tmp_path: Path, base: Path) -> None:
    """A run trained on another machine (the lent GPU) and copied back is finished here: the base model is known
    by its content, not its path, and the summary points at the copy."""
    import shutil

    from synth.train import trainer

    data = write_sft(tmp_path / "sft.parquet", sft_rows(4))
    there = _job(tmp_path / "gpu", base, data, max_steps=2)
    done = trainer.train(there, progress=False)
    # Here: the same base at another path, the data at another path, the run folder copied over.
    here_base = shutil.copytree(base, tmp_path / "here" / "base")
    here_data = shutil.copy(data, tmp_path / "here" / "sft.parquet")
    here = _job(tmp_path / "here", here_base, Path(here_data), max_steps=2, threads=2)
    shutil.copytree(there.output_dir, here.output_dir)
    assert trainer.trained(here) is not None
    again = trainer.train(here, progress=False)
    assert again.fingerprint == done.fingerprint and again.wall_s == done.wall_s  # not trained again
    assert Path(again.checkpoint) == here.output_dir
    # Another base model (same path, other weights) is not the same run.
    from safetensors.torch import load_file, save_file

    weights = load_file(str(Path(here_base) / "model.safetensors"))
    first = next(iter(weights))
    weights[first] = weights[first] + 1.0
    save_file(weights, str(Path(here_base) / "model.safetensors"), metadata={"format": "pt"})
    assert trainer._fingerprint(here, Path(here_base), []) != trainer._fingerprint(there, base, [])
    assert trainer.trained(here) is None


def test_update_rms_is_logged_and_muon_lr_moves_only_the_muon_matrices(tmp_path: Path, base: Path) -> None:
    """Muon's update is scaled to RMS ~0.2 per unit lr by construction; AdamW's first step is ~sign(g), RMS ~1.
    train.muon_lr sets the Muon group's lr and leaves the AdamW group (embeddings, norms) at train.lr."""
    from synth.train.trainer import build_optimizer, train

    data = write_sft(tmp_path / "sft.parquet", sft_rows(4))
    muon = train(_job(tmp_path / "m", base, data, lr=1e-3, max_steps=2), progress=False)
    adamw = train(_job(tmp_path / "a", base, data, lr=1e-3, max_steps=2, optimizer="adamw"), progress=False)
    assert all(s.update_rms is not None for s in muon.log + adamw.log)
    assert 0.05 < muon.update_rms < 0.3, muon.update_rms
    assert adamw.log[0].update_rms > 2 * muon.log[0].update_rms, (adamw.log[0], muon.log[0])

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    opt, _ = build_optimizer(model, _job(tmp_path, base, data, lr=1e-4, muon_lr=5e-4))
    assert {g["use_muon"]: g["lr"] for g in opt.param_groups} == {True: 5e-4, False: 1e-4}
    faster = train(_job(tmp_path / "f", base, data, lr=1e-3, muon_lr=3e-3, max_steps=2), progress=False)
    assert faster.log[-1].lr == pytest.approx(3 * muon.log[-1].lr)  # the logged lr is the Muon group's


def test_adamw_fingerprint_ignores_muon_lr(tmp_path: Path, base: Path) -> None:
    """The baseline has no Muon matrices: a muon_lr set for the MuonClip run must not make AdamW train again."""
    from synth.train.trainer import train, trained

    data = write_sft(tmp_path / "sft.parquet", sft_rows(2))
    done = train(_job(tmp_path, base, data, optimizer="adamw", max_steps=1), progress=False)
    again = trained(_job(tmp_path, base, data, optimizer="adamw", max_steps=1, muon_lr=5e-3))
    assert again is not None and again.fingerprint == done.fingerprint
    assert trained(_job(tmp_path, base, data, optimizer="adamw", max_steps=1, lr=5e-3)) is None
    assert trained(_job(tmp_path, base, data, optimizer="adamw", max_steps=1, seed=1)) is None


def test_match_lr_writes_the_muonclip_job(tmp_path: Path) -> None:
    import yaml

    from synth.train.match_lr import MatchError, matched_lr, write_matched_job

    def run(name: str, optimizer: str, rms: float | None) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "train_summary.json").write_text(json.dumps({"optimizer": optimizer, "update_rms": rms}))
        return folder

    job = write_job(_job(tmp_path, tmp_path / "base", tmp_path / "rows.jsonl", lr=1e-4), tmp_path / "muonclip.yaml")
    facts = write_matched_job(run("a", "adamw", 0.688), run("p", "muonclip", 0.1625), job, tmp_path / "out.yaml")
    assert facts["muon_lr"] == 0.00042 == matched_lr(1e-4, 0.688, 0.1625)
    written = yaml.safe_load((tmp_path / "out.yaml").read_text())
    assert written["muon_lr"] == 0.00042 and written["name"] == "muonclip"
    assert TrainJob.model_validate(written).muon_lr == 0.00042  # still a valid job
    with pytest.raises(MatchError, match="not adamw"):
        write_matched_job(tmp_path / "p", tmp_path / "p", job, tmp_path / "x.yaml")
    with pytest.raises(MatchError, match="no update_rms"):
        write_matched_job(run("b", "adamw", None), tmp_path / "p", job, tmp_path / "x.yaml")
    with pytest.raises(MatchError, match="positive"):
        matched_lr(1e-4, 0.0, 0.16)


def test_a_job_file_loads_with_overrides_and_says_what_is_wrong(tmp_path: Path) -> None:
    job = _job(tmp_path, tmp_path / "base", tmp_path / "rows.parquet")
    path = write_job(job, tmp_path / "job.yaml")
    assert load_job(path) == job
    other = load_job(path, ["lr=0.5", "data=[{dataset: elsewhere/dataset}]", "base_model=/models/base"])
    assert (other.lr, other.data, other.base_model) == (0.5, [DataSource(dataset=Path("elsewhere/dataset"))],
                                                        Path("/models/base"))
    with pytest.raises(JobError, match="does not exist"):
        load_job(tmp_path / "missing.yaml")
    with pytest.raises(JobError, match="has no '='"):
        load_job(path, ["lr"])
    with pytest.raises(JobError, match="optimizer"):
        load_job(path, ["optimizer=sgd"])
    with pytest.raises(JobError, match="either `dataset`"):
        load_job(path, ["data=[{}]"])


def test_rounds_written_with_other_columns_train_together(tmp_path: Path) -> None:
    """An improve run's rounds may come from versions with other columns (one round's rows hold forced_answer_step,
    another's not): its cumulative training reads every file, where one load_dataset over all of them refuses."""
    from datasets import load_dataset

    from synth.train.data import load_rows

    first = write_sft(tmp_path / "r1.parquet", sft_rows(2), with_task_ids=["task-a", "task-b"])
    ds = load_dataset("parquet", data_files=[str(write_sft(tmp_path / "tmp.parquet", sft_rows(3),
                                                           with_task_ids=["task-c", "task-d", "task-e"]))],
                      split="train")
    second = tmp_path / "r2.parquet"
    ds.add_column("forced_answer_step", [1, None, 1]).to_parquet(str(second))
    rows, _ = load_rows(tmp_path, [first, second])
    assert [r["task_id"] for r in rows] == ["task-a", "task-b", "task-c", "task-d", "task-e"]
    assert all(r["messages"] for r in rows)
