"""The critic's scoring: the probability of pass read from the score token, the evidence rule, AUC by ranks, and
the judge role's job spec."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from synth.critic.report import auc, metrics
from synth.critic.score import Judgment, score_distribution


def _tok(token: str, p: float, top: dict[str, float] | None = None) -> SimpleNamespace:
    tops = [SimpleNamespace(token=t, logprob=math.log(q)) for t, q in (top or {}).items()]
    return SimpleNamespace(token=token, logprob=math.log(p), top_logprobs=tops)


def test_score_distribution_reads_the_token_after_the_score_key() -> None:
    reply = ['{"scores":[{"criterion_id":"x","evidence":"', "0 apples", '","', 'score":', "2", "}]", "}"]
    tokens = [_tok(t, 0.9) for t in reply]
    tokens[4] = _tok("2", 0.6, {"2": 0.6, "0": 0.2, "1": 0.1, "}": 0.1})
    dist = score_distribution(SimpleNamespace(content=tokens))
    assert dist is not None
    assert dist["2"] == pytest.approx(0.6 / 0.9) and dist["0"] == pytest.approx(0.2 / 0.9)
    # The "0" inside the quote is not the score.
    assert score_distribution(SimpleNamespace(content=tokens[:3])) is None
    assert score_distribution(None) is None


def test_auc_by_ranks() -> None:
    assert auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert auc([0.5, 0.5, 0.5, 0.5], [False, True, False, True]) == 0.5
    assert auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75  # sklearn's roc_auc_score gives 0.75
    assert auc([0.3, 0.4], [True, True]) is None


def test_a_positive_score_without_its_quote_counts_as_fail() -> None:
    rows = [Judgment(id="a", criterion_id="c", check_kind="k", passed=True, score=2, quote_found=True, p_pass=0.9,
                     p_pass_unchecked=0.9),
            Judgment(id="b", criterion_id="c", check_kind="k", passed=False, score=2, quote_found=False,
                     p_pass=0.0, p_pass_unchecked=0.9),
            Judgment(id="c", criterion_id="c", check_kind="k", passed=False, score=0)]
    m = metrics(rows)
    assert m.accuracy == 1.0 and m.auc == 1.0
    assert m.quotes_found == 0.5 and m.positive_scores == 2
    assert m.auc_unchecked == 0.75
    assert m.score_gap == 0.9


def test_judge_job_trains_on_critic_files_and_agent_jobs_dump_as_before(tmp_path: Path) -> None:
    from synth.critic.train import critic_job
    from synth.train.job import DataSource, TrainJob

    agent = TrainJob(name="a", data=[DataSource(files=[tmp_path / "x.jsonl"])], output_dir=tmp_path / "o")
    assert "role" not in agent.model_dump()  # job files, stage row ids and fingerprints of agent jobs unchanged
    with pytest.raises(ValueError, match="critic example files"):
        TrainJob(name="j", role="judge", data=[DataSource(dataset=tmp_path)], output_dir=tmp_path / "o")
    (tmp_path / "train.jsonl").write_text("")
    (tmp_path / "summary.json").write_text(json.dumps({"runs": ["r"], "heldout_share": 0.4, "max_tokens": 640,
                                                       "candidates": 0}))
    job = critic_job(tmp_path, name="judge-adamw", output_dir=tmp_path / "out", optimizer="adamw")
    assert job.role == "judge" and job.optimizer == "adamw" and job.heldout_share == 0.4
    assert job.data[0].files == [tmp_path / "train.jsonl"]
    again = TrainJob.model_validate(json.loads(json.dumps(job.model_dump(mode="json"))))
    assert again.role == "judge"


class _ChatPool:
    """Answers ``chat`` with one fixed verdict (no log-probabilities), counting the requests."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.calls = 0

    async def chat(self, messages, **params):  # type: ignore[no-untyped-def]
        from synth.schemas.usage import Usage

        self.calls += 1
        return SimpleNamespace(content=self.reply, usage=Usage(prompt_tokens=100, completion_tokens=20), raw=None)


