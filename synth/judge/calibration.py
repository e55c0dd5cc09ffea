"""Judge calibration after K2's closed-loop critic: how often the LLM judge agrees with the code checks.

On every trajectory where both apply (the rubric has code checks that verify the outcome, and the judge gave a
usable reply), the code's decision is taken as the reference and compared with

- overall: the LLM judge's own decision (``Verdict.llm_passed``), and
- per criterion: whether the judge scored the criterion above 0 (the line a required criterion must clear).

Agreement is the share of pairs where both say the same. Cohen's kappa is reported beside it because a judge
that always says "fail" agrees with code that nearly always fails, and kappa shows that this is chance.

Only rows of the calibration sample count (``Verdict.calibration``: a uniform share of rows fixed by id, or all of
them with ``judge.llm_rows=all``). Rows the judge scored because no code check had rejected them are left out:
counting them would tilt the agreement toward rows that passed.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

from synth.schemas.verdict import Verdict


class Agreement(BaseModel):
    pairs: int = Field(description="Trajectories judged by both this criterion (or the judge) and code checks.")
    agree: int = 0
    both_pass: int = Field(default=0, description="Code and judge both said pass.")
    code_only: int = Field(default=0, description="Code passed, the judge said fail.")
    llm_only: int = Field(default=0, description="The judge said pass, code failed.")
    both_fail: int = 0

    @property
    def agreement(self) -> float | None:
        return self.agree / self.pairs if self.pairs else None

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa: agreement beyond chance; None without pairs, 0 when chance explains it all."""
        n = self.pairs
        if not n:
            return None
        observed = self.agree / n
        code_yes = (self.both_pass + self.code_only) / n
        llm_yes = (self.both_pass + self.llm_only) / n
        expected = code_yes * llm_yes + (1 - code_yes) * (1 - llm_yes)
        return 0.0 if expected >= 1 else (observed - expected) / (1 - expected)

    def add(self, code: bool, llm: bool) -> None:
        self.pairs += 1
        self.agree += code == llm
        if code and llm:
            self.both_pass += 1
        elif code:
            self.code_only += 1
        elif llm:
            self.llm_only += 1
        else:
            self.both_fail += 1

    def summary(self) -> dict[str, float | int | None]:
        return {"pairs": self.pairs, "agreement": _round(self.agreement), "kappa": _round(self.kappa),
                "both_pass": self.both_pass, "code_only": self.code_only, "llm_only": self.llm_only,
                "both_fail": self.both_fail}


class Calibration(BaseModel):
    overall: Agreement = Field(default_factory=lambda: Agreement(pairs=0))
    criteria: dict[str, Agreement] = Field(default_factory=dict)
    trust_agreement: float = Field(description="The level a criterion's agreement must reach to be trusted.")
    min_pairs: int = Field(description="Pairs a criterion needs before its agreement counts.")
    sample_share: float = Field(default=1.0, description="Share of the run's rows in the calibration sample.")

    def trusted(self, criterion_id: str) -> bool:
        """Whether ``auto`` lets this criterion's score decide: enough pairs, agreement at the level, and better
        than chance (kappa above 0). Where the code checks say the same thing every time (nothing ever passes),
        agreement shows nothing about telling good from bad, so nothing is trusted."""
        a = self.criteria.get(criterion_id)
        return bool(a and a.pairs >= self.min_pairs and a.agreement is not None
                    and a.agreement >= self.trust_agreement and (a.kappa or 0.0) > 0)

    @property
    def trusted_criteria(self) -> list[str]:
        return sorted(c for c in self.criteria if self.trusted(c))

    def summary(self) -> dict:
        return {"trust_agreement": self.trust_agreement, "min_pairs": self.min_pairs, "sample_share": self.sample_share,
                "overall": self.overall.summary(),
                "criteria": {c: {**a.summary(), "trusted": self.trusted(c)} for c, a in sorted(self.criteria.items())},
                "trusted_criteria": self.trusted_criteria}


def paired(verdict: Verdict) -> bool:
    """Both sides apply: a usable trajectory in the calibration sample, outcome-verifying code checks, and a
    usable judge reply."""
    return (verdict.eligible and verdict.calibration and verdict.verifiable and verdict.code_passed is not None
            and verdict.llm_passed is not None and bool(verdict.scores))


def calibrate(verdicts: Iterable[Verdict], *, trust_agreement: float, min_pairs: int,
              sample_share: float = 1.0) -> Calibration:
    cal = Calibration(trust_agreement=trust_agreement, min_pairs=min_pairs, sample_share=sample_share)
    for v in verdicts:
        if not paired(v):
            continue
        code = bool(v.code_passed)
        cal.overall.add(code, bool(v.llm_passed))
        for s in v.scores:
            cal.criteria.setdefault(s.criterion_id, Agreement(pairs=0)).add(code, s.score > 0)
    return cal


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
