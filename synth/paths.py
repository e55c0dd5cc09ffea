"""Where synth keeps things outside the repository (model checkpoints, installed MCP servers)."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$SYNTH_CACHE`` or ``~/.cache/synth``: survives ``git clean`` and is shared between clones."""
    path = Path(os.environ.get("SYNTH_CACHE", Path.home() / ".cache" / "synth"))
    path.mkdir(parents=True, exist_ok=True)
    return path


REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS_REGISTRY = REPO_ROOT / "tools_registry"
RUBRICS = REPO_ROOT / "rubrics"
PIPELINES = REPO_ROOT / "pipelines"