async def test_judgments_are_journaled_and_not_asked_again(tmp_path: Path) -> None:
    from synth.critic.data import build, load_examples
    from synth.critic.score import judge_all
    from tests.fixtures.critic import SHARE, write_critic_run

    build([write_critic_run(tmp_path / "runs")], tmp_path / "c", heldout_share=SHARE)
    examples = [e for e in load_examples(tmp_path / "c" / "heldout.jsonl") if e.passed][:2]
    quote = examples[0].evidence
    reply = json.dumps({"scores": [{"criterion_id": examples[0].criterion_id, "evidence": quote, "score": 2}],
                        "summary": "s"})
    pool = _ChatPool(reply)
    journal = tmp_path / "j.jsonl"
    first = await judge_all(pool, examples[:1], journal=journal)  # type: ignore[arg-type]
    assert pool.calls == 1 and first.judgments[0].quote_found and first.judgments[0].p_pass == 1.0
    again = await judge_all(pool, examples, journal=journal)  # type: ignore[arg-type]
    assert pool.calls == 2  # only the new example was asked
    assert again.judgments[0] == first.judgments[0]
    assert len(journal.read_text().splitlines()) == 2


def test_report_from_journaled_judgments_has_the_issue_shape(tmp_path: Path) -> None:
    from synth.config import PipelineConfig
    from synth.critic.data import build, load_examples
    from synth.critic.report import run_report
    from synth.critic.score import _Journaled
    from tests.fixtures.critic import SHARE, write_critic_run

    data = tmp_path / "c"
    build([write_critic_run(tmp_path / "runs")], data, heldout_share=SHARE)
    held = load_examples(data / "heldout.jsonl")

    def journal(name: str, right: bool) -> None:
        rows = [Judgment(id=e.id, criterion_id=e.criterion_id, check_kind=e.check_kind, passed=e.passed,
                         score=2 if e.passed == right else 0, evidence=e.evidence,
                         quote_found=True if e.passed == right else None,
                         p_pass_unchecked=1.0 if e.passed == right else 0.0, prompt_tokens=500,
                         completion_tokens=50)
                for e in held]
        (data / f"judgments-{name}.jsonl").write_text(
            "".join(_Journaled(judgment=j, wall_s=10.0).model_dump_json() + "\n" for j in rows))

    journal("raw", right=False)
    journal("critic", right=True)
    # Every judgment is journaled: no server is asked (none runs here), the report is written from them.
    js, md = run_report(data, [f"critic={tmp_path / 'ckpt'}"], tmp_path / "out" / "critic", PipelineConfig(),
                        limit=None, concurrency=4, port=8799, command="synth critic report")
    body = json.loads(js.read_text())
    assert body["n"] == len(held)
    assert body["trained"]["auc"] == 1.0 and body["trained"]["accuracy"] == 1.0
    assert body["trained"]["quotes_found"] == 1.0
    assert body["raw"]["auc"] < 0.5 and set(body["raw"]) >= {"auc", "accuracy", "quotes_found"}
    assert body["trained"]["cost"]["prompt_tokens_per_row"] == 500
    assert "| critic | 1.000 | 1.000 |" in md.read_text()


def test_evidence_rule_keeps_a_real_quotes_probability_and_zeroes_an_invented_one(tmp_path: Path) -> None:
    from synth.critic.data import build, load_examples
    from synth.critic.score import evidence_rule
    from tests.fixtures.critic import SHARE, write_critic_run

    build([write_critic_run(tmp_path / "runs")], tmp_path / "c", heldout_share=SHARE)
    e = next(x for x in load_examples(tmp_path / "c" / "heldout.jsonl") if x.evidence)
    base = Judgment(id=e.id, criterion_id=e.criterion_id, check_kind=e.check_kind, passed=e.passed,
                    p_pass_unchecked=0.3)
    zero_real = evidence_rule(base.model_copy(update={"score": 0, "evidence": e.evidence}), e)
    assert zero_real.p_pass == 0.3 and zero_real.quote_found is None and not zero_real.predicted
    two_real = evidence_rule(base.model_copy(update={"score": 2, "evidence": e.evidence}), e)
    assert two_real.quote_found and two_real.predicted and two_real.p_pass == 0.3
    two_made_up = evidence_rule(base.model_copy(update={"score": 2, "evidence": "1.1.1.1.1.1.1.1.1"}), e)
    assert two_made_up.quote_found is False and not two_made_up.predicted and two_made_up.p_pass == 0.0
