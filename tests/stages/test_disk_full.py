"""A full disk met by a stage's writes: one message naming the file, saying nothing written before was lost, and a
run that resumes from what was written once there is space again."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from synth.config import PipelineConfig, load_config
from synth.errors import DiskFull
from synth.schemas.records import AgentRecord, Row
from synth.schemas.usage import UsageByRole
from synth.stages import registry
from synth.stages import store as store_module
from synth.stages.base import Stage, StageContext, WorkItem
from synth.stages.runner import run_stage
from synth.stages.store import StageStore

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


class Fills(Stage):
    name = "fills"
    record = AgentRecord
    uses_llm = False

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        return [WorkItem(id=f"fills-{i}", seed=i) for i in range(4)]

    def concurrency(self, config: PipelineConfig) -> int | None:
        return 1  # one row after another: the disk fills after the first

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        return AgentRecord(id=item.id, seed=item.seed, name=item.id)


class _FillsUp:
    """A journal file that takes ``room`` lines, then fails as a full disk does (or with ``error``)."""

    def __init__(self, fh: Any, room: int, error: OSError = ENOSPC) -> None:
        self._fh, self.room, self.error = fh, room, error

    def write(self, text: str) -> int:
        if self.room <= 0:
            raise self.error
        self.room -= 1
        return self._fh.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PipelineConfig:
    monkeypatch.setitem(registry.STAGES, Fills.name, f"{__name__}:{Fills.__name__}")
    return load_config(overrides=[f"runs_dir={tmp_path}", "run=r", "ray.enabled=false"])


def test_a_full_disk_names_the_journal_and_the_run_resumes(cfg: PipelineConfig,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Path] = []
    real_open = Path.open

    def open_journal(path: Path, *args: Any, **kwargs: Any) -> Any:
        fh = real_open(path, *args, **kwargs)
        if path.parent.name == "journal" and "a" in (args[0] if args else kwargs.get("mode", "r")):
            opened.append(path)
            return _FillsUp(fh, room=1)
        return fh

    with monkeypatch.context() as m:
        m.setattr(Path, "open", open_journal)
        with pytest.raises(DiskFull) as err:
            run_stage(Fills.name, cfg, [], progress=False)
    message = err.value.describe()
    assert str(opened[0]) in message and "disk is full" in message
    assert "nothing written before was lost" in message and "resumes" in err.value.hint
    again = run_stage(Fills.name, cfg, [], progress=False)  # space again: the row written before is kept
    assert again.resumed == 1 and again.ok == 4


def test_a_full_disk_while_writing_the_parquet_file_keeps_the_journal(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store = StageStore(tmp_path / "stage")
    writer = store_module.JournalWriter(store.new_journal())
    writer.write(AgentRecord(id="a", seed=0, name="a"))
    writer.close()

    def half_written(table: Any, where: Path) -> None:
        Path(where).write_bytes(b"PAR1")
        raise ENOSPC

    monkeypatch.setattr(store_module.pq, "write_table", half_written)
    with pytest.raises(DiskFull, match=r"data\.parquet"):
        store.compact()
    assert [p.name for p in store.dir.iterdir() if p.is_file()] == []  # no half-written file holds the space
    assert store.done_ids() == {"a"}  # the journal is still there to read


def test_other_write_errors_pass_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = store_module.JournalWriter(tmp_path / "part.jsonl")
    monkeypatch.setattr(writer, "_fh", _FillsUp(writer._fh, room=0, error=PermissionError(errno.EACCES, "denied")))
    with pytest.raises(PermissionError):
        writer.write(AgentRecord(id="a", seed=0, name="a"))
