"""What shaped a stage's rows, recorded beside them, so a re-run with other settings never reuses stale rows.

Row ids hash a row's content and seed, not the settings that produced it: without this, changing
``rollouts.max_turns``, the judge's threshold, a prompt template or the served model and re-running the same run
would keep every old row. The fingerprint holds, per stage: its own config section, the LLM settings that shape
replies, the model actually served, the digests of the data files it reads (prompts, rubrics, registry), and the
fingerprints of the stages it declares as inputs, so a change upstream reaches every stage after it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from synth.config import PipelineConfig, TrainConfig
from synth.errors import SynthError
from synth.paths import REPO_ROOT, RUBRICS, TOOLS_REGISTRY
from synth.train.template import TEMPLATE_PATH

log = logging.getLogger(__name__)
FILE = "fingerprint.json"
PROMPTS = RUBRICS / "prompts"
TEMPLATE = TEMPLATE_PATH

# The data each stage reads. A stage not listed here is fingerprinted on every prompt and rubric file: safe, if
# coarse (a change anywhere recomputes it).
STAGE_FILES: dict[str, list[Path]] = {
    "tools": [PROMPTS / "evolve_subdomain.j2", PROMPTS / "evolve_tools.j2", TOOLS_REGISTRY],
    "agents": [PROMPTS / "agent_prompt.j2", RUBRICS / "agent_profiles.yaml"],
    "tasks": [PROMPTS / "task_gen.j2", RUBRICS / "task_templates.yaml", RUBRICS / "coding_problems.yaml",
              RUBRICS / "core.yaml", RUBRICS / "prescriptive.yaml"],
    "rollouts": [PROMPTS / "agent_turn.j2", PROMPTS / "user_sim.j2", PROMPTS / "tool_sim.j2"],
    "judge": [PROMPTS / "judge.j2", RUBRICS / "core.yaml", RUBRICS / "prescriptive.yaml",
              RUBRICS / "coding_problems.yaml"],
    # Held-out keys name coding problems; the card's licence section reads the registry's metadata.
    "dataset": [RUBRICS / "coding_problems.yaml", TOOLS_REGISTRY],
    # The tool template renders the rows a job trains on, and the turns the model under test is served with.
    "train": [TEMPLATE],
    "eval": [PROMPTS / "user_sim.j2", PROMPTS / "tool_sim.j2", PROMPTS / "judge.j2", RUBRICS / "core.yaml",
             RUBRICS / "prescriptive.yaml", RUBRICS / "coding_problems.yaml", TEMPLATE],
    "card": [],
    "publish": [],
}
# Config sections that shape a stage besides its own: the dataset applies the judge's acceptance settings.
SECTIONS: dict[str, tuple[str, ...]] = {"dataset": ("judge",), "eval": ("rollouts", "judge")}
# Fields that change how many rows a stage plans, not what any row holds (row ids hash content and seed, so a
# row in both plans is the same row), or that apply only once every row exists (acceptance). Quota mode grows
# agents.count round by round and best-of-N may be raised later: both must resume, not refuse. A field of
# another section (SECTIONS) is named with its section. A training job's id hashes its whole spec and an
# evaluation row's id the model and task, so other train settings or models plan other rows: nothing to refuse.
# Evaluation bounds no call, forces calls its own way (eval.forced_models), not as the run's rollouts say, and
# judges every episode with the judge's decision rule alone.
NOT_SHAPING: dict[str, tuple[str, ...]] = {
    "agents": ("count",),
    "tasks": ("per_agent",),
    "rollouts": ("samples",),
    "judge": ("accept", "trust_agreement", "calibration_min_pairs"),
    "train": tuple(TrainConfig.model_fields),
    "eval": ("models", "forced_models", "base_model", "tasks_from", "max_tasks", "port", "kv_cache_gb", "concurrency",
             "rollouts.samples", "rollouts.coding_runs_code", "rollouts.grounded_calls_first",
             "rollouts.grounded_answer_after_call", "rollouts.max_calls_per_step", "rollouts.coding_free_text",
             "judge.accept", "judge.trust_agreement", "judge.calibration_min_pairs", "judge.llm_rows",
             "judge.calibration_share"),
}
# LLM settings that change what a model writes; endpoints, concurrency and deadlines do not.
LLM_FIELDS = ("model", "temperature", "max_tokens", "structured_retries", "tool_calling", "roles")


class StageSettingsChanged(SynthError, RuntimeError):
    """The stage's rows on disk were made with other settings; the message names them, the hint the ways out."""

    hint = ("start a new run (--run NEW_NAME), or recompute this stage and the ones after it "
            "(--set on_change=recompute)")


