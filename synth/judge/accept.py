"""What accepts a trajectory into ``train``: ``judge.accept`` = llm | verifiable | both | auto.

- ``llm``: the LLM judge's own decision (required criteria above 0, weighted score at ``pass_threshold``).
- ``verifiable``: code checks alone, and only on tasks whose checks verify the outcome (arguments of a call,
  the final world state, a reported value, the coding task's tests); "some tool was called" or "no tool was
  called" proves too little to accept on.
- ``both``: every code check passes and the LLM judge passes (the judge's original rule, ``Verdict.passed``).
- ``auto``: code checks, plus each LLM criterion whose agreement with the code checks on this run
  (``synth.judge.calibration``) reaches ``trust_agreement`` over at least ``calibration_min_pairs`` trajectories
  and beats chance (kappa above 0).
  A verifiable task with no trusted criterion is accepted on its code checks alone; a task that code cannot verify
  is accepted only by trusted criteria, and never when none is trusted.

In every mode a row that fails a quality gate (``synth.judge.gates``, those named in ``judge.gates``) is rejected,
and its acceptance names the gates (``Acceptance.gates``).

Thresholds are never changed here: a subset of criteria is scored against the same ``pass_threshold``, and the
report names the mode, the trusted criteria and their agreement.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field

from synth.config import JudgeStageConfig
from synth.judge.calibration import Calibration, calibrate
from synth.schemas.records import TaskRecord, VerdictRecord
from synth.schemas.rubric import Criterion
from synth.schemas.verdict import Verdict

AcceptedBy = Literal["llm", "verifiable", "both"]


class Acceptance(BaseModel):
    accepted: bool
    by: AcceptedBy | None = Field(default=None, description="What accepted the row; None when rejected.")
    mode: str
    trusted: list[str] = Field(default_factory=list, description="auto: the LLM criteria that took part.")
    reasons: list[str] = Field(default_factory=list, description="Why it was rejected under this mode.")
    gates: list[str] = Field(default_factory=list, description="The quality gates it failed (each rejects it).")


def _code_reasons(v: Verdict) -> list[str]:
    return [r for r in v.reasons if r.startswith("code check")] or ["a code check failed"]


def _llm_reasons(v: Verdict) -> list[str]:
    return [r for r in v.reasons if not r.startswith("code check")] or ["the LLM judge did not pass it"]


def _llm_on(v: Verdict, criteria: list[Criterion], cfg: JudgeStageConfig) -> tuple[bool, list[str]]:
    """The judge's decision on ``criteria`` only, with the configured threshold."""
    from synth.judge.judge import decide

    ids = {c.id for c in criteria}
    passed, _, reasons = decide([], [s for s in v.scores if s.criterion_id in ids], criteria, cfg)
    return passed, reasons


def accept(verdict: Verdict, criteria: list[Criterion], cfg: JudgeStageConfig,
           calibration: Calibration | None = None) -> Acceptance:
    """Whether ``verdict`` (on a task with ``criteria``) enters train under ``cfg.accept`` and the quality gates
    of ``cfg.gates``, and what decided."""
    decision = _by_mode(verdict, criteria, cfg, calibration)
    gated = [g for g in verdict.gates if not g.passed and g.check_id in cfg.gates]
    if not gated:
        return decision
    reasons = [f"quality gate {g.check_id}: {g.detail}" for g in gated]
    return decision.model_copy(update={
        "accepted": False, "by": None, "gates": [g.check_id for g in gated],
        "reasons": reasons + ([] if decision.accepted else decision.reasons)})


def gate_summary(decisions: Iterable[Acceptance]) -> dict[str, Any]:
    """Per gate, the rows it rejected; and the rows that the gates alone rejected (the mode accepted them)."""
    failed: dict[str, int] = {}
    alone = 0
    for a in decisions:
        for g in a.gates:
            failed[g] = failed.get(g, 0) + 1
        alone += bool(a.gates) and all(r.startswith("quality gate ") for r in a.reasons)
    return {"rejected": failed, "rejected_only_by_gates": alone}


def _by_mode(verdict: Verdict, criteria: list[Criterion], cfg: JudgeStageConfig,
             calibration: Calibration | None) -> Acceptance:
    mode = cfg.accept
    if not verdict.eligible:
        return Acceptance(accepted=False, mode=mode, reasons=verdict.reasons or ["not usable as training data"])
    if mode == "llm":
        if verdict.llm_passed:
            return Acceptance(accepted=True, by="llm", mode=mode)
        return Acceptance(accepted=False, mode=mode, reasons=_llm_reasons(verdict))
    if mode == "both":
        if verdict.code_passed is False:
            return Acceptance(accepted=False, mode=mode, reasons=_code_reasons(verdict))
        if not verdict.llm_passed:
            return Acceptance(accepted=False, mode=mode, reasons=_llm_reasons(verdict))
        return Acceptance(accepted=True, by="both" if verdict.code_passed else "llm", mode=mode)
    if verdict.code_passed is False:
        return Acceptance(accepted=False, mode=mode, reasons=_code_reasons(verdict))
    not_verifiable = ("no code check verifies this task's outcome (only whether tools were called), so code "
                      "alone cannot accept it")
    if mode == "verifiable":
        if verdict.verifiable and verdict.code_passed:
            return Acceptance(accepted=True, by="verifiable", mode=mode)
        return Acceptance(accepted=False, mode=mode, reasons=[not_verifiable])
    if mode != "auto":
        raise ValueError(f"unknown judge.accept mode {mode!r}; valid: llm, verifiable, both, auto")
    trusted = [c for c in criteria if calibration is not None and calibration.trusted(c.id)]
    names = [c.id for c in trusted]
    has_scores = bool(verdict.scores)
    if verdict.verifiable and verdict.code_passed:
        if not trusted or not has_scores:
            return Acceptance(accepted=True, by="verifiable", mode=mode)
        ok, reasons = _llm_on(verdict, trusted, cfg)
        if ok:
            return Acceptance(accepted=True, by="both", mode=mode, trusted=names)
        return Acceptance(accepted=False, mode=mode, trusted=names, reasons=reasons)
    if not trusted:
        level = calibration.trust_agreement if calibration else cfg.trust_agreement
        return Acceptance(accepted=False, mode=mode, reasons=[
            f"{not_verifiable}; no LLM criterion of it reached agreement {level:.2f} with the code checks"])
    if not has_scores:
        return Acceptance(accepted=False, mode=mode, trusted=names, reasons=_llm_reasons(verdict))
    ok, reasons = _llm_on(verdict, trusted, cfg)
    if ok:
        return Acceptance(accepted=True, by="llm", mode=mode, trusted=names)
    return Acceptance(accepted=False, mode=mode, trusted=names, reasons=reasons)


def run_acceptance(records: Iterable[VerdictRecord], tasks: dict[str, TaskRecord],
                   cfg: JudgeStageConfig) -> tuple[dict[str, Acceptance], Calibration]:
    """Calibrate on every verdict of the run, then decide each one: {row id: acceptance}, calibration."""
    rows = [r for r in records if r.verdict is not None]
    calibration = calibrate((r.verdict for r in rows if r.verdict), trust_agreement=cfg.trust_agreement,
                            min_pairs=cfg.calibration_min_pairs,
                            sample_share=cfg.calibration_share if cfg.llm_rows == "needed" else 1.0)
    out: dict[str, Acceptance] = {}
    for r in rows:
        task = tasks.get(r.task_id)
        criteria = task.rubric.criteria if task is not None and task.rubric is not None else []
        out[r.id] = accept(r.verdict, criteria, cfg, calibration)  # type: ignore[arg-type]
    return out, calibration
