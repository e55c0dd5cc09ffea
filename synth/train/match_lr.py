"""Set a MuonClip job's ``muon_lr`` so its hidden matrices move as far per step as AdamW's did.

K2 scales Muon's update to RMS 0.2 * lr (AdamW's steady state in pre-training). Early in a short fine-tune AdamW's
bias-corrected steps are close to sign(g), of RMS close to lr, so at one lr MuonClip moves several times less per
step (docs/muonclip.md, "The lr of a short fine-tune"). This reads two finished runs on the same data, the
AdamW one at the job's ``lr`` and a MuonClip probe (``update_rms`` is per unit lr, so the probe's own lr does not
enter), and writes the MuonClip job (a ``synth.train.job.TrainJob`` file) with
``muon_lr = lr * adamw_update_rms / probe_update_rms`` (two significant digits).

Only the standard library and PyYAML, so it runs on a machine that has only torch besides (the lent GPU)::

    python -m synth.train.match_lr ADAMW_DIR PROBE_DIR JOB.yaml OUT_JOB.yaml
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from synth.errors import SynthError


class MatchError(SynthError, ValueError):
    """A run to match on is missing, of the wrong optimizer, or has no update RMS."""

    hint = "give the AdamW run's folder and a MuonClip probe's folder, both finished on the same data"


def matched_lr(lr: float, adamw_rms: float, muon_rms: float) -> float:
    if not (adamw_rms > 0 and muon_rms > 0):
        raise MatchError(f"update RMS must be positive (AdamW {adamw_rms}, MuonClip {muon_rms})")
    return float(f"{lr * adamw_rms / muon_rms:.2g}")


def _summary(folder: Path, optimizer: str) -> dict[str, Any]:
    path = folder / "train_summary.json"
    if not path.exists():
        raise MatchError(f"{path} is missing", hint=f"train the {optimizer} run first")
    summary = json.loads(path.read_text())
    if summary.get("optimizer") != optimizer:
        raise MatchError(f"{folder} was trained with {summary.get('optimizer')}, not {optimizer}")
    if summary.get("update_rms") is None:
        raise MatchError(f"{path} has no update_rms", hint="train it again with this version of synth")
    return summary


def write_matched_job(adamw_dir: Path, probe_dir: Path, job: Path, out: Path) -> dict[str, Any]:
    adamw, probe = _summary(adamw_dir, "adamw"), _summary(probe_dir, "muonclip")
    spec = yaml.safe_load(job.read_text())
    # update_rms is per unit of each step's lr: the ratio is the probe's whatever lr it ran at, and scales the job's.
    lr = float(spec.get("lr", 1e-4))
    spec["muon_lr"] = matched_lr(lr, adamw["update_rms"], probe["update_rms"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return {"adamw_update_rms": adamw["update_rms"], "muonclip_update_rms": probe["update_rms"], "lr": lr,
            "muon_lr": spec["muon_lr"], "job": str(out)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("adamw_dir", "probe_dir", "job", "out"):
        ap.add_argument(name, type=Path)
    args = ap.parse_args(argv)
    print(json.dumps(write_matched_job(args.adamw_dir, args.probe_dir, args.job, args.out)))


if __name__ == "__main__":
    main()
