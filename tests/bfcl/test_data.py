"""BFCL's items as loaded from bfcl-eval, and the fixed subsets --limit/--seed pick."""

from __future__ import annotations

import pytest

from synth.bfcl.data import CATEGORIES, BfclError, check_categories, load_items, select

SIZES = {"simple_python": 400, "multiple": 200, "parallel": 200, "parallel_multiple": 200, "irrelevance": 240}


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_item_of_bfcl_v4_is_loaded_with_what_it_is_scored_on(category: str) -> None:
    items = load_items(category)
    assert len(items) == SIZES[category]
    assert [i.id for i in items] == [f"{category}_{n}" for n in range(len(items))]
    for item in items:
        assert item.messages and item.functions and len(item.functions) == len(item.checker_functions)
        assert (item.ground_truth is None) == (category == "irrelevance")
        # Shown with BFCL's language hint; given to the checker without, as BFCL's runner does.
        assert item.functions[0]["description"].endswith("Note that the provided function is in Python 3 syntax.")
        assert not item.checker_functions[0]["description"].endswith("Python 3 syntax.")


def test_a_subset_is_fixed_by_seed_and_category() -> None:
    items = load_items("simple_python")
    first = [i.id for i in select(items, 50, seed=0)]
    assert first == [i.id for i in select(load_items("simple_python"), 50, seed=0)]
    assert len(first) == 50 == len(set(first))
    assert first == sorted(first, key=lambda i: int(i.rsplit("_", 1)[1]))  # in BFCL's order
    assert first != [i.id for i in select(items, 50, seed=1)]
    assert first != [i.id for i in items[:50]]  # drawn, not a prefix
    # Another category's draw with the same seed is its own (not the same positions).
    positions = {int(i.rsplit("_", 1)[1]) for i in first}
    other = {int(i.id.rsplit("_", 1)[1]) for i in select(load_items("multiple"), 50, seed=0)}
    assert positions != other


def test_no_limit_or_a_limit_past_the_end_is_every_item() -> None:
    items = load_items("parallel")
    assert select(items, None, seed=3) == items == select(items, 10_000, seed=3)
    with pytest.raises(BfclError):
        select(items, 0, seed=0)


def test_unknown_categories_are_refused_with_the_known_ones() -> None:
    with pytest.raises(BfclError) as err:
        check_categories(["simple_python", "live_simple"])
    assert "live_simple" in str(err.value) and "irrelevance" in err.value.hint
    assert check_categories(["irrelevance", "simple_python"]) == ["simple_python", "irrelevance"]
