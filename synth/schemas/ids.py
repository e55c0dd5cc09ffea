"""Stable row ids: a hash of the content and seed, so re-runs and resumes agree on identity."""

import hashlib
import json
from typing import Any


def stable_id(prefix: str, *parts: Any) -> str:
    """Return ``prefix-<16 hex>`` from a canonical JSON encoding of ``parts``."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return f"{prefix}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"
