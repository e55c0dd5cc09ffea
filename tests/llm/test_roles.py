"""Per-role endpoints and models (``llm.roles``): each request goes to the pool of the role it names."""

from __future__ import annotations

from synth.config import EndpointConfig, LLMConfig, PipelineConfig
from synth.llm.roles import RoutedPool, role_pools
from synth.stages.base import StageContext
from tests.fixtures.fakes import ScriptedPool

DEFAULT = [EndpointConfig(base_url="http://default:8000/v1")]


def test_role_pools_only_for_roles_that_change_something() -> None:
    cfg = LLMConfig.model_validate({"model": "small", "temperature": 0.7, "roles": {
        "judge": {"endpoints": [{"base_url": "http://big:8000/v1"}], "model": "big", "temperature": 0},
        "user_sim": {"temperature": 1.0},
        "tool_sim": {},
    }})
    pools = role_pools(cfg, DEFAULT)
    assert set(pools) == {"judge", "user_sim"}  # tool_sim changes nothing: it shares the default pool
    assert pools["judge"].urls == ["http://big:8000/v1"] and pools["judge"].config.model == "big"
    assert pools["judge"].config.temperature == 0
    # A role on the default endpoints keeps the default model; only its temperature differs.
    assert pools["user_sim"].urls == ["http://default:8000/v1"] and pools["user_sim"].config.model == "small"
    assert pools["user_sim"].config.temperature == 1.0
    # A role with endpoints of its own and no model name asks its endpoint rather than assume llm.model.
    own = role_pools(LLMConfig.model_validate({"model": "small", "roles": {
        "agent": {"endpoints": [{"base_url": "http://ckpt:8001/v1"}]}}}), DEFAULT)
    assert own["agent"].config.model is None


async def test_routed_pool_sends_each_role_to_its_pool() -> None:
    default, agent = ScriptedPool([{"message": "hi", "stop": False}]), ScriptedPool([{"message": "yo", "stop": True}])
    routed = RoutedPool(default, {"agent": agent})  # type: ignore[arg-type]
    from synth.sim.user import UserReply

    await routed.structured([], UserReply, role="user_sim")
    await routed.structured([], UserReply, role="agent")
    assert [c["role"] for c in default.calls] == ["user_sim"] and [c["role"] for c in agent.calls] == ["agent"]
    assert await routed.model() == "scripted"  # the agent's model is what an episode records


def test_stage_context_hands_out_the_role_pool(tmp_path) -> None:
    default, judge = ScriptedPool([]), ScriptedPool([])
    ctx = StageContext(config=PipelineConfig(runs_dir=tmp_path), pool=default,  # type: ignore[arg-type]
                       role_pools={"judge": judge})  # type: ignore[dict-item]
    assert ctx.llm("judge") is judge and ctx.llm("generator") is default
    assert isinstance(ctx.llm(), RoutedPool)
    assert StageContext(config=ctx.config, pool=default).llm() is default  # type: ignore[arg-type]


def test_a_role_token_budget_is_its_own_and_bounds_its_structured_text() -> None:
    """llm.roles.agent.max_tokens: the agent's requests and its schema's text bound shrink; the simulators keep
    llm.max_tokens (a RoutedPool's config is the agent's, so reply_chars must ask the role's own pool)."""
    from synth.agents.turn import reply_chars

    cfg = LLMConfig.model_validate({"model": "small", "max_tokens": 384, "roles": {"agent": {"max_tokens": 128}}})
    pools = role_pools(cfg, DEFAULT)
    assert set(pools) == {"agent"} and pools["agent"].config.max_tokens == 128
    from synth.llm.client import LLMPool

    default = LLMPool(DEFAULT, cfg)
    routed = RoutedPool(default, pools)
    assert reply_chars(routed, "agent") == 120  # its floor: 128 - 64 would leave an answer no room
    assert reply_chars(routed, "tool_sim") == reply_chars(routed, "user_sim") == 384 - 64
    assert reply_chars(default) == 384 - 64  # a plain pool has one budget
