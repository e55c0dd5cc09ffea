"""Folders moved to and from the lent GPU in parts: they arrive whole, and a lost or damaged part is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.device.transfer import MIB, pack, unpack


def _folder(root: Path) -> Path:
    src = root / "ckpt"
    (src / "sub").mkdir(parents=True)
    (src / "model.bin").write_bytes(bytes(range(256)) * (MIB // 64))  # 4 MiB: four parts of 1 MiB
    (src / "sub" / "config.json").write_text('{"a": 1}')
    return src


def test_pack_unpack_round_trip(tmp_path: Path) -> None:
    src = _folder(tmp_path)
    manifest = pack([src], tmp_path / "up", "ckpt", part_mib=1)
    parts = json.loads(manifest.read_text())["parts"]
    assert len(parts) == 5 and all(p["bytes"] <= MIB for p in parts)  # 4 MiB of data plus the tar headers
    (out,) = unpack(manifest, tmp_path / "there")
    assert (out / "model.bin").read_bytes() == (src / "model.bin").read_bytes()
    assert (out / "sub" / "config.json").read_text() == '{"a": 1}'


def test_missing_or_damaged_part_is_an_error(tmp_path: Path) -> None:
    manifest = pack([_folder(tmp_path)], tmp_path / "up", "ckpt", part_mib=1)
    second = tmp_path / "up" / "ckpt.part001"
    data = second.read_bytes()
    second.write_bytes(data[:-10])
    with pytest.raises(SystemExit, match="damaged"):
        unpack(manifest, tmp_path / "there")
    second.unlink()
    with pytest.raises(SystemExit, match="missing"):
        unpack(manifest, tmp_path / "there")
    assert not (tmp_path / "there" / "ckpt").exists()


def test_send_next_brings_everything_once_within_a_call_limit(tmp_path: Path) -> None:
    from bench.device.transfer import send_next

    for name in ("a", "b"):
        pack([_folder(tmp_path / name)], tmp_path / "down" / name, name, part_mib=1)
    got: list[str] = []
    calls = 0
    while True:
        out = tmp_path / f"call{calls}"
        names = send_next(tmp_path / "down", out, max_mib=3, max_files=8)
        if not names:
            break
        calls += 1
        assert sum((out / n).stat().st_size for n in names) <= 3 * MIB
        got += names
    # Two archives of a manifest and 5 parts each, every file once, a manifest before its parts.
    assert len(got) == len(set(got)) == 12 and calls == 4
    assert got.index("a.manifest.json") < got.index("a.part000")
    with pytest.raises(SystemExit, match="pack smaller parts"):
        send_next(tmp_path / "down" / "a", tmp_path / "x", max_mib=0)
