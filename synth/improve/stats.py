"""Comparing two optimizers' models on the same held-out tasks, seed by seed.

One seed's pass rate on a few dozen tasks moves by several tasks from seed to seed, more than two optimizers
may differ, so a comparison pairs the models trained with the same seed on the same data and counts the tasks
one passes and the other does not. The sign test says how often a split at least that uneven comes by chance
if neither optimizer were better.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def sign_test(a: int, b: int) -> float:
    """Two-sided exact sign test on discordant pairs (tasks both or neither pass carry no information)."""
    n, k = a + b, min(a, b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def paired(passed: Mapping[int, Mapping[str, set[str]]], a: str = "muonclip", b: str = "adamw") -> dict:
    """``passed``: seed -> optimizer -> the task ids its model passed. Per seed that has both optimizers, the
    tasks only one of them passes, and the sign test over every seed's discordant tasks together."""
    seeds = {s: {f"{a}_only": len(p[a] - p[b]), f"{b}_only": len(p[b] - p[a]), "both": len(p[a] & p[b])}
             for s, p in sorted(passed.items()) if a in p and b in p}
    only_a = sum(v[f"{a}_only"] for v in seeds.values())
    only_b = sum(v[f"{b}_only"] for v in seeds.values())
    return {"seeds": seeds, f"{a}_only": only_a, f"{b}_only": only_b, "sign_test_p": sign_test(only_a, only_b)}