def _digest_path(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.exists() else []
    for f in files:
        h.update(str(f.relative_to(REPO_ROOT) if f.is_relative_to(REPO_ROOT) else f).encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16] if files else "missing"


def compute(stage: str, config: PipelineConfig, served_model: str | None, upstream: str | None,
            uses_llm: bool = True) -> dict[str, Any]:
    """The parts that shaped ``stage``'s rows, as a flat ``{"section.field": value}`` mapping."""
    parts: dict[str, Any] = {"seed": config.seed}
    for name in (stage, *SECTIONS.get(stage, ())):
        section = getattr(config, name, None)
        if section is not None and hasattr(section, "model_dump"):
            skip = NOT_SHAPING.get(stage, ())
            parts.update({f"{name}.{k}": v for k, v in section.model_dump(mode="json").items()
                          if (k if name == stage else f"{name}.{k}") not in skip})
    if uses_llm:
        llm = config.llm.model_dump(mode="json")
        parts.update({f"llm.{k}": llm[k] for k in LLM_FIELDS if k in llm})
        parts["served model"] = served_model
    files = STAGE_FILES.get(stage, [RUBRICS, TOOLS_REGISTRY])
    parts.update({f"file {p.relative_to(REPO_ROOT) if p.is_relative_to(REPO_ROOT) else p}": _digest_path(p)
                  for p in files})
    parts["upstream"] = upstream
    return parts


def digest(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read(stage_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((stage_dir / FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}" for k in keys if old.get(k) != new.get(k)]


def has_rows(stage_dir: Path) -> bool:
    return (stage_dir / "data.parquet").exists() or any((stage_dir / "journal").glob("*.jsonl"))


def reconcile(stage: str, stage_dir: Path, parts: dict[str, Any], on_change: str, run: str) -> None:
    """Record ``parts`` for a new stage; for one with rows, refuse (or recompute) when they differ."""
    recorded = read(stage_dir)
    if recorded is not None and parts.get("served model", "") is None:
        parts["served model"] = recorded.get("served model")  # server unreachable now: keep what was recorded
    if recorded is not None and has_rows(stage_dir):
        changed = differences(recorded, parts)
        if changed and on_change == "refuse":
            shown = "\n  ".join(changed[:12]) + (f"\n  ... and {len(changed) - 12} more" if len(changed) > 12 else "")
            raise StageSettingsChanged(
                f"stage {stage!r} of run {run!r} ({stage_dir}) was made with other settings:\n  {shown}\n"
                "Its rows would be stale."
            )
        if changed:
            log.warning("stage %s: settings changed (%s); recomputing its rows", stage, "; ".join(changed[:3]))
            for name in ("data.parquet", "journal", "summary.json"):
                target = stage_dir / name
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    elif recorded is None and has_rows(stage_dir):
        log.warning("stage %s in %s has rows but no fingerprint (written by an older synth); recording the current "
                    "settings", stage, stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    (stage_dir / FILE).write_text(json.dumps(parts, indent=2, sort_keys=True, default=str) + "\n")


def served_model(config: PipelineConfig, base_url: str, api_key: str) -> str | None:
    """The model the endpoint serves (config's name if set); None when the endpoint does not answer."""
    if config.llm.model:
        return config.llm.model
    import openai

    from synth.llm.client import NotOpenAI
    from synth.llm.client import served_model as first_model

    try:  # parsed by synth, not the SDK: a page that is no model list fails inside the SDK as an AttributeError
        with openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=2, timeout=60) as client:
            return first_model(client.models.with_raw_response.list().text, base_url)
    except (openai.APIError, NotOpenAI):
        return None  # the stage's pool meets the same endpoint and says what is wrong with it
