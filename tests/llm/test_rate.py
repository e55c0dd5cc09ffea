"""The expected wall time printed before a run follows the measured rates and the run's size."""

from synth.config import load_config
from synth.llm.rate import RateProbe, expected_run_s


def _probe(single: float, batched: float) -> RateProbe:
    return RateProbe(base_url="http://x/v1", single_tokens_per_s=single, batched_tokens_per_s=batched, batch=16,
                     probe_s=1.0)


def test_estimate_matches_the_measured_default_run_and_scales() -> None:
    default = load_config()
    # Within a quarter of the wall times it was fitted on (docs/studies/cpu-serving.md): 294 s at 42 / 234 tokens/s
    # measured; 823 s with the server throttled to the AVX2-only machine's rates, 10.5 / 69.
    assert 0.75 * 294 <= expected_run_s(default, _probe(42, 234)) <= 1.25 * 294
    assert 0.75 * 823 <= expected_run_s(default, _probe(10.5, 69)) <= 1.25 * 823
    slow = expected_run_s(default, _probe(12, 52))  # rates of an AVX2-only CPU in fp32
    assert slow > 3 * expected_run_s(default, _probe(46, 239))
    bigger = load_config(overrides=["agents.count=12"])
    assert expected_run_s(bigger, _probe(46, 239)) > expected_run_s(default, _probe(46, 239))
    assert expected_run_s(default, _probe(46, 239), endpoints=2) < expected_run_s(default, _probe(46, 239))
