"""The one error base for what a user can cause: a bad config, a dead server, a missing input, a bad tool spec.

Every user-facing error derives from ``SynthError`` and says what was wrong (its message) and what to do (its
``hint``). The CLI catches this type alone and prints one message; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


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
