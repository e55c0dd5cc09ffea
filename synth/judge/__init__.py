"""The judge: code checks decide what code can, an LLM scores the rest against the rubric, a rule decides."""

from synth.judge.checks import run_checks
from synth.judge.judge import decide, judge_trajectory

__all__ = ["decide", "judge_trajectory", "run_checks"]
