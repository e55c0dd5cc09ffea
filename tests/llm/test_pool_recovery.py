"""A replica that comes back is used again even under light load: a failed endpoint's penalty lapses after a
cool-down, so the pool probes it with the next request instead of avoiding it for as long as the others are idle.
(Under heavy load the penalty is outweighed by the others' queues anyway: tests/llm/test_replicas.py.)
Both replicas are instant-server processes on loopback; the dead one is a port nobody listens on yet. The pool's
clock is the test's: the cool-down passes when the test says so."""

from __future__ import annotations

from synth.bench import instant_server
from synth.config import EndpointConfig, LLMConfig
from synth.llm.client import LLMPool, cooldown_s
from tests.fixtures.clock import FakeClock
from tests.fixtures.cluster import free_port


async def test_replica_back_after_a_failure_is_used_again_one_request_at_a_time() -> None:
    live, later = free_port(), free_port()
    clock = FakeClock()
    with instant_server.running(live):
        # The dead replica first: on a tie the pool tries it, fails over, and marks it.
        pool = LLMPool([EndpointConfig(base_url=instant_server.base_url(later)),
                        EndpointConfig(base_url=instant_server.base_url(live))], LLMConfig(max_retries=3),
                       clock=clock)  # fmt: skip
        for i in range(3):  # one at a time: the live replica never has more than one request assigned
            await pool.chat([{"role": "user", "content": f"a {i}"}], role="agent", seed=i)
        assert instant_server.get_stats(live)["requests"] == 3
        with instant_server.running(later):
            clock.advance(cooldown_s(1) * 0.9)  # within the cool-down: still avoided, though it answers now
            await pool.chat([{"role": "user", "content": "b"}], role="agent", seed=0)
            assert instant_server.get_stats(later)["requests"] == 0
            clock.advance(cooldown_s(1) * 0.2)  # past it: tried again, and used
            for i in range(3):
                await pool.chat([{"role": "user", "content": f"c {i}"}], role="agent", seed=i)
            assert instant_server.get_stats(later)["requests"] >= 1  # the replica that came back took requests
        await pool.aclose()


def test_the_cool_down_stays_at_its_cap_however_long_an_endpoint_has_failed() -> None:
    assert cooldown_s(1) == 2.0 and cooldown_s(6) == 60.0
    assert cooldown_s(5000) == 60.0  # 2.0 ** 5000 overflows a float
