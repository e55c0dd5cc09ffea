"""Which tools only read, told by their names (the registry keeps no MCP ``readOnlyHint``).

The tool simulator asks a read-only call for no state patch: allowed one, the 135M simulator writes one into about
half of the read calls (often the prompt's example path on an empty state), the patch fails to apply, and a correct
call comes back as an error, so the episode cannot pass (docs/studies/tool-sim-read-only.md). Conservative on
purpose: a name is read-only only if one of its words is a reading verb and none is a writing one
(``list_and_delete`` writes); words that are nouns as often as verbs (``order``, ``post``, ``book``) write only as
the name's first word (``book_flight``, but ``get_order`` reads); a name with neither kind of word (``nextjs_docs``
has ``docs``; ``frobnicate``) may still change the state.
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
    "create", "add", "update", "delete", "remove", "set", "write", "put", "send", "insert", "edit", "modify",
    "move", "rename", "copy", "upload", "launch", "start", "stop", "kill", "run", "execute", "exec", "install",
    "uninstall", "commit", "push", "merge", "apply", "deploy", "save", "submit", "cancel", "approve", "reject",
    "assign", "unassign", "enable", "disable", "reset", "restart", "close", "open", "format", "append", "publish",
    "register", "clear", "purge", "restore", "transfer", "pay", "charge", "refund", "reserve", "invite", "grant",
    "revoke", "unlock", "click", "fill", "navigate", "press", "scroll", "hover", "upsert", "import", "sync",
    "replace", "make", "generate", "build", "init", "initialize", "clone", "checkout", "unstage", "notify",
    "subscribe", "unsubscribe", "unfollow", "trigger", "invoke", "mutate", "rollback", "upgrade", "configure",
    "connect", "disconnect", "login", "logout", "evaluate", "drag", "fork", "archive", "unarchive", "attach",
    "detach", "resize", "scale", "terminate", "reboot", "provision", "enroll", "unenroll", "empty", "wipe",
})
# Nouns as often as verbs: a write only where the name starts with them.
WRITE_FIRST = frozenset({
    "order", "book", "post", "reply", "schedule", "lock", "store", "drop", "tag", "label", "branch", "stage",
    "comment", "star", "like", "share", "mark", "forward", "follow", "select", "type", "call", "patch", "record",
})


def name_words(name: str) -> list[str]:
    """``getTableStats`` / ``get-table_stats`` -> ``["get", "table", "stats"]``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def reads_only(name: str) -> bool:
    """Whether a call to the tool ``name`` can only read (module docstring: by its words, conservatively)."""
    words = name_words(name)
    if not words or words[0] in WRITE_FIRST or set(words) & WRITE_WORDS:
        return False
    return bool(set(words) & READ_WORDS)
