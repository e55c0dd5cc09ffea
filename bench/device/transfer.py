"""Move folders bigger than one call's limit to and from the lent GPU machine, in parts.

A call to the lent machine carries at most 64 MiB each way, and a 135M checkpoint is 270 MB, so a training run
there goes: pack the inputs here and carry one part per call (the machine keeps its files while it stays warm),
unpack them there, run ``synth train`` there, pack its output folder there and bring one part back per call,
unpack it here. ``synth train`` itself needs nothing of this: on any machine with a GPU it trains in place.
Run from the project root (``python -m bench.device.transfer ...``): it needs only the standard library, and
torch, numpy and safetensors for ``--delta-base``.

    python -m bench.device.transfer pack SRC... --out DIR [--part-mib 60]   # DIR/<name>.manifest.json + parts
    python -m bench.device.transfer unpack DIR/<name>.manifest.json --into DEST  # checks every part's sha256
    python -m bench.device.transfer send-next DIR --to $OUT   # the next files that fit one call's return

With ``--delta-base CKPT`` (pack and unpack alike), each ``*.safetensors`` that the base checkpoint CKPT also has
travels as its compressed difference from it (bench/device/weight_delta.py): a fine-tuned 135M model, 256.6 MiB,
comes back as 76-86 MiB, two calls instead of five. Both machines must hold the same base (the GGUF converted by
the same code).

A manifest names its parts in order with their sizes and hashes, and the hash of the whole archive, so a part lost
or cut short on the way is an error, never a silently broken checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

MIB = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(16 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def _as_deltas(sources: list[Path], base: Path, tmp: Path) -> list[Path]:
    """Copies of ``sources`` whose weights are deltas against ``base`` (the originals are left as they are)."""
    from bench.device.weight_delta import encode_folder

    copies = []
    for src in sources:
        copy = tmp / "delta" / src.name
        shutil.copytree(src, copy, ignore=shutil.ignore_patterns("_resume*"))
        for stat in encode_folder(copy, base):
            print(f"{src.name}/{stat['file']}: {stat['raw_bytes'] / MIB:.1f} MiB -> {stat['delta_bytes'] / MIB:.1f} "
                  "MiB as a delta")
        copies.append(copy)
    return copies


def pack(sources: list[Path], out: Path, name: str, part_mib: int, delta_base: Path | None = None) -> Path:
    """Archive ``sources`` (each under its own name) and split the archive into parts of ``part_mib`` MiB."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        if delta_base is not None:
            sources = _as_deltas(sources, delta_base, Path(tmp))
        archive = Path(tmp) / f"{name}.tar"
        with tarfile.open(archive, "w") as tar:
            for src in sources:
                tar.add(src, arcname=src.name)
        parts = []
        with archive.open("rb") as fh:
            index = 0
            while chunk := fh.read(part_mib * MIB):
                part = out / f"{name}.part{index:03d}"
                part.write_bytes(chunk)
                parts.append({"file": part.name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
                index += 1
        manifest = {"name": name, "archive_sha256": _sha256(archive), "archive_bytes": archive.stat().st_size,
                    "members": [s.name for s in sources], "parts": parts, "delta": delta_base is not None}
    path = out / f"{name}.manifest.json"
    path.write_text(json.dumps(manifest, indent=1))
    return path


def unpack(manifest_path: Path, dest: Path, parts_dir: Path | None = None,
           delta_base: Path | None = None) -> list[Path]:
    """Join the manifest's parts (from ``parts_dir``, default: beside the manifest), check them, extract; weights
    packed as deltas are rebuilt against ``delta_base``."""
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("delta") and delta_base is None:
        raise SystemExit(f"{manifest_path} holds weights as deltas: pass --delta-base with the checkpoint they were "
                         "trained from (here: the embedded model's folder, `synth model` prints it)")
    where = parts_dir or manifest_path.parent
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        archive = Path(tmp) / "joined.tar"
        with archive.open("wb") as out:
            for part in manifest["parts"]:
                path = where / part["file"]
                if not path.exists():
                    raise SystemExit(f"part {path} is missing: bring it over before unpacking")
                data = path.read_bytes()
                if len(data) != part["bytes"] or hashlib.sha256(data).hexdigest() != part["sha256"]:
                    raise SystemExit(f"part {path} is damaged ({len(data)} bytes, want {part['bytes']}): copy it again")
                out.write(data)
        if _sha256(archive) != manifest["archive_sha256"]:
            raise SystemExit(f"the joined archive of {manifest_path} does not match its hash")
        for member in manifest["members"]:
            shutil.rmtree(dest / member, ignore_errors=True)
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    if manifest.get("delta"):
        from bench.device.weight_delta import decode_folder

        for member in manifest["members"]:
            decode_folder(dest / member, delta_base)
    return [dest / m for m in manifest["members"]]


def send_next(folder: Path, to: Path, max_mib: int = 63, max_files: int = 8) -> list[str]:
    """Copy the next files of ``folder`` (manifests before their parts, in name order) that fit one call's return
    (``max_files`` files, ``max_mib`` MiB) into ``to``; a ledger in ``folder`` remembers what went, so each call
    brings the next ones. A file bigger than ``max_mib`` is an error: pack with smaller parts."""
    ledger = folder / ".sent"
    sent = set(ledger.read_text().split()) if ledger.exists() else set()
    files = sorted((p for p in folder.rglob("*") if p.is_file() and p.name != ".sent"),
                   key=lambda p: (p.parent.name, not p.name.endswith(".json"), p.name))
    picked: list[Path] = []
    total = 0
    for path in files:
        rel = str(path.relative_to(folder))
        if rel in sent:
            continue
        size = path.stat().st_size
        if size > max_mib * MIB:
            raise SystemExit(f"{path} is {size / MIB:.1f} MiB, over one call's {max_mib} MiB: pack smaller parts")
        if len(picked) == max_files or total + size > max_mib * MIB:
            break
        picked.append(path)
        total += size
    to.mkdir(parents=True, exist_ok=True)
    for path in picked:
        shutil.copy(path, to / path.name)
    ledger.write_text("\n".join(sorted(sent | {str(p.relative_to(folder)) for p in picked})))
    left = sum(1 for p in files if str(p.relative_to(folder)) not in sent) - len(picked)
    print(f"sent {len(picked)} files ({total / MIB:.1f} MiB); {left} left")
    return [p.name for p in picked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("sources", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default=None, help="Archive name (default: the first source's name).")
    p.add_argument("--part-mib", type=int, default=60)
    p.add_argument("--delta-base", type=Path, default=None, help="Checkpoint folder the weights are deltas against.")
    u = sub.add_parser("unpack")
    u.add_argument("manifest", type=Path)
    u.add_argument("--into", type=Path, required=True)
    u.add_argument("--parts", type=Path, default=None, help="Folder of the parts (default: the manifest's).")
    u.add_argument("--delta-base", type=Path, default=None, help="Checkpoint folder the deltas were made against.")
    n = sub.add_parser("send-next", help="Copy the next files of a packed folder that fit one call into --to.")
    n.add_argument("folder", type=Path)
    n.add_argument("--to", type=Path, required=True)
    n.add_argument("--max-mib", type=int, default=63)
    n.add_argument("--max-files", type=int, default=8)
    args = parser.parse_args()
    if args.cmd == "send-next":
        send_next(args.folder, args.to, args.max_mib, args.max_files)
    elif args.cmd == "pack":
        print(pack(args.sources, args.out, args.name or args.sources[0].name, args.part_mib, args.delta_base))
    else:
        for path in unpack(args.manifest, args.into, args.parts, args.delta_base):
            print(path)


if __name__ == "__main__":
    main()
