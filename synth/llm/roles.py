"""One pool per role (agent, user simulator, tool simulator, judge, generator), from ``llm.roles``.

An episode talks to the agent, the user simulator and the tool simulator through one object; ``RoutedPool`` sends
each request to the pool of the role it names (``role=`` is on every call already, for usage accounting), so the
judge can be a stronger model than the agent it judges, or the agent a checkpoint under test, without the
simulators knowing. A role without its own endpoints uses the default pool.
"""

from __future__ import annotations

from typing import Any

from synth.config import EndpointConfig, LLMConfig
from synth.llm.client import LLMPool


def role_pools(config: LLMConfig, default_endpoints: list[EndpointConfig]) -> dict[str, LLMPool]:
    """A pool for every role in ``llm.roles`` that changes anything; the other roles share the default pool.

    A role that changes only the model, the temperature or the token budget gets its own pool over the default
    endpoints, so the change does not leak into the other roles' requests.
    """
    out: dict[str, LLMPool] = {}
    for role, rc in config.roles.items():
        if not rc.endpoints and rc.model is None and rc.temperature is None and rc.max_tokens is None:
            continue
        # Own endpoints serve their own models: without a name, ask them rather than assume llm.model.
        model = rc.model if rc.model is not None else (None if rc.endpoints else config.model)
        update: dict[str, Any] = {"model": model}
        if rc.temperature is not None:
            update["temperature"] = rc.temperature
        if rc.max_tokens is not None:
            update["max_tokens"] = rc.max_tokens
        out[role] = LLMPool(list(rc.endpoints) or default_endpoints, config.model_copy(update=update))
    return out


class RoutedPool:
    """Looks like an ``LLMPool``; ``chat``/``structured`` go to the pool of their ``role``.

    ``model()`` and ``config`` are those of ``primary`` (the role whose model a row records: the agent's in an
    episode).
    """

    def __init__(self, default: LLMPool, by_role: dict[str, LLMPool], primary: str = "agent") -> None:
        self.default, self.by_role, self.primary = default, by_role, primary

    def for_role(self, role: str | None) -> LLMPool:
        return self.by_role.get(role or self.primary, self.default)

    @property
    def config(self) -> LLMConfig:
        return self.for_role(self.primary).config

    @property
    def usage(self) -> Any:
        return self.default.usage

    async def model(self) -> str:
        return await self.for_role(self.primary).model()

    async def chat(self, messages: list[dict[str, Any]], *, role: str, **kwargs: Any) -> Any:
        return await self.for_role(role).chat(messages, role=role, **kwargs)  # type: ignore[arg-type]

    async def structured(self, messages: list[dict[str, Any]], schema: Any, *, role: str, **kwargs: Any) -> Any:
        return await self.for_role(role).structured(messages, schema, role=role, **kwargs)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        for pool in {id(p): p for p in [self.default, *self.by_role.values()]}.values():
            await pool.aclose()
