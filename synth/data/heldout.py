"""The held-out split: a deterministic share of tasks, chosen by task id alone, that never enters ``train``.

By id (not by row order or seed) so the same task is held out in every round, every resume and every run that
plans it, whatever else changed.
"""

from __future__ import annotations

import hashlib

SALT = "synth-heldout-v1"


def heldout_fraction(task_id: str) -> float:
    """A number in [0, 1) fixed by the task id."""
    digest = hashlib.sha256(f"{SALT}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_heldout(task_id: str, share: float) -> bool:
    """True for about ``share`` of all task ids, always the same ones; ``share`` must lie in [0, 1)."""
    if not 0 <= share < 1:
        raise ValueError(f"held-out share must be in [0, 1), got {share}")
    return heldout_fraction(task_id) < share
