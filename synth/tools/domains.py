"""The domain tree that synthetic tools grow from: categories -> domains (seeded from YAML) -> subdomains."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError

from synth.paths import TOOLS_REGISTRY
from synth.tools.registry import RegistryMissing
from synth.tools.validate import RegistryFileError

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
            raise RegistryFileError(f"domain seed {path} is invalid: {exc}",
                                    hint="fix that file (`git checkout tools_registry/` restores the shipped "
                                    "seeds)") from exc
    if not out:
        raise RegistryMissing(f"no domain seeds (*.yaml) in {directory}",
                              hint="`git checkout tools_registry/` restores the shipped seeds")
    return out


def seed_leaves(categories: list[Category], extra_categories: list[str] | None = None) -> list[list[str]]:
    """Every (category, domain) pair, plus the categories of real tools as one-level seeds of their own."""
    leaves = [[c.category, d.name] for c in categories for d in c.domains]
    known = {c.category for c in categories}
    for name in sorted(set(extra_categories or []) - known):
        leaves.append([name, "general"])
    return leaves
