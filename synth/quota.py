"""Quota budgets inside a round: once the run's time or tokens are spent, no new row starts.

The pipeline writes the budget into the config it sends to the stages (``quota.stop_at``, a Unix time, and
``quota.tokens_left`` for the stage); each worker checks it before every row, so a round stops dispatching as soon
as the budget is gone instead of finishing a round that may be thousands of rows long. Rows in flight finish and
are kept; the rest stay pending for a later resume. With several workers each may spend its share of the tokens.
"""

from __future__ import annotations

import time
from typing import Any

from synth.config import PipelineConfig


def worker_tokens(pools: list[Any]) -> int:
    """Tokens this worker's pools have spent so far (prompt and completion, every role)."""
    total = 0
    for pool in {id(p): p for p in pools if p is not None}.values():
        usage = pool.usage.total()
        total += usage.prompt_tokens + usage.completion_tokens
    return total


def stop_reason(config: PipelineConfig, pools: list[Any]) -> str | None:
    """Why no new row may start now, or None while the budget lasts."""
    quota = config.quota
    if quota.stop_at is not None and time.time() >= quota.stop_at:
        return f"time budget spent (quota.max_wall_s {quota.max_wall_s:.0f}s)"
    if quota.tokens_left is not None:
        share = quota.tokens_left / max(1, config.ray.workers)
        if worker_tokens(pools) >= share:
            return f"token budget spent (quota.max_tokens {quota.max_tokens})"
    return None


def budgeted(config: PipelineConfig) -> bool:
    return config.quota.stop_at is not None or config.quota.tokens_left is not None


def next_agent_count(count: int, accepted: int, target: int, max_growth: float) -> int:
    """Agents for the next round: what the acceptance rate so far predicts is needed, at most ``max_growth``
    times this round's (with none accepted the rate is unknown, so the bound decides), and at least one more."""
    rate = max(accepted, 1) / max(1, count)
    wanted = count + int((target - accepted) / rate) + 1
    return max(count + 1, min(wanted, int(count * max_growth)))
