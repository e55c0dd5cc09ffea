"""Fine-tuned weights travel as their difference from the base: rebuilt bit for bit, much smaller, and refused
against the wrong base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.device.transfer import pack, unpack
from bench.device.weight_delta import decode, encode


def _checkpoints(root: Path) -> tuple[Path, Path]:
    g = torch.Generator().manual_seed(0)
    base = {"w": (torch.randn(256, 512, generator=g) * 0.05).to(torch.bfloat16),
            "norm": torch.ones(512, dtype=torch.float32) + torch.randn(512, generator=g) * 1e-3,
            "bias": torch.zeros(7, dtype=torch.bfloat16)}
    # A fine-tune's small steps, both signs, a weight that changes sign, and one tensor the base does not have.
    tuned = {"w": (base["w"].float() + torch.randn(256, 512, generator=g) * 3e-4).to(torch.bfloat16),
             "norm": base["norm"] - 1e-5, "bias": torch.tensor([1e-4, -1e-4, 0, 0, 0, 0, 0], dtype=torch.bfloat16),
             "head": torch.randn(4, 3, generator=g)}
    (root / "base").mkdir()
    (root / "tuned").mkdir()
    save_file(base, str(root / "base" / "model.safetensors"))
    save_file(tuned, str(root / "tuned" / "model.safetensors"), metadata={"format": "pt"})
    (root / "tuned" / "config.json").write_text('{"a": 1}')
    return root / "base", root / "tuned"


def test_round_trip_is_bit_exact_and_smaller(tmp_path: Path) -> None:
    base, tuned = _checkpoints(tmp_path)
    stats = encode(tuned / "model.safetensors", base / "model.safetensors", tmp_path / "d.wdelta")
    assert stats["delta_bytes"] < stats["raw_bytes"] / 2
    out = decode(tmp_path / "d.wdelta", base / "model.safetensors", tmp_path / "back.safetensors")
    want, got = load_file(str(tuned / "model.safetensors")), load_file(str(out))
    assert want.keys() == got.keys()
    for name, t in want.items():
        assert got[name].dtype == t.dtype and torch.equal(got[name].view(torch.uint8), t.view(torch.uint8)), name


def test_wrong_base_is_refused(tmp_path: Path) -> None:
    base, tuned = _checkpoints(tmp_path)
    encode(tuned / "model.safetensors", base / "model.safetensors", tmp_path / "d.wdelta")
    other = load_file(str(base / "model.safetensors"))
    other["w"] = other["w"] + 1
    save_file(other, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not the base"):
        decode(tmp_path / "d.wdelta", tmp_path / "other.safetensors", tmp_path / "back.safetensors")


def test_pack_with_delta_base(tmp_path: Path) -> None:
    base, tuned = _checkpoints(tmp_path)
    manifest = pack([tuned], tmp_path / "up", "ckpt", part_mib=1, delta_base=base)
    assert json.loads(manifest.read_text())["delta"] is True
    assert (tuned / "model.safetensors").exists()  # the original is left as it was
    with pytest.raises(SystemExit, match="--delta-base"):
        unpack(manifest, tmp_path / "there")
    (out,) = unpack(manifest, tmp_path / "there", delta_base=base)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    want, got = load_file(str(tuned / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert all(torch.equal(got[k].view(torch.uint8), want[k].view(torch.uint8)) for k in want)
