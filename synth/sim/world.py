"""The episode's world state: one JSON document that tool calls read and change through RFC 6902 patches.

Why patches rather than letting the model rewrite the state: a patch names exactly what a call changed, it
can be checked against the document before it is applied, and a bad one is dropped whole (``jsonpatch``
applies to a copy), so a confused simulator can never leave the world half-changed.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Literal

import jsonpatch
import jsonpointer
from pydantic import BaseModel, ConfigDict, Field, ValidationError


def sub_seed(seed: int, *parts: object) -> int:
    """A seed for one draw inside an episode (a call, a turn), stable across runs and processes.

    ``hash()`` is salted per process, so a sha256 of the parts keeps resumed runs drawing the same numbers.
    """
    blob = json.dumps([seed, *parts], default=str, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:4], "big") & 0x7FFFFFFF


class PatchOp(BaseModel):
    """One RFC 6902 operation, as the tool simulator writes it."""

    model_config = ConfigDict(populate_by_name=True)

    op: Literal["add", "remove", "replace", "move", "copy", "test"] = Field(
        description="add / remove / replace a value, move / copy one (needs 'from'), "
        "or test that it equals 'value'."
    )
    path: str = Field(
        description="JSON Pointer into the state, e.g. '/orders/0/status' or '/orders/-' to append."
    )
    value: Any = Field(default=None, description="The new value, for add, replace and test.")
    from_: str | None = Field(
        default=None, alias="from", description="Source JSON Pointer, for move and copy."
    )

    def rfc6902(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op, "path": self.path}
        if self.op in ("add", "replace", "test"):
            out["value"] = self.value
        if self.op in ("move", "copy"):
            out["from"] = self.from_
        return out


class PatchEvent(BaseModel):
    """What happened to one call's patch: kept so a dropped patch is visible, not silently lost."""

    call_id: str
    ops: list[dict[str, Any]]
    applied: bool
    error: str | None = None


class WorldState:
    """A JSON object that only changes by whole, valid patches; every attempt is logged in ``events``."""

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        # A deep copy so the task's initial_state is never mutated by an episode.
        self._doc: dict[str, Any] = copy.deepcopy(initial or {})
        self.events: list[PatchEvent] = []

    @property
    def doc(self) -> dict[str, Any]:
        """The current state (read-only by convention; change it through ``apply``)."""
        return self._doc

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self._doc)

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Go back to a ``snapshot()`` (a round of calls that was cut from the trajectory leaves no trace)."""
        self._doc = copy.deepcopy(snapshot)

    def apply(self, call_id: str, ops: list[PatchOp] | list[dict[str, Any]]) -> PatchEvent:
        """Apply a patch atomically; on any error the state is unchanged and the event says why."""
        raw = [op.rfc6902() if isinstance(op, PatchOp) else op for op in ops]
        if not raw:
            event = PatchEvent(call_id=call_id, ops=[], applied=True)
            self.events.append(event)
            return event
        error: str | None = None
        try:
            checked = [PatchOp.model_validate(op).rfc6902() for op in raw]
            new = jsonpatch.apply_patch(self._doc, checked, in_place=False)
            if not isinstance(new, dict):
                kind = type(new).__name__
                raise TypeError(f"the patch would turn the state into a {kind}; it must stay an object")
            # Round-trip through JSON: a state that can't be serialised could not be stored in the dataset.
            json.dumps(new)
        except (ValidationError, jsonpatch.JsonPatchException, jsonpointer.JsonPointerException,
                TypeError, ValueError, KeyError, IndexError) as exc:
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        else:
            self._doc = new
        event = PatchEvent(call_id=call_id, ops=raw, applied=error is None, error=error)
        self.events.append(event)
        return event
