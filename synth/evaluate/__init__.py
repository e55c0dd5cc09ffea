"""Held-out evaluation of a model as the agent: valid tool calls, code checks, judge score (``synth eval``)."""

from synth.evaluate.metrics import CallStats, EpisodeScore, Scores
from synth.evaluate.run import EvalRecord, EvalSummary, ModelEval, evaluate_model, evaluate_models, heldout

__all__ = [
    "CallStats",
    "EpisodeScore",
    "EvalRecord",
    "EvalSummary",
    "ModelEval",
    "Scores",
    "evaluate_model",
    "evaluate_models",
    "heldout",
]
