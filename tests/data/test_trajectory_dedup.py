"""Near-duplicate trajectories (synth.data.trajectory_dedup): what the normalised transcript holds, copies dropped
inside a run, near a held-out row and against an earlier index, the threshold's edge, a kept set that does not
depend on the order rows come in, the index on disk, and the threshold's validation."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synth.config import ConfigError, PipelineConfig, load_config
from synth.data.trajectory_dedup import (
    INDEX_DIR,
    META,
    NUM_PERM,
    SCHEME,
    SEED,
    DedupIndex,
    DedupIndexError,
    dedup_train,
    normalise,
    signature,
)

QUESTION = ("I am planning a trip next week and need the weather forecast for Oslo on Monday morning, including "
            "wind and rain, because I will be cycling to the station early and want to dress for it")


def messages(question: str, city: str = "Oslo", *, system: str = "You help.", call_id: str = "call_1",
             result: str = '{"temp_c": 3}', answer: str = "It is 3 °C.") -> list[dict[str, Any]]:
    args = json.dumps({"city": city, "units": "metric"})
    return [{"role": "system", "content": system},
            {"role": "user", "content": question},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": call_id, "type": "function",
                             "function": {"name": "get_weather", "arguments": args}}]},
            {"role": "tool", "tool_call_id": call_id, "content": result},
            {"role": "assistant", "content": answer}]


def row(row_id: str, question: str = QUESTION, *, score: float = 1.0, heldout: bool = False,
        **kw: Any) -> dict[str, Any]:
    return {"id": row_id, "score": score, "heldout": heldout, "messages": messages(question, **kw)}


def test_the_transcript_holds_user_turns_tool_names_and_argument_values_only() -> None:
    text = normalise(messages("Weather in Oslo?", system="SYSTEM PROMPT", call_id="ID-42", result="RESULT 12:00",
                              answer="PROSE"))
    assert "Weather in Oslo?" in text and "get_weather" in text and "metric" in text
    assert all(s not in text for s in ("SYSTEM", "ID-42", "RESULT", "12:00", "PROSE", "city", "units"))
    # What it leaves out makes no difference to the signature: another system prompt, ids, results, timings.
    a = signature(messages(QUESTION))
    b = signature(messages(QUESTION, system="Other agent.", call_id="x9", result='{"temp_c": 9, "at": "12:01"}',
                           answer="Nine degrees."))
    assert a.jaccard(b) == 1.0
    # Broken JSON arguments still count by their words.
    broken = [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{city: Oslo"}}]}]
    assert "Oslo" in normalise(broken)


def test_near_copies_inside_a_run_are_dropped_and_counted() -> None:
    train = [row("a"), row("b", QUESTION.replace("next week", "next weekend")),
             row("c", QUESTION.replace("Oslo", "Bergen"), city="Bergen"), row("d", "What time is it in Tokyo?")]
    kept, dropped, index = dedup_train(train, [], threshold=0.8)
    # b changes one word of a long question (estimated 0.86); c another city (0.71), d another question: kept.
    assert [r["id"] for r in kept] == ["a", "c", "d"]
    assert [(d.id, d.duplicate_of, d.reason) for d in dropped] == [("b", "a", "within_run")]
    assert dropped[0].similarity >= 0.8
    assert sorted(index.ids) == ["a", "c", "d"] and set(index.splits) == {"train"}
    # At the default 0.9 the one-word change is not a copy (a word touches three shingles of a short transcript).
    assert len(dedup_train(train, [], threshold=0.9)[0]) == 4


def test_the_highest_scored_copy_is_kept_whatever_the_order() -> None:
    train = [row("z-best", score=1.0), row("a-low", score=0.5), row("m-mid", score=0.8), row("other", "Time?")]
    kept, dropped, _ = dedup_train(train, [])
    assert sorted(r["id"] for r in kept) == ["other", "z-best"]
    assert {d.id: d.duplicate_of for d in dropped} == {"a-low": "z-best", "m-mid": "z-best"}
    rng = random.Random(0)
    for _ in range(5):
        shuffled = rng.sample(train, len(train))
        again, dropped_again, index = dedup_train(shuffled, [])
        assert [r["id"] for r in again] == [r["id"] for r in shuffled if r["id"] in {"other", "z-best"}]
        assert sorted(d.model_dump_json() for d in dropped_again) == sorted(d.model_dump_json() for d in dropped)
        assert sorted(index.ids) == ["other", "z-best"]


def test_the_threshold_is_inclusive_at_its_edge() -> None:
    a, b = row("a"), row("b", QUESTION.replace("next week", "next weekend"))
    sim = signature(a["messages"]).jaccard(signature(b["messages"]))
    assert 0 < sim < 1
    assert [r["id"] for r in dedup_train([a, b], [], threshold=sim)[0]] == ["a"]  # at the threshold: a copy
    assert [r["id"] for r in dedup_train([a, b], [], threshold=min(1.0, sim + 1e-6))[0]] == ["a", "b"]
    # 1: only exact copies of the transcript.
    exact = row("c", system="Another prompt.", answer="Other words.")
    kept, dropped, _ = dedup_train([a, b, exact], [], threshold=1.0)
    assert [r["id"] for r in kept] == ["a", "b"] and dropped[0].id == "c" and dropped[0].similarity == 1.0
    with pytest.raises(ValueError):
        dedup_train([a], [], threshold=0)


def test_a_train_row_copying_a_heldout_row_is_dropped_and_the_heldout_row_stays() -> None:
    held = row("held", heldout=True, score=0.0)
    train = [row("train-copy", score=1.0), row("train-other", "What time is it in Tokyo?")]
    kept, dropped, index = dedup_train(train, [held])
    assert [r["id"] for r in kept] == ["train-other"]
    assert [(d.id, d.duplicate_of, d.reason) for d in dropped] == [("train-copy", "held", "heldout")]
    # The index holds every held-out row, with its split, for later runs.
    assert dict(zip(index.ids, index.splits, strict=True)) == {"train-other": "train", "held": "heldout"}


def test_copies_of_an_earlier_index_are_dropped_and_named_by_it(tmp_path: Path) -> None:
    earlier_rows = [row("r1-a"), row("r1-held", "Weather in Paris tomorrow?", heldout=True)]
    _kept1, _, index1 = dedup_train([earlier_rows[0]], [earlier_rows[1]], source="round-1")
    index1.save(tmp_path / "round-1" / INDEX_DIR)
    earlier = DedupIndex.load(tmp_path / "round-1", "round-1")
    train = [row("r2-copy"), row("r2-near-held", "Weather in Paris tomorrow?"), row("r2-new", "Time in Tokyo?"),
             row("r2-new-again", "Time in Tokyo?")]
    kept, dropped, _ = dedup_train(train, [], [earlier], source="round-2")
    assert [r["id"] for r in kept] == ["r2-new"]
    assert {d.id: (d.reason, d.source, d.duplicate_of) for d in dropped} == {
        "r2-copy": ("earlier", "round-1", "r1-a"),
        "r2-near-held": ("heldout", "round-1", "r1-held"),
        "r2-new-again": ("within_run", "round-2", "r2-new")}


def test_the_index_round_trips_and_a_dataset_without_one_is_indexed_from_its_rows(tmp_path: Path) -> None:
    _, _, index = dedup_train([row("a"), row("b", "Time?")], [row("h", "Paris?", heldout=True)], source="run")
    index.save(tmp_path / "x")
    back = DedupIndex.load(tmp_path / "x")
    assert back.ids == index.ids and back.splits == index.splits and np.array_equal(back.hashes, index.hashes)
    assert back.minhash(0).jaccard(signature(row("a")["messages"])) == 1.0
    # What index.json records is what the signatures are made with.
    made = signature(row("a")["messages"])
    assert (made.seed, made.scheme) == (SEED, SCHEME) and len(made.hashvalues) == NUM_PERM
    empty = DedupIndex.of("none", [])
    empty.save(tmp_path / "empty")
    assert len(DedupIndex.load(tmp_path / "empty")) == 0
    # A published dataset: data/<split>-*.parquet and no dedup/.
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "pub" / "data").mkdir(parents=True)
    for split, r in (("train", row("p-train")), ("heldout", row("p-held", "Paris?", heldout=True))):
        table = pa.Table.from_pylist([{"id": r["id"], "messages": r["messages"]}])
        pq.write_table(table, tmp_path / "pub" / "data" / f"{split}-00000-of-00001.parquet")
    pub = DedupIndex.load(tmp_path / "pub", "pub")
    assert dict(zip(pub.ids, pub.splits, strict=True)) == {"p-train": "train", "p-held": "heldout"}
    assert pub.source == "pub"
    # An index of another version with no rows to index again, or nothing at all, says so.
    meta = json.loads((tmp_path / "x" / META).read_text())
    (tmp_path / "x" / META).write_text(json.dumps({**meta, "version": 0}))
    with pytest.raises(DedupIndexError, match="other settings"):
        DedupIndex.load(tmp_path / "x")
    with pytest.raises(DedupIndexError, match="no deduplication index"):
        DedupIndex.load(tmp_path / "pub" / "data")
    with pytest.raises(DedupIndexError, match="no dataset has been built"):
        DedupIndex.load(tmp_path / "nothing" / "dataset")


def test_the_threshold_must_be_in_zero_one(tmp_path: Path) -> None:
    assert PipelineConfig().dataset.dedup.enabled and PipelineConfig().dataset.dedup.threshold == 0.9
    assert load_config(overrides=["dataset.dedup.threshold=1"]).dataset.dedup.threshold == 1.0
    for bad in ("0", "-0.1", "1.01"):
        with pytest.raises(ConfigError, match=r"dataset\.dedup\.threshold"):
            load_config(overrides=[f"dataset.dedup.threshold={bad}"])
    with pytest.raises(ConfigError, match=r"dataset\.dedup\.runs"):
        load_config(overrides=["dataset.dedup.runs=[a/b]"])
