"""The contract every stage follows: declare its inputs, plan work items with stable ids, process one item into
one row.

A stage names the stages it reads in ``inputs`` and reads them only through its context (``ctx.rows``,
``ctx.summary``, ``ctx.input_file``: ``synth.stages.outputs``), which refuses any other stage; it writes its own rows
(the runner does) and its own files (under ``ctx.out_dir``). ``process`` may fail for one item; the runner turns
that into an error row and goes on. An item that cannot be made here yet (a checkpoint trained on another machine)
raises ``Waiting``: it gets no row, the others go on, and the stage then stops with every such item named.
"""

from __future__ import annotations

import contextlib
import traceback
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import openai
from pydantic import BaseModel, Field

from synth.config import PipelineConfig
from synth.errors import SynthError
from synth.llm.client import LLMPool, ReplyInvalid, cap_raw
from synth.schemas.records import Row, RowError
from synth.schemas.usage import UsageByRole
from synth.stages.outputs import RunOutputs, UndeclaredInput
from synth.stages.summary import StageSummary

__all__ = ["Stage", "StageContext", "StageSummary", "StageWaiting", "UndeclaredInput", "Waiting", "WorkItem"]
R = TypeVar("R", bound=BaseModel)


class Waiting(SynthError):
    """An item that cannot be made on this machine now (its checkpoint is trained elsewhere): it gets no row, and
    the stage stops after its other items, naming every waiting one. Run the stage again once it can be made."""


class StageWaiting(SynthError):
    """A stage stopped with items waiting on something outside it; each ``Waiting`` says what."""

    def __init__(self, stage: str, waiting: list[Waiting]) -> None:
        self.stage, self.waiting = stage, waiting
        hints = list(dict.fromkeys(w.hint for w in waiting if w.hint))
        super().__init__(f"stage {stage!r} stopped with {len(waiting)} item(s) waiting:\n  "
                         + "\n  ".join(str(w) for w in waiting),
                         hint="; ".join(hints) or "run the stage again once they can be made")


class WorkItem(BaseModel):
    id: str = Field(description="The id of the row this item produces; the resume key.")
    seed: int = 0
    payload: dict[str, Any] = Field(default_factory=dict)
    attempt: int = Field(default=0, description="Earlier attempts of this row that failed (set by the runner): a "
                         "new attempt makes its model calls afresh, a resumed one replays those already answered.")


@dataclass
class StageContext:
    config: PipelineConfig
    pool: LLMPool | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    role_pools: dict[str, LLMPool] = field(default_factory=dict)  # llm.roles: per-role endpoints/models
    stage: Stage | None = None  # set by the runner: reads are then limited to this stage's declared inputs

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    @property
    def inputs(self) -> RunOutputs:
        """What this stage may read: its declared inputs (every stage, for a context made outside the runner)."""
        if self.stage is None:
            return RunOutputs(self.run_dir)
        return RunOutputs(self.run_dir, reader=self.stage.name, allowed=self.stage.inputs)

    def rows(self, stage: str, model: type[R]) -> list[R]:
        """Every row of the declared input ``stage`` (failed ones too), as ``model``."""
        return self.inputs.rows(stage, model)

    def summary(self, stage: str) -> StageSummary | None:
        """The summary of the declared input ``stage`` (None before it finished)."""
        return self.inputs.summary(stage)

    def own_rows(self, model: type[R]) -> list[R]:
        """This stage's own rows on disk, from earlier runs (to tell which finished ones are lost)."""
        if self.stage is None:
            raise RuntimeError("this context belongs to no stage, so it has no rows of its own")
        return RunOutputs(self.run_dir).rows(self.stage.name, model)

    def input_file(self, stage: str, name: str) -> Path:
        """A file the declared input ``stage`` keeps beside its rows (e.g. the tools stage's synthetic tools)."""
        return self.inputs.file(stage, name)

    @property
    def out_dir(self) -> Path:
        """This stage's own folder, for the files it writes besides its rows."""
        if self.stage is None:
            raise RuntimeError("this context belongs to no stage, so it has no folder of its own")
        return self.run_dir / self.stage.name

    def llm(self, role: str | None = None) -> LLMPool:
        """The pool of ``role`` (its own endpoints/model from ``llm.roles``, else the default pool); without a
        role, a pool that routes every request by the role it names (an episode's agent, user and tools)."""
        if self.pool is None:
            raise RuntimeError("this stage was started without an LLM pool; it needs one")
        if role is not None:
            return self.role_pools.get(role, self.pool)
        if self.role_pools:
            from synth.llm.roles import RoutedPool

            return RoutedPool(self.pool, self.role_pools)  # type: ignore[return-value]
        return self.pool


