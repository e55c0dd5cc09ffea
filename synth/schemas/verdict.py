"""Judge verdicts: per-criterion scores with quoted evidence, code-check results, and the decision."""

from pydantic import BaseModel, Field


class CriterionScore(BaseModel):
    criterion_id: str = Field(description="The id of the rubric criterion being scored.")
    evidence: str = Field(description="A short quote from the trajectory that supports the score.")
    score: int = Field(ge=0, le=2, description="0 = not met, 1 = partly met, 2 = fully met.")
    note: str | None = Field(
        default=None, description="Set by the pipeline, never by the judge: why the judge's score was changed."
    )


class JudgeReply(BaseModel):
    """The schema the judge model must answer in."""

    scores: list[CriterionScore]
    summary: str = Field(description="One sentence on the trajectory's quality.")


class CheckResult(BaseModel):
    check_id: str
    passed: bool
    detail: str = ""


class Verdict(BaseModel):
    passed: bool
    score: float = Field(description="Weighted mean criterion score in [0, 1].")
    scores: list[CriterionScore] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)
    gates: list[CheckResult] = Field(
        default_factory=list, description="Quality gates (synth.judge.gates) on the final answer and the calls, "
        "one result per gate that ran (check_id = the gate's name); acceptance rejects a row failing any.")
    reasons: list[str] = Field(default_factory=list, description="Why it failed, one line each.")
    samples: int = 1
    summary: str | None = Field(default=None, description="The judge's one-sentence summary (first sample).")
    notes: list[str] = Field(default_factory=list, description="Scores the pipeline changed, and why.")
    raw: str | None = Field(default=None, description="The judge's raw output when it could not be used.")
    # What each side said on its own, so acceptance (synth/judge/accept.py) and calibration can weigh them.
    eligible: bool = Field(
        default=True,
        description="False when the trajectory cannot be training data whatever the judges say (it failed, has "
        "no final answer, or its task cannot be judged).",
    )
    code_passed: bool | None = Field(
        default=None, description="Every code check passed; None when the rubric has no code check."
    )
    verifiable: bool = Field(
        default=False,
        description="The code checks verify the task's outcome (arguments, final state, reported value, or code "
        "tests), not only that some tool was or was not called: code alone may accept it.",
    )
    calibration: bool = Field(
        default=True,
        description="Counts in the run's judge calibration: the row is in the uniform calibration sample "
        "(judge.calibration_share), or every row is judged (judge.llm_rows=all).",
    )
    llm_passed: bool | None = Field(
        default=None,
        description="The LLM judge's decision on its criteria alone (required criteria above 0, weighted score "
        "at pass_threshold); None when the judge gave no usable reply.",
    )
