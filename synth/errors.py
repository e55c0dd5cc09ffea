"""The one error base for what a user can cause: a bad config, a dead server, a missing input, a bad tool spec.

Every user-facing error derives from ``SynthError`` and says what was wrong (its message) and what to do (its
``hint``). The CLI catches this type alone and prints one message; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SynthError(Exception):
    """Something the user can fix. ``str(err)`` says what was wrong; ``hint`` says what to do about it."""

    hint: str = ""
    exit_code: int = 1  # the CLI's exit status for this error (a config error exits 2, as argument errors do)

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def describe(self) -> str:
        """The message the CLI prints: what was wrong, then what to do."""
        text = str(self) or type(self).__name__
        return f"{text}\n  what to do: {self.hint}" if self.hint else text


FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left on the device; the user's disk quota spent


class DiskFull(SynthError, OSError):
    """A write failed because the disk (or the user's quota on it) is full; the message names what was written."""

    hint = ("free space on that disk (or move runs_dir to another with --set runs_dir=DIR, the run's folder copied "
            "there), then run the same command again: it resumes from the rows and replies already written")


@contextmanager
def writing(path: Path | str, what: str = "") -> Iterator[None]:
    """Raise a full disk met while writing ``path`` (``what`` says what it holds) as ``DiskFull`` naming the file:
    the OS's "[Errno 28] No space left on device" names none. Every other error passes unchanged."""
    try:
        yield
    except DiskFull:
        raise
    except OSError as exc:
        if exc.errno not in FULL:
            raise
        target = exc.filename or path
        raise DiskFull(f"the disk is full: could not write {target}{f' ({what})' if what else ''}: "
                       f"{exc.strerror or exc}; nothing written before was lost") from exc
