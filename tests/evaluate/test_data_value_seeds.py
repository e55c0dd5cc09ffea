"""The seed-replicate report's paired comparison and its merge of earlier scores (bench/data_value_seeds.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from synth.improve.stats import sign_test

_PATH = Path(__file__).resolve().parents[2] / "bench" / "data_value_seeds.py"
_spec = importlib.util.spec_from_file_location("data_value_seeds", _PATH)
seeds = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seeds)


def _model(opt: str, seed: int | None, passed: list[str]) -> dict:
    return {"optimizer": opt, "seed": seed, "tasks_passed": passed}


def test_sign_test_exact_values() -> None:
    assert sign_test(0, 0) == 1.0
    assert sign_test(3, 0) == pytest.approx(0.25)  # 2 * (1/8)
    assert sign_test(3, 6) == pytest.approx(2 * (1 + 9 + 36 + 84) / 512)
    assert sign_test(5, 5) == 1.0


def test_paired_counts_only_seeds_both_optimizers_have() -> None:
    models = {
        "muonclip": _model("muonclip", 2, ["a", "b"]),
        "adamw": _model("adamw", 2, ["b", "c", "d"]),
        "muonclip-seed4": _model("muonclip", 4, ["a", "c"]),  # no AdamW twin: not paired
    }
    out = seeds.paired(models)
    assert out["seeds"] == {2: {"muonclip_only": 1, "adamw_only": 2, "both": 1}}
    assert (out["muonclip_only"], out["adamw_only"]) == (1, 2)


def test_earlier_scores_are_kept_and_a_mismatch_refused(tmp_path: Path) -> None:
    out = tmp_path / "seeds.json"
    assert seeds._earlier(out, "r", 3, 44) == {}
    out.write_text(json.dumps({"run": "r", "round": 3, "heldout_tasks": 44, "machine": {"cpu": "x"},
                               "models": {"adamw": _model("adamw", 2, ["a"])}}))
    kept = seeds._earlier(out, "r", 3, 44)
    assert kept["adamw"]["tasks_passed"] == ["a"] and kept["adamw"]["machine"] == {"cpu": "x"}
    with pytest.raises(SystemExit, match="pass another --out"):
        seeds._earlier(out, "r", 2, 44)
