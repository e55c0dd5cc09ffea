"""The one way to read what a run's stages wrote: their rows, summaries, fingerprints and the files they keep
beside their rows.

A stage reads only the stages it declares in ``Stage.inputs``: the runner gives it a ``RunOutputs`` bound to that
list, and reading any other stage raises ``UndeclaredInput`` naming the stage and the declaration to add. So what
a stage depends on is written in one line of its class (the runner checks those inputs have finished, and the
fingerprint chains through them), never discovered by reading another stage's folder. Code outside any stage (the
CLI, ``synth eval``, reports, tests) opens an unbound ``RunOutputs`` and may read every stage.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from synth.stages import fingerprint, registry
from synth.stages.store import StageStore, content_of
from synth.stages.summary import SUMMARY, StageSummary

R = TypeVar("R", bound=BaseModel)

# Where a stage keeps its rows, summary and fingerprint, when not in ``runs/<run>/<stage>/``: the dataset's folder
# is the dataset itself (hf/, data/, sft/, README.md and its summary.json, as the Hub and `load_from_disk` read
# it), which each build replaces whole, so the stage's own records live beside it.
STORE_FOLDERS: dict[str, str] = {"dataset": "dataset.stage"}


class UndeclaredInput(RuntimeError):
    """A stage read a stage it does not list in its ``inputs``: a bug in the stage, not in the data."""


def store_dir(run_dir: Path, stage: str) -> Path:
    """The folder of ``stage``'s rows (journal, ``data.parquet``), ``summary.json`` and ``fingerprint.json``."""
    return run_dir / STORE_FOLDERS.get(stage, stage)


class RunOutputs:
    """Read access to a run's stages; bound to ``allowed`` (a stage's declared inputs) when ``reader`` is set."""

    def __init__(self, run_dir: Path, reader: str | None = None, allowed: Iterable[str] | None = None) -> None:
        self.run_dir = run_dir
        self.reader = reader
        self.allowed = None if allowed is None else tuple(allowed)

    def _check(self, stage: str) -> None:
        if self.allowed is not None and stage not in self.allowed:
            declared = ", ".join(repr(s) for s in self.allowed) or "none"
            raise UndeclaredInput(
                f"stage {self.reader!r} read the outputs of stage {stage!r}, which it does not declare as an input "
                f"(its inputs: {declared}); add {stage!r} to the `inputs` of the {self.reader!r} stage class")

    def store(self, stage: str) -> StageStore:
        self._check(stage)
        return StageStore(store_dir(self.run_dir, stage))

    def finished(self, stage: str) -> bool:
        """Whether ``stage`` has run to completion in this run (its rows were compacted to Parquet)."""
        return self.store(stage).parquet.exists()

    def rows(self, stage: str, model: type[R]) -> list[R]:
        """Every row ``stage`` holds (failed ones too: check ``error``), as ``model``: the stage's own row model
        or a base of it (pydantic would read another model's rows into ``model`` without a word)."""
        store = self.store(stage)
        if stage in registry.STAGES:
            record = registry.stage_class(stage).record
            if not issubclass(record, model):
                raise TypeError(f"stage {stage!r} holds {record.__name__} rows; read them as {record.__name__}, "
                                f"not {model.__name__}")
        return store.read(model)

    def summary(self, stage: str) -> StageSummary | None:
        path = self.store(stage).dir / SUMMARY
        return StageSummary.model_validate_json(path.read_text()) if path.exists() else None

    def fingerprint(self, stage: str) -> dict[str, Any] | None:
        """What shaped ``stage``'s rows (``synth.stages.fingerprint``); None before it ran."""
        return fingerprint.read(self.store(stage).dir)

    def dir(self, stage: str) -> Path:
        """The folder of what ``stage`` makes for users and later stages besides its rows (tools'
        ``synthetic.jsonl``, the dataset itself)."""
        self._check(stage)
        return self.run_dir / stage

    def file(self, stage: str, name: str) -> Path:
        return self.dir(stage) / name

    def digest(self, stage: str) -> str:
        """A hash of every row ``stage`` holds (id, outcome, content): equal exactly when the rows are."""
        h = hashlib.sha256()
        for row in sorted(self.store(stage).raw_rows(), key=lambda r: r["id"]):
            h.update(json.dumps([row["id"], row["ok"], content_of(row["record"])]).encode())  # not where it ran
            h.update(b"\n")
        return h.hexdigest()[:16]
