"""Tool failures, raised by tool implementations (real servers, the sandbox, the simulator) as plain exceptions.

One boundary, ``synth.sim.episode.answer_call``, turns any exception a tool raises into the tool message the
transcript records (after tau2-bench): a ``ToolError``'s text is the message as a real server would word it
(``str(exc)``, e.g. ``"Error: invalid arguments for tool get_time: ..."``); any other exception becomes
``"Error: tool <name> failed: <Type>: <message>"``. The attributes say how the call was answered, for its
``CallRecord``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

CallMode = Literal["real", "simulated", "schema_error", "unknown_tool", "sandbox"]
Injected = Literal["none", "error", "timeout", "empty", "partial"]


class ToolError(Exception):
    """A tool call that failed the way a tool fails: ``str(exc)`` is exactly the tool message's content.

    ``mode``: how the call was answered (None: the boundary uses the tool's route); ``injected``: the simulated
    failure this is, if any; ``server``: the MCP server that answered; ``patch_applied`` / ``patch_error``: a
    simulated call's state change and why it was dropped.
    """

    mode: ClassVar[CallMode | None] = None

    def __init__(
        self,
        message: str,
        *,
        server: str | None = None,
        injected: Injected = "none",
        patch_applied: bool | None = None,
        patch_error: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.server = server
        self.injected: Injected = injected
        self.patch_applied = patch_applied
        self.patch_error = patch_error

    def __str__(self) -> str:
        return self.message


class UnknownTool(ToolError):
    """The call names a tool the agent does not have."""

    mode = "unknown_tool"


class InvalidArguments(ToolError):
    """The arguments are not JSON, not an object, or break the tool's JSON Schema."""

    mode = "schema_error"


class ToolUnavailable(ToolError):
    """A real server that would not start, or has stopped."""

    mode = "real"


class ToolTimeout(ToolError):
    """The tool did not answer in time."""


class ToolFailed(ToolError):
    """The tool answered that the call failed (a server's error result, a refused request, a simulated error)."""


class ChangeRejected(ToolFailed):
    """A simulated call whose state change could not be applied: nothing changed, and the call says so."""

    mode = "simulated"


class InjectedFailure(ToolError):
    """A failure the tool simulator injected at its configured rate (server error, timeout, cut-off write)."""

    mode = "simulated"