class Stage(ABC):
    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ()
    """The stages (registry names) whose outputs this one reads; they must have finished before it starts, they
    are all it may read, and their fingerprints are part of its own."""
    optional: ClassVar[tuple[str, ...]] = ()
    """Those of ``inputs`` read only when they have finished (the card without an evaluation yet). They may come
    and go, so they are not part of the fingerprint: what the stage read of them must be in its item ids."""
    retains: ClassVar[bool] = False
    """Keep rows the current plan does not name (models the evaluation was not asked for this time): they cost
    model calls and a later plan may name them again. Only planned rows are read into the summary."""
    record: ClassVar[type[Row]]
    uses_llm: ClassVar[bool] = True
    local: ClassVar[bool] = False
    """Run in the driver's process, never as Ray shards: a stage of one cheap item that needs the driver's files
    or environment (the dataset build, the push to the Hub)."""
    derived: ClassVar[bool] = False
    """Rows that code computes from the inputs without a model, cheap to redo: when its settings change they are
    recomputed, never refused (``on_change`` governs the stages whose rows cost model calls)."""
    stops: ClassVar[tuple[type[Exception], ...]] = ()
    """Errors that stop the stage instead of becoming an error row: every further item would fail the same way
    (``EndpointUnavailable`` and ``UndeclaredInput`` always do)."""

    @abstractmethod
    def plan(self, ctx: StageContext) -> list[WorkItem]:
        """Every item this stage must produce, with ids that depend only on inputs, config and seed."""

    async def setup(self, ctx: StageContext) -> None:
        """Load inputs once per worker (e.g. the previous stage's rows) into ``ctx.cache``."""

    def concurrency(self, config: PipelineConfig) -> int | None:
        """Items in flight at once in one worker; None: what the endpoints allow."""
        return None

    def group(self, item: WorkItem) -> str:
        """Items of one group run together, one group after another (the episodes of one served model)."""
        return ""

    @contextlib.asynccontextmanager
    async def grouped(self, key: str, ctx: StageContext) -> AsyncIterator[None]:
        """Around the items of group ``key`` (start the model they share, stop it after them)."""
        yield

    @abstractmethod
    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        """Produce the row for ``item``, recording tokens in ``usage``; a raised exception becomes an error row
        that still carries the tokens spent on it."""

    def failed_row(self, item: WorkItem, exc: BaseException, usage: UsageByRole | None = None) -> Row:
        if isinstance(exc, ReplyInvalid):
            error = RowError(kind=exc.kind, message=str(exc), raw=exc.raw)
        elif isinstance(exc, openai.APIStatusError):  # the server refused the request: keep what it said
            error = RowError(kind=f"http_{exc.status_code}", message=str(exc), raw=cap_raw(exc.response.text))
        else:
            # A user-facing error keeps what to do in the row too (a slow server's timeout: which setting to raise).
            message = exc.describe() if isinstance(exc, SynthError) else str(exc)
            # An error raised because of a server's reply (a simulator's, wrapped) keeps that reply; only an error
            # with no reply behind it keeps where it was raised.
            body = _server_body(exc)
            error = RowError(kind=type(exc).__name__, message=message,
                             raw=body if body is not None else "".join(traceback.format_exception(exc))[-2000:])
        return self.record(id=item.id, seed=item.seed, error=error, usage=usage or UsageByRole())

    def lost(self, ctx: StageContext, done: set[str]) -> set[str]:
        """Finished ids to make again because what they describe is gone (a deleted dataset folder)."""
        return set()

    def finish(self, ctx: StageContext, rows: list[Row], summary: StageSummary) -> None:
        """After every row exists: stage-wide work (dedup, outputs for users) and extra summary fields."""

    def summarize(self, rows: list[Row], planned: int) -> StageSummary:
        usage = UsageByRole()
        for row in rows:
            usage.merge(row.usage)
        errors = Counter(row.error.kind for row in rows if row.error)
        return StageSummary(stage=self.name, planned=planned, ok=sum(r.error is None for r in rows),
                            failed=sum(errors.values()), errors=dict(errors), usage=usage)


def _server_body(exc: BaseException) -> str | None:
    """The capped body of the server reply behind ``exc`` (among its causes), if there is one."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ReplyInvalid):
            return cause.raw
        if isinstance(cause, openai.APIStatusError):
            return cap_raw(cause.response.text)
        cause = cause.__cause__ or cause.__context__
    return None
