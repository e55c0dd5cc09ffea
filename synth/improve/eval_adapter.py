"""``synth eval`` (synth.evaluate) seen from the improve loop: one call, the three numbers of the curve per model."""

from __future__ import annotations

from pathlib import Path

from synth.config import EndpointConfig, PipelineConfig
from synth.improve.models import ModelScores


def evaluate_models(config: PipelineConfig, endpoints: list[EndpointConfig], models: dict[str, Path | None],
                    task_ids: list[str], *, tag: str = "") -> dict[str, ModelScores]:
    """Each model's scores on ``task_ids`` of ``config``'s run. ``tag`` keeps one round's evaluation rows apart
    from another's (``runs/<run>/eval/<name><tag>/``), so every round stays resumable."""
    from synth.evaluate import evaluate_models as run_eval

    named = {f"{name}{tag}" if name != "base" else name: path for name, path in models.items()}
    summary = run_eval(config, endpoints, named, task_ids, progress=True)
    out: dict[str, ModelScores] = {}
    for name in models:
        result = summary.models[f"{name}{tag}" if name != "base" else name]
        o = result.overall
        out[name] = ModelScores(
            valid_call_rate=o.valid_call_rate if o.calls_attempted else None,
            pass_rate=o.pass_rate if o.checked_episodes else None,
            judge_score=o.judge_score if o.episodes else None,
            episodes=o.episodes, wall_s=result.wall_s, checkpoint=result.checkpoint,
            detail={"overall": o.model_dump(), "by_difficulty": {d: s.model_dump()
                                                                 for d, s in result.by_difficulty.items()}},
        )
    return out
