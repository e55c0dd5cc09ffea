"""Stable ids: a hash of the content and seed, so re-runs and resumes agree on identity.

Every row id of every stage (and of ``synth eval``) is made here, by ``row_id`` through the one function per
kind of row below, so the stage that plans a row and the code that builds it (the task generator, the episode)
can never disagree on a formula. ``stable_id`` is the hash itself; outside this module it names things that are
not rows (tool ids, sampling seeds).
"""

import hashlib
import json
from typing import Any, Literal

RowKind = Literal["leaf", "agent", "task", "traj", "eval", "dataset", "train", "card", "publish"]


def stable_id(prefix: str, *parts: Any) -> str:
    """Return ``prefix-<16 hex>`` from a canonical JSON encoding of ``parts``."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return f"{prefix}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def row_id(kind: RowKind, *parts: Any) -> str:
    """The id of a row of ``kind``: the resume key of its stage, ``kind-<16 hex>``."""
    return stable_id(kind, *parts)


def leaf_id(payload: dict[str, Any], seed: int) -> str:
    """A tools-stage row: the synthetic tools grown for one domain leaf (``payload`` names the leaf and sizes)."""
    return row_id("leaf", payload, seed)


def agent_id(payload: dict[str, Any], seed: int) -> str:
    """An agents-stage row: ``payload`` holds the toolset, the profile, the domain and the kind."""
    return row_id("agent", payload, seed)


def task_id(agent: str, index: int, difficulty: str, seed: int) -> str:
    """A tasks-stage row: the ``index``-th task of ``difficulty`` for the agent with id ``agent``."""
    return row_id("task", agent, index, difficulty, seed)


def trajectory_id(task: str, task_seed: int, sample: int = 0) -> str:
    """A rollouts-stage row: the ``sample``-th episode of a task; sample 0 keeps the id a one-episode run has
    always had."""
    return row_id("traj", task, task_seed) if sample == 0 else row_id("traj", task, task_seed, sample)


def episode_id(task: str, agent: str, seed: int, tool_calling: str) -> str:
    """A trajectory made outside the rollouts stage (``run_episode`` on its own); the stage gives its episodes
    ``trajectory_id`` instead."""
    return row_id("traj", task, agent, seed, tool_calling)


def verdict_id(trajectory: str) -> str:
    """A judge-stage row: one verdict per trajectory, with the trajectory's id, so the dataset joins them by id."""
    return trajectory


def eval_id(model: str, ident: str, task: str, task_seed: int) -> str:
    """A ``synth eval`` row: one held-out task run by one model (``ident``: what identifies its weights)."""
    return row_id("eval", model, ident, task, task_seed)


def dataset_id(inputs: dict[str, str]) -> str:
    """The dataset stage's one row: the build from these inputs (stage name -> digest of its rows)."""
    return row_id("dataset", inputs)


def train_id(job: dict[str, Any], data: dict[str, str]) -> str:
    """A train-stage row: one training job (its spec without where it runs or how fast) on data of these
    digests (source -> digest of its rows)."""
    return row_id("train", job, data)


def card_id(dataset: str, evaluation: str | None) -> str:
    """The card stage's one row: the card of the dataset row ``dataset`` with the evaluation of these rows."""
    return row_id("card", dataset, evaluation)


def publish_id(repo: str, dataset: str) -> str:
    """The publish stage's one row: the dataset row ``dataset`` pushed to the Hub repo ``repo``."""
    return row_id("publish", repo, dataset)
