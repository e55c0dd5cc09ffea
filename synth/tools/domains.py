"""The domain tree that synthetic tools grow from: categories -> domains (seeded from YAML) -> subdomains."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError

from synth.paths import TOOLS_REGISTRY

DOMAINS_DIR = TOOLS_REGISTRY / "domains"


class Domain(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str


class Category(BaseModel):
    category: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    domains: list[Domain] = Field(min_length=1)


def load_categories(directory: Path = DOMAINS_DIR) -> list[Category]:
    out = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            out.append(Category.model_validate(yaml.safe_load(path.read_text())))
        except (ValidationError, yaml.YAMLError) as exc:
            raise ValueError(f"domain seed {path} is invalid: {exc}") from exc
    if not out:
        raise FileNotFoundError(f"no domain seeds (*.yaml) in {directory}")
    return out


def seed_leaves(categories: list[Category], extra_categories: list[str] | None = None) -> list[list[str]]:
    """Every (category, domain) pair, plus the categories of real tools as one-level seeds of their own."""
    leaves = [[c.category, d.name] for c in categories for d in c.domains]
    known = {c.category for c in categories}
    for name in sorted(set(extra_categories or []) - known):
        leaves.append([name, "general"])
    return leaves
