"""The expected wall time printed before a run follows the measured rates and the run's size."""

from synth.config import load_config
from synth.llm.rate import RateProbe, expected_run_s


def _probe(single: float, batched: float) -> RateProbe:
    return RateProbe(base_url="http://x/v1", single_tokens_per_s=single, batched_tokens_per_s=batched, batch=16,
                     probe_s=1.0)


def test_estimate_matches_the_measured_default_run_and_scales() -> None:
    default = load_config()
    # The runs it was fitted on, within a quarter: 42 / 234 tokens/s measured and 294 s taken; the server
    # throttled to the AVX2-only machine's rates, 10.5 / 69 and 823 s.
    assert 0.75 * 294 <= expected_run_s(default, _probe(42, 234)) <= 1.25 * 294
    assert 0.75 * 823 <= expected_run_s(default, _probe(10.5, 69)) <= 1.25 * 823
    slow = expected_run_s(default, _probe(12, 52))  # the AVX2-only machine's fp32 rates (design brief)
    assert slow > 3 * expected_run_s(default, _probe(46, 239))
    bigger = load_config(overrides=["agents.count=12"])
    assert expected_run_s(bigger, _probe(46, 239)) > expected_run_s(default, _probe(46, 239))
    assert expected_run_s(default, _probe(46, 239), endpoints=2) < expected_run_s(default, _probe(46, 239))
