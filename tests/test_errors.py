"""``synth.errors.writing``: a full disk (or quota) is said naming the file; any other write error passes as it is."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from synth.errors import DiskFull, SynthError, writing


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_names_the_file_and_what_it_holds(tmp_path: Path, code: int) -> None:
    target = tmp_path / "rows.jsonl"
    with pytest.raises(DiskFull) as err, writing(target, "the rows"):
        raise OSError(code, "No space left on device")
    assert isinstance(err.value, SynthError) and isinstance(err.value, OSError)
    assert str(target) in str(err.value) and "(the rows)" in str(err.value)
    assert "nothing written before was lost" in str(err.value) and "runs_dir" in err.value.hint


def test_the_os_named_file_wins(tmp_path: Path) -> None:
    with pytest.raises(DiskFull, match=r"inner\.bin"), writing(tmp_path):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "inner.bin"))


def test_other_errors_pass_unchanged(tmp_path: Path) -> None:
    with pytest.raises(PermissionError), writing(tmp_path):
        raise PermissionError(errno.EACCES, "denied")
