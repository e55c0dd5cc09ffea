"""World state: patches apply whole or not at all, and every attempt is logged."""

from synth.sim.world import PatchOp, WorldState, sub_seed

INITIAL = {"orders": {"A1": {"status": "processing", "items": ["mug"]}}, "log": []}


def test_patch_applies_and_initial_state_is_not_mutated() -> None:
    initial = {"orders": {"A1": {"status": "processing"}}}
    world = WorldState(initial)
    event = world.apply("c1", [{"op": "replace", "path": "/orders/A1/status", "value": "cancelled"}])
    assert event.applied and event.error is None
    assert world.doc["orders"]["A1"]["status"] == "cancelled"
    assert initial["orders"]["A1"]["status"] == "processing"


def test_patch_ops_from_model_objects_use_rfc6902_names() -> None:
    world = WorldState(INITIAL)
    ops = [
        PatchOp.model_validate({"op": "copy", "from": "/orders/A1", "path": "/orders/A2"}),
        PatchOp(op="add", path="/log/-", value="copied"),
    ]
    assert world.apply("c1", ops).applied
    assert world.doc["orders"]["A2"] == INITIAL["orders"]["A1"]
    assert world.doc["log"] == ["copied"]


def test_bad_patch_is_dropped_whole_and_recorded() -> None:
    world = WorldState(INITIAL)
    before = world.snapshot()
    # The first op is fine, the second points nowhere: nothing may be applied.
    event = world.apply(
        "c1",
        [
            {"op": "add", "path": "/log/-", "value": "x"},
            {"op": "replace", "path": "/orders/ZZ/status", "value": "gone"},
        ],
    )
    assert not event.applied
    assert event.error
    assert world.doc == before
    assert world.events[-1] is event


def test_malformed_ops_are_rejected() -> None:
    world = WorldState(INITIAL)
    assert not world.apply("c1", [{"op": "frobnicate", "path": "/log"}]).applied
    assert not world.apply("c2", [{"op": "move", "path": "/x"}]).applied  # move without 'from'
    assert not world.apply("c3", [{"op": "test", "path": "/orders/A1/status", "value": "shipped"}]).applied
    assert world.doc == INITIAL


def test_state_must_stay_an_object() -> None:
    world = WorldState(INITIAL)
    event = world.apply("c1", [{"op": "replace", "path": "", "value": [1, 2]}])
    assert not event.applied and "object" in (event.error or "")
    assert world.doc == INITIAL


def test_empty_patch_is_a_read() -> None:
    world = WorldState(INITIAL)
    assert world.apply("c1", []).applied
    assert world.doc == INITIAL


def test_sub_seed_is_stable_and_separates_parts() -> None:
    assert sub_seed(7, "tool", 0) == sub_seed(7, "tool", 0)
    assert sub_seed(7, "tool", 0) != sub_seed(7, "tool", 1)
    assert sub_seed(7, "tool", 0) != sub_seed(8, "tool", 0)
    assert 0 <= sub_seed(123, "x") < 2**31


def test_restore_goes_back_to_a_snapshot() -> None:
    world = WorldState(INITIAL)
    before = world.snapshot()
    world.apply("c1", [{"op": "add", "path": "/log/-", "value": "x"}])
    world.restore(before)
    assert world.doc == INITIAL
    before["log"].append("mutated later")
    assert world.doc == INITIAL  # restore copies, so the snapshot can't change the world afterwards


SHOP = {
    "orders": [
        {"id": "A1", "status": "pending", "total": 3, "note": None},
        {"id": "A2", "status": "shipped", "total": 2.5},
    ],
    "customers": {"c1": {"name": "Ann", "email": "ann@x.org"}, "c2": {"name": "Bo", "email": "bo@x.org"}},
    "flags": {},
}


