"""The incremental duplicate index: one tool at a time, by name, by canonical form and by MinHash."""

from __future__ import annotations

from typing import Any

from synth.schemas.tools import FunctionSpec, ToolProvenance, ToolSpec
from synth.tools.dedup import DedupIndex, canonical_form, normal_name

PARAMS = {"type": "object", "properties": {"order_id": {"type": "string", "description": "The order."}},
          "required": ["order_id"]}


def spec(name: str, description: str, params: dict[str, Any] | None = None, sid: str | None = None) -> ToolSpec:
    return ToolSpec(id=sid or f"tool-{name}", function=FunctionSpec(name=name, description=description,
                                                                     parameters=params or PARAMS),
                    provenance=ToolProvenance(source="synthetic", domain_path=["commerce", "orders", "returns"]))


def test_names_are_one_name_whatever_their_case_and_separators() -> None:
    assert normal_name("getOrderStatus") == normal_name("get_order_status") == normal_name("Get-Order-Status")


def test_canonical_form_ignores_prose_and_the_order_of_name_words() -> None:
    a = spec("cancel_order", "Cancel an order.")
    b = spec("order_cancel", "Stops an order from shipping.",
             {**PARAMS, "properties": {"order_id": {"type": "string", "description": "Which one."}}})
    c = spec("cancel_order", "Cancel an order.", {**PARAMS, "required": []})
    assert canonical_form(a) == canonical_form(b)
    assert canonical_form(a) != canonical_form(c)  # an optional id is another signature


def test_index_drops_each_kind_of_duplicate_and_keeps_the_distinct() -> None:
    index = DedupIndex()
    assert index.add(spec("cancel_order", "Cancel an order that has not shipped yet and refund the card."),
                     check=False) is None
    by_name = index.add(spec("cancelOrder", "Something else entirely about parcels.", {"type": "object"}))
    by_form = index.add(spec("order_cancel", "Stop an order."))
    near = index.add(spec("cancel_order_now", "Cancel an order that has not shipped yet and refund the card.",
                          {"type": "object", "properties": {"id": {"type": "string"}}}))
    kept = index.add(spec("track_parcel", "Where a parcel is now, with the carrier's last scan.",
                          {"type": "object", "properties": {"tracking": {"type": "string"}}}))
    assert [d.kind if d else None for d in (by_name, by_form, near, kept)] == ["name", "schema", "near_duplicate",
                                                                               None]
    assert by_name is not None and by_name.duplicate_of == "tool-cancel_order"
    assert len(index) == 2  # duplicates are not indexed


def test_index_checks_only_the_kinds_it_is_asked_for() -> None:
    index = DedupIndex(kinds=("near_duplicate",))
    index.add(spec("cancel_order", "Cancel an order."))
    assert index.add(spec("cancel_order", "Where a parcel is now, with the carrier's last scan.")) is None


def test_minhash_values_are_those_of_one_update_a_gram() -> None:
    """Hashes kept from earlier runs stay comparable: the batched recipe gives the plain recipe's values."""
    from datasketch import MinHash

    from synth.tools.dedup import minhash_of

    for grams in (["cancel an order", "an order that", "refund"], [], ["one"]):
        plain = MinHash(num_perm=128, seed=1)
        for gram in sorted(grams):
            plain.update(gram.encode())
        assert (minhash_of(grams).hashvalues == plain.hashvalues).all()
