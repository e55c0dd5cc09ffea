"""Expert iteration: rounds of generate -> accept -> train -> eval, with the curve of the held-out scores."""

from synth.improve.loop import ImproveReport, ModelScores, RoundResult, run_improve

__all__ = ["ImproveReport", "ModelScores", "RoundResult", "run_improve"]
