"""The episode's world state: one JSON document that tool calls read and change through RFC 6902 patches.

Why patches rather than letting the model rewrite the state: a patch names exactly what a call changed, it
can be checked against the document before it is applied, and a bad one is dropped whole (``jsonpatch``
applies to a copy), so a confused simulator can never leave the world half-changed.

Each world gets a JSON Schema when it is created, inferred from the task's initial state (``infer_schema``), and
every patched document is validated against it: a patch that turns an order's ``status`` into a list, drops a
field every record has, or adds a record of another shape to a collection is rejected like one that does not apply.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Literal

import jsonpatch
import jsonpointer
import jsonschema
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


class SchemaViolation(ValueError):
    """A patch applied, but the state it made does not fit the world's schema."""


class PatchEvent(BaseModel):
    """What happened to one call's patch: kept so a dropped patch is visible, not silently lost."""

    call_id: str
    ops: list[dict[str, Any]]
    applied: bool
    error: str | None = None


_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}
MAP_MIN_KEYS = 2
"""An object with at least this many keys whose values are all objects of one shape is a map of records
(``{"A1": {...}, "B2": {...}}``): new keys must hold a record of that shape."""


def _merge(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    """One schema that accepts every value the given schemas describe (the shape they share)."""
    schemas = [s for s in schemas if s]  # {} (from null) accepts anything and adds no constraint
    if not schemas:
        return {}
    kinds = {s.get("x-kind") for s in schemas}
    if len(kinds) > 1:
        if kinds <= {"integer", "number"}:
            return _scalar("number")
        return {"anyOf": [_merge([s for s in schemas if s.get("x-kind") == k]) for k in sorted(kinds, key=str)]}
    kind = kinds.pop()
    if kind == "object":
        keys = [set(s["properties"]) for s in schemas]
        props: dict[str, Any] = {}
        for key in sorted(set().union(*keys)):
            props[key] = _merge([s["properties"][key] for s in schemas if key in s["properties"]])
        required = sorted(set.intersection(*[set(s.get("required", [])) for s in schemas]))
        return {"x-kind": "object", "type": "object", "properties": props, "required": required}
    if kind == "array":
        return {"x-kind": "array", "type": "array", "items": _merge([s.get("items", {}) for s in schemas])}
    return schemas[0]


def _scalar(kind: str) -> dict[str, Any]:
    # A scalar field may be cleared (null) later; it may not change kind ("pending" -> {...}).
    types = ["number", "null"] if kind in ("integer", "number") else [kind, "null"]
    return {"x-kind": kind if kind != "integer" else "number", "type": types}


def _infer(value: Any, depth: int) -> dict[str, Any]:
    if value is None or depth > 12:
        return {}
    kind = _SCALARS.get(type(value))
    if kind is not None:
        return _scalar(kind)
    if isinstance(value, list):
        return {"x-kind": "array", "type": "array", "items": _merge([_infer(v, depth + 1) for v in value])}
    if isinstance(value, dict):
        children = {k: _infer(v, depth + 1) for k, v in value.items()}
        # The root is never a map: a call may add a top-level collection of any shape.
        if depth > 0 and len(value) >= MAP_MIN_KEYS and all(isinstance(v, dict) and v for v in value.values()):
            record = _merge(list(children.values()))
            if record.get("x-kind") == "object" and record.get("required"):
                # Keyed records: entries may come and go, but every entry, old or new, has the shared shape.
                return {"x-kind": "object", "type": "object", "additionalProperties": record}
        return {"x-kind": "object", "type": "object", "properties": children, "required": sorted(value)}
    return {}


def _strip(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip(v) for k, v in schema.items() if k != "x-kind"}
    if isinstance(schema, list):
        return [_strip(v) for v in schema]
    return schema


def infer_schema(initial: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema a world's state must keep, inferred from its initial state.

    Kinds are kept (a string stays a string or null, numbers stay numbers, lists stay lists), fields every
    record of a collection has stay required, list items and new entries of keyed maps must have the shape of
    the existing ones; new fields and new top-level collections are allowed (a call may create them), and
    empty lists, empty objects and nulls accept anything (nothing shows their shape).
    """
    schema = _strip(_infer(initial, 0)) or {"type": "object"}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _make_parents(doc: Any, path: str) -> None:
    """Create the missing objects above an ``add``'s target where the state leaves room for new ones.

    RFC 6902 refuses ``add /notes/n1`` while ``/notes`` is missing; a simulator writing the first note of an empty
    state does exactly that, and the call would fail for a reason the agent had no part in. The
    missing chain is made of empty objects only where ``infer_schema`` allows new content of any shape: under the
    root (a new top-level collection) or inside an empty object. Under a record that exists (``/orders/ZZ/status``
    while order ZZ is not there) the pointer names something that is not there, and the add still fails.
    """
    *parts, last = jsonpointer.JsonPointer(path).parts or [""]
    node, i = doc, 0
    while i < len(parts):
        part = parts[i]
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            break
        i += 1
    missing = parts[i:]
    # "-" appends to a list: a list that is not there is not made (nor turned into an object with a "-" key).
    if not missing or not isinstance(node, dict) or (node is not doc and node) or "-" in (*missing, last):
        return
    for part in missing:
        node[part] = {}
        node = node[part]


class WorldState:
    """A JSON object that only changes by whole, valid patches; every attempt is logged in ``events``."""

    def __init__(self, initial: dict[str, Any] | None = None, schema: dict[str, Any] | None = None) -> None:
        # A deep copy so the task's initial_state is never mutated by an episode.
        self._doc: dict[str, Any] = copy.deepcopy(initial or {})
        self.events: list[PatchEvent] = []
        self.schema: dict[str, Any] = schema if schema is not None else infer_schema(self._doc)
        """The state's JSON Schema, fixed at creation; every patched state must validate against it."""
        self._validator = jsonschema.Draft202012Validator(self.schema)

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
            # Op by op on a copy, so an op may add under a collection an earlier op made, and a failure at any
            # op leaves the state as it was (parents made for an earlier op included).
            new: Any = copy.deepcopy(self._doc)
            for op in checked:
                if op["op"] == "add":
                    _make_parents(new, op["path"])
                new = jsonpatch.apply_patch(new, [op], in_place=True)
            if not isinstance(new, dict):
                kind = type(new).__name__
                raise TypeError(f"the patch would turn the state into a {kind}; it must stay an object")
            # Round-trip through JSON: a state that can't be serialised could not be stored in the dataset.
            json.dumps(new)
            broken = jsonschema.exceptions.best_match(self._validator.iter_errors(new))
            if broken is not None:
                where = "/" + "/".join(str(p) for p in broken.absolute_path)
                raise SchemaViolation(f"the patched state breaks the world's schema at {where}: {broken.message}")
        except (SchemaViolation, ValidationError, jsonpatch.JsonPatchException, jsonpointer.JsonPointerException,
                TypeError, ValueError, KeyError, IndexError) as exc:
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        else:
            self._doc = new
        event = PatchEvent(call_id=call_id, ops=raw, applied=error is None, error=error)
        self.events.append(event)
        return event
