"""Helpers for task tests: a scripted pool (control flow only) and the live-server probe.

The scripted pool is a copy of the one in tests/judge/judge_helpers.py (test folders are not packages).
"""

from __future__ import annotations