def test_every_world_gets_a_json_schema_inferred_from_its_initial_state() -> None:
    import jsonschema

    world = WorldState(SHOP)
    jsonschema.Draft202012Validator.check_schema(world.schema)
    jsonschema.validate(SHOP, world.schema)
    orders = world.schema["properties"]["orders"]["items"]
    assert orders["required"] == ["id", "status", "total"]  # "note" is not on every order
    assert orders["properties"]["total"]["type"] == ["number", "null"]  # 3 and 2.5: numbers
    assert "additionalProperties" in world.schema["properties"]["customers"]  # a map of records


def test_patches_that_break_the_schema_are_rejected_and_change_nothing() -> None:
    world = WorldState(SHOP)
    broken = {
        "kind change": [{"op": "replace", "path": "/orders/0/status", "value": {"code": 3}}],
        "a required field removed": [{"op": "remove", "path": "/orders/1/status"}],
        "an order of another shape": [{"op": "add", "path": "/orders/-", "value": {"title": "x"}}],
        "a customer without email": [{"op": "add", "path": "/customers/c3", "value": {"name": "Cy"}}],
        "a collection turned into text": [{"op": "replace", "path": "/orders", "value": "none"}],
        "a top-level collection removed": [{"op": "remove", "path": "/customers"}],
    }
    for why, ops in broken.items():
        event = world.apply(why, ops)
        assert not event.applied, why
        assert "schema" in (event.error or ""), (why, event.error)
    assert world.doc == SHOP


def test_patches_that_keep_the_schema_apply() -> None:
    world = WorldState(SHOP)
    fine = [
        [{"op": "replace", "path": "/orders/0/status", "value": "cancelled"}],
        [{"op": "add", "path": "/orders/-", "value": {"id": "A3", "status": "new", "total": 1}}],
        [{"op": "replace", "path": "/orders/1/total", "value": 4}],
        [{"op": "add", "path": "/orders/0/refund_reason", "value": "late"}],  # new fields are allowed
        [{"op": "replace", "path": "/orders/0/note", "value": "gift"}],  # null accepted anything
        [{"op": "remove", "path": "/customers/c1"}],  # records come and go
        [{"op": "add", "path": "/flags/vip", "value": True}],
        [{"op": "add", "path": "/refunds", "value": [{"order": "A1"}]}],  # a new collection
    ]
    for ops in fine:
        event = world.apply("c", ops)
        assert event.applied, (ops, event.error)


def test_add_into_an_empty_state_makes_the_missing_collection() -> None:
    # A simulator writing the first note of an empty state: "add /notes/n1" on {} must not fail with "member
    # 'notes' not found in {}" (RFC 6902 alone refuses it).
    world = WorldState({})
    event = world.apply("c1", [{"op": "add", "path": "/notes/n1", "value": {"text": "hi"}},
                               {"op": "add", "path": "/notes/n2", "value": {"text": "yo"}}])
    assert event.applied, event.error
    assert world.doc == {"notes": {"n1": {"text": "hi"}, "n2": {"text": "yo"}}}


def test_add_makes_a_new_top_level_collection_and_fills_an_empty_object() -> None:
    world = WorldState({"orders": {"A1": {"status": "new"}}, "files": {}})
    assert world.apply("c1", [{"op": "add", "path": "/tags/urgent/count", "value": 1}]).applied
    assert world.apply("c2", [{"op": "add", "path": "/files/docs/readme", "value": "text"}]).applied
    assert world.doc["tags"] == {"urgent": {"count": 1}}
    assert world.doc["files"] == {"docs": {"readme": "text"}}


def test_add_under_a_record_that_is_not_there_still_fails_and_changes_nothing() -> None:
    world = WorldState(INITIAL)
    before = world.snapshot()
    for ops in (
        [{"op": "add", "path": "/orders/ZZ/status", "value": "gone"}],  # order ZZ does not exist
        [{"op": "add", "path": "/new/-/x", "value": 1}],  # "-" appends to a list: no list to make
        [{"op": "add", "path": "/new/-", "value": 1}],
        # The first op's made parents go too when a later op fails.
        [{"op": "add", "path": "/new/a", "value": 1}, {"op": "replace", "path": "/orders/ZZ", "value": {}}],
    ):
        event = world.apply("c", ops)
        assert not event.applied and event.error
        assert world.doc == before
