"""Expert iteration: rounds of generate -> accept -> train -> eval, with the curve of the held-out scores."""

from synth.improve.loop import run_improve
from synth.improve.models import ImproveReport, ModelScores, RoundResult

__all__ = ["ImproveReport", "ModelScores", "RoundResult", "run_improve"]
