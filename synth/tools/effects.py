"""Which tools only read, told by their names (the registry keeps no MCP ``readOnlyHint``).

The tool simulator asks a read-only call for no state patch: a 135M simulator wrote one anyway for 42 of 97
read calls of a data-value round (often the prompt's own example path on an empty state), the patch failed to
apply, and a correct call came back as an error, so the episode could not pass. Conservative on purpose: a name
is read-only only if one of its words is a reading verb and none is a writing one (``list_and_delete`` writes);
a name with neither (``nextjs_docs``) may still change the state, as before.
"""

from __future__ import annotations

import re

READ_WORDS = frozenset({
    "get", "list", "search", "read", "fetch", "find", "query", "describe", "show", "view", "lookup", "check",
    "count", "scan", "inspect", "browse", "retrieve", "explain", "preview", "info", "stats", "status", "ls", "cat",
    "peek", "resolve", "validate", "analyze", "analyse", "compare", "diff", "estimate", "calculate", "compute",
    "summarize", "summarise", "lint", "audit", "verify", "grep", "tree", "history", "log", "logs",
    "metadata", "schema", "translate", "parse", "detect", "screenshot", "docs", "documentation",
})
WRITE_WORDS = frozenset({
    "create", "add", "update", "delete", "remove", "set", "write", "put", "post", "send", "insert", "edit",
    "modify", "move", "rename", "copy", "upload", "launch", "start", "stop", "kill", "run", "execute", "exec",
    "install", "uninstall", "commit", "push", "merge", "apply", "deploy", "save", "submit", "book", "cancel",
    "approve", "reject", "assign", "enable", "disable", "reset", "restart", "close", "open", "format", "append",
    "patch", "publish", "schedule", "register", "mark", "clear", "drop", "purge", "archive", "restore",
    "transfer", "pay", "charge", "refund", "order", "reserve", "invite", "share", "grant", "revoke", "tag",
    "label", "lock", "unlock", "click", "type", "fill", "navigate", "press", "scroll", "select", "hover",
    "upsert", "import", "sync", "store", "replace", "make", "generate", "build", "init", "initialize", "clone",
    "checkout", "branch", "stage", "unstage", "reply", "forward", "notify", "subscribe", "unsubscribe", "follow",
    "unfollow", "like", "star", "fork", "comment", "react", "trigger", "invoke", "call", "mutate", "scale",
    "rollback", "upgrade", "configure", "connect", "disconnect", "login", "logout", "evaluate", "drag",
})


def name_words(name: str) -> list[str]:
    """``getTableStats`` / ``get-table_stats`` -> ``["get", "table", "stats"]``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def reads_only(name: str) -> bool:
    """Whether a call to the tool ``name`` can only read (module docstring: by its words, conservatively)."""
    words = set(name_words(name))
    return bool(words & READ_WORDS) and not words & WRITE_WORDS
