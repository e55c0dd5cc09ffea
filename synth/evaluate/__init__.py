"""Held-out evaluation of a model as the agent: valid tool calls, code checks, judge score. The ``eval`` stage
(``synth eval``, ``synth.stages.eval``) runs it; this package holds the episode, the scores and the report."""

from synth.evaluate.episode import EvalRecord, EvalSummary, ModelEval, ModelUnderTest, play, summarize
from synth.evaluate.metrics import CallStats, EpisodeScore, Scores

__all__ = [
    "CallStats",
    "EpisodeScore",
    "EvalRecord",
    "EvalSummary",
    "ModelEval",
    "ModelUnderTest",
    "Scores",
    "play",
    "summarize",
]
