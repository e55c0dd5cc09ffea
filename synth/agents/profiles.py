"""Agent profile ingredients, loaded from ``rubrics/agent_profiles.yaml`` and drawn with a seed."""

from __future__ import annotations

import random
from functools import cache

import yaml
from pydantic import BaseModel, Field, ValidationError

from synth.errors import SynthError
from synth.paths import RUBRICS

PROFILES_FILE = RUBRICS / "agent_profiles.yaml"


class ProfilesError(SynthError, ValueError):
    """The agent profile file cannot be used; the message names the file and what is wrong in it."""

    hint = f"fix {PROFILES_FILE.name} (`git checkout rubrics/` restores the shipped file)"


class ProfileSpace(BaseModel):
    roles: list[str] = Field(min_length=1)
    tones: list[str] = Field(min_length=1)
    policies: list[str] = Field(min_length=2)
    constraints: list[str] = Field(min_length=1)


class Profile(BaseModel):
    role: str
    tone: str
    policies: list[str]
    constraints: list[str]


@cache
def load_space() -> ProfileSpace:
    try:
        return ProfileSpace.model_validate(yaml.safe_load(PROFILES_FILE.read_text()))
    except (ValidationError, yaml.YAMLError) as exc:
        raise ProfilesError(f"{PROFILES_FILE} is invalid: {exc}") from exc


def draw_profile(rng: random.Random) -> Profile:
    space = load_space()
    return Profile(
        role=rng.choice(space.roles),
        tone=rng.choice(space.tones),
        policies=rng.sample(space.policies, k=min(len(space.policies), rng.randint(2, 3))),
        constraints=rng.sample(space.constraints, k=1),
    )
