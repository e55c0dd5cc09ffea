"""The pipeline config: a YAML file (``pipelines/default.yaml``) validated by pydantic, plus ``key=value`` overrides.

A bad config fails at once with one message naming the field, what was given and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from synth.errors import SynthError
from synth.paths import PIPELINES


class ConfigError(SynthError, ValueError):
    """A config that cannot be used; the message says which field and what was given."""

    hint = "fix that field in the YAML file (--config) or in the --set override, then run the command again"
    exit_code = 2  # as click's own usage errors: the command line or its config was wrong, nothing ran


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EndpointConfig(Strict):
    base_url: str = Field(description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    api_key: str = Field(default="EMPTY", description="Key for the endpoint; vLLM accepts any value by default.")
    max_concurrency: int = Field(default=64, ge=1, description="Requests in flight to this endpoint at once.")


class LLMConfig(Strict):
    endpoints: list[EndpointConfig] = Field(
        default_factory=list,
        description="Endpoints to load-balance over. Empty: use $SYNTH_BASE_URL, else start the embedded server.",
    )
    model: str | None = Field(default=None, description="Served model name; None asks the first endpoint.")
    temperature: float = Field(default=0.7, ge=0, le=2, description="Sampling temperature of every role that sets "
                               "none of its own (llm.roles.<role>.temperature).")
    max_tokens: int = Field(default=384, ge=1, description="Tokens one reply may take, for every role that sets "
                            "none of its own (llm.roles.<role>.max_tokens).")
    timeout_s: float | None = Field(
        default=None, gt=0,
        description="Seconds one request may take before it is retried. None: derived from max_tokens and the "
        "embedded server's measured rate at start-up (3x a max_tokens reply at full concurrency, 120-1800 s), "
        "600 s for other endpoints.",
    )
    max_retries: int = Field(default=4, ge=0, description="Retries of a request on connection errors, 429, 5xx.")
    probe_rate: bool = Field(default=True, description="Measure the server's rate before `synth pipeline` "
                             "(about 10-30 s) to print the expected wall time and derive timeout_s.")
    slow_retries: int = Field(
        default=2, ge=0,
        description="Retries, each with a doubled deadline, of a request that timed out on a server that still "
        "answers /health; after them the row is recorded as an error and the stage goes on.",
    )
    structured_retries: int = Field(default=1, ge=0,
                                    description="Fresh samples asked for when a structured reply does not validate.")
    roles: dict[Literal["agent", "user_sim", "tool_sim", "judge", "generator"], RoleConfig] = Field(
        default_factory=dict,
        description="Per-role endpoints and models (agent, user_sim, tool_sim, judge, generator); a role not "
        "named here uses the default endpoints (by default all on the embedded server).",
    )
    tool_calling: Literal["auto", "native", "schema"] = Field(
        default="auto",
        description="native: server tool parser; schema: a JSON Schema constrained turn; auto: schema.",
    )


class RoleConfig(Strict):
    """Where one role's requests go (e.g. a stronger judge than the agent it judges)."""

    endpoints: list[EndpointConfig] = Field(
        default_factory=list, description="This role's endpoints; empty: the run's default endpoints."
    )
    model: str | None = Field(default=None, description="Served model name for this role; None: llm.model, else "
                              "the first model this role's endpoint lists.")
    temperature: float | None = Field(default=None, ge=0, le=2, description="None: llm.temperature.")
    max_tokens: int | None = Field(
        default=None, ge=16, description="Tokens one reply of this role may take; None: llm.max_tokens. A small "
        "agent whose wrong answers run to the limit spends most of a rollout's tokens on them: a correct grounded "
        "answer takes about 40, so agent: {max_tokens: 128} cuts a round's cost on a slow CPU.")


class EmbeddedConfig(Strict):
    host: str = Field(default="127.0.0.1", description="Address the embedded vLLM server listens on.")
    port: int = Field(default=8765, ge=1024, le=65535, description="Port of the embedded vLLM server.")
    max_model_len: int = Field(default=4096, ge=512, description="Longest prompt plus reply, in tokens, the embedded "
                               "server accepts (vLLM's --max-model-len).")
    startup_timeout_s: float = Field(
        default=600, gt=0,
        description="Start-up may go this long without progress (no new log output and no CPU time used by the "
        "server's processes) before it is called hung; a slow, loaded machine that is still loading or compiling "
        "is waited for, up to startup_max_s.",
    )
    startup_max_s: float = Field(default=3600, gt=0, description="Start-up's limit even while it progresses.")
    kv_cache_gb: int = Field(default=4, ge=1, description="GiB of memory for the embedded server's KV cache "
                             "(VLLM_CPU_KVCACHE_SPACE).")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        default="auto",
        description="Serving dtype. auto: bfloat16 only where the CPU has native bf16 matrix instructions "
        "(AVX512-BF16 or AMX-BF16), else float32 (emulated bf16 runs about 5x slower).",
    )
    model_dir: Path | None = Field(default=None, description="Checkpoint to serve; None: the embedded SmolLM2.")
    served_name: str | None = Field(default=None, description="Model name the server answers to; None: derived.")
    chat_template: Path | None = Field(default=None, description="Jinja chat template file passed to vLLM.")
    tool_call_parser: str | None = Field(
        default=None, description="vLLM tool-call parser (e.g. hermes); set, the server does native tool calling.")
    preload_tcmalloc: bool = Field(default=True, description="LD_PRELOAD tcmalloc into the server when found.")


class ToolsStageConfig(Strict):
    max_real_tools: int | None = Field(default=None, ge=1, description="Cap on harvested tools loaded (None: all).")
    evolve_leaves: int = Field(default=3, ge=0, description="Domain-tree leaves to grow synthetic tools for.")
    evolve_generations: int = Field(default=2, ge=1, description="Rounds of tool evolution per leaf; each round "
                                    "sees the tools made before it.")
    tools_per_leaf: int = Field(default=3, ge=1, description="Synthetic tools written per leaf in each round.")


class GrowConfig(Strict):
    """Growing the synthetic registry to a size (`synth tools grow`): the tools stage plans subdomains over every
    domain leaf, round after round, until this many distinct tools are kept (synth.tools.grow)."""

    target: int = Field(default=0, ge=0, description="Synthetic tools to keep after deduplication; 0: grow "
                        "tools.evolve_leaves leaves once (the pipeline's default).")
    max_rounds: int = Field(default=8, ge=1, description="Rounds of planning at most: each plans enough new "
                            "subdomains for what is missing, at the kept share the rounds before it saw.")
    dedup_threshold: float = Field(default=0.8, gt=0, le=1, description="MinHash Jaccard (name and description "
                                   "shingles) at which a synthetic tool is a near-duplicate of one kept before it.")


class AgentsStageConfig(Strict):
    count: int = Field(default=6, ge=1, description="Agents to write, each a system prompt and a toolset.")
    toolset_size: tuple[int, int] = Field(default=(2, 4), description="Tools per agent: [min, max], 1 <= min <= max.")
    real_exec_share: float = Field(default=0.34, ge=0, le=1,
                                   description="Share of agents given tools of a sandbox-safe real MCP server.")
    coding_share: float = Field(default=0.5, ge=0, le=1,
                                description="Share of agents given run_python; they get coding tasks only.")
    exclude_bfcl_names: bool = Field(
        default=True, description="Never draw a tool named as one of BFCL's functions (names compared as "
        "synth.bfcl.contamination normalises them), so nothing of the benchmark the data is scored on reaches "
        "generation. A real server's tool can share a BFCL name (the time server's get_current_time does); the "
        "agents stage's summary lists what it left out. Without BFCL's data installed nothing is left out, and the "
        "summary says so.")

    @field_validator("toolset_size")
    @classmethod
    def _ordered_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        lo, hi = value
        if lo < 1 or lo > hi:
            raise ValueError("must be [min, max] with 1 <= min <= max, e.g. [2, 4]")
        return value


TaskKindName = Literal["single", "choose", "parallel", "no_tool", "follow_up",
                       "single_call", "multi_call", "clarify", "refuse", "recover", "coding"]
"""Task kinds (synth.tasks.kinds.KIND_NAMES): the first five built by code, the others written by the generator."""
TASK_KINDS: tuple[str, ...] = get_args(TaskKindName)


def _default_kinds() -> dict[str, float]:
    return {"single": 2.0, "choose": 1.0, "parallel": 1.0, "no_tool": 1.0, "follow_up": 1.0, "multi_call": 1.0,
            "clarify": 1.0, "recover": 1.0}


class TasksStageConfig(Strict):
    per_agent: int = Field(default=2, ge=1, description="Tasks written for each agent.")
    kinds: dict[str, float] = Field(
        default_factory=_default_kinds,
        description="The mix of task kinds, kind -> weight (a kind's share of the tasks is its weight over the "
        "sum). Built by code, with values code chose and checks on them: single (one call, its values said in "
        "plain words), choose (one of several tools), parallel (several calls in one reply), no_tool (a request "
        "no tool serves: answer without a call), follow_up (a second request in a second turn that needs a second "
        "call). Written by the generator from rubrics/task_templates.yaml: single_call, multi_call (a later call "
        "uses an earlier result), clarify (a detail the user gives only when asked), refuse (declined without a "
        "call), recover (the first call fails); coding agents get coding tasks only, whatever the mix. Tasks are "
        "dealt out across agents by weight, so a small run still gets every kind; a kind an agent cannot do "
        "(choose with one tool) goes to the next agent that can. Setting it replaces the whole mix; the older "
        "list tasks.difficulties is read as equal weights.")
    reword: float = Field(
        default=0.0, ge=0, le=1,
        description="Share of the code-built tasks (not no_tool) whose opening the generator model rewords; a "
        "rewording is kept only when code still finds every value in it and no tool name or markup in it, else "
        "code's wording stays.")
    grounded_opening: Literal["generated", "code"] = Field(
        default="generated",
        description="A grounded task's opening message: the generator's request with every checked value added "
        "(generated), or written by code from the tool's description and the values (code). The 135M generator's "
        "requests are often garbled, which leaves its agent nothing to learn from; code's are plain.")
    grounded_draft: Literal["generated", "code"] = Field(
        default="generated",
        description="With grounded_opening=code, who writes the rest of a grounded task: the generator (a "
        "persona, hidden details, an initial world, task criteria for the judge) or code (none of those: the "
        "call, its check and the opening are code's already, and the tool simulator starts from an empty world). "
        "On an AVX2 CPU the 135M generator took 9 s a task for a draft whose persona and world were junk "
        "('Meliot', the tool's schema copied as state); code takes none. Tasks code cannot ground still use "
        "the generator.")
    grounded_only: bool = Field(
        default=False,
        description="Plan only tasks code can ground (a grounded difficulty, for an agent with a tool whose "
        "required arguments code can fill); the others are not made. With a small agent on single_call tasks they "
        "can be a third of the episodes, each costing a generator call and rollouts, and none is accepted.")

    @model_validator(mode="before")
    @classmethod
    def _difficulties_are_kinds(cls, data: Any) -> Any:
        """``difficulties: [a, b]`` (the setting before kinds) is the mix {a: 1, b: 1}."""
        if isinstance(data, dict) and "difficulties" in data:
            data = dict(data)
            listed = data.pop("difficulties")
            if "kinds" in data:
                raise ValueError("set tasks.kinds or tasks.difficulties (the older list, read as equal weights), "
                                 "not both")
            if not isinstance(listed, list):
                raise ValueError(f"tasks.difficulties must be a list of kinds; got {listed!r}")
            data["kinds"] = {str(k): 1.0 for k in listed}
        return data

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(k for k in value if k not in TASK_KINDS)
        if unknown:
            raise ValueError(f"unknown task kind(s) {unknown}; valid kinds: {', '.join(TASK_KINDS)}")
        if any(w < 0 for w in value.values()) or not any(w > 0 for w in value.values()):
            raise ValueError(f"weights must be >= 0 and at least one above 0; got {value}")
        return value

    @property
    def difficulties(self) -> list[str]:
        """The kinds of the mix (weight above 0), in its order."""
        return [k for k, w in self.kinds.items() if w > 0]

    @model_validator(mode="after")
    def _code_draft_needs_code_opening(self) -> TasksStageConfig:
        if self.grounded_draft == "code" and self.grounded_opening != "code":
            raise ValueError("tasks.grounded_draft=code needs tasks.grounded_opening=code: without the generator "
                             "there is no request to add the values to")
        return self


class RolloutsStageConfig(Strict):
    max_turns: int = Field(default=3, ge=1, description="User turns per episode.")
    max_steps: int = Field(
        default=2, ge=1,
        description="Agent steps (tool rounds) per user turn; a turn that reaches it gets one answer-only step "
        "(final_answer). 2 keeps a retry after a failed call; at 3 the longest episodes (a small model calling "
        "one tool until the limit) were the rollouts stage's tail.")
    max_calls_per_step: int = Field(
        default=2, ge=1, le=4,  # 4: synth.agents.turn.MAX_CALLS, the most a reply's schema allows
        description="Parallel tool calls one agent step may make: the grammar's bound in schema mode; in native mode "
        "1 sends parallel_tool_calls=false (the reply's first call is kept) and more are not bounded. Each call is "
        "simulated in turn, so a step of 4 calls made a small model's episodes chains of up to 21 requests, the "
        "run's slowest part. Evaluation never bounds calls.",
    )
    final_answer: bool = Field(
        default=True,
        description="When a turn reaches max_steps still calling tools, ask the agent once more for a plain answer "
        "(no tools), so the episode ends with one; the calls it made stay in the transcript for the checks.",
    )
    error_rate: float = Field(default=0.1, ge=0, le=1, description="Share of simulated tool calls answered "
                              "with an injected server error.")
    timeout_rate: float = Field(default=0.05, ge=0, le=1, description="Share of simulated tool calls answered "
                                "with an injected timeout.")
    empty_rate: float = Field(default=0.05, ge=0, le=1, description="Share of simulated tool calls answered "
                              "with an empty result.")
    partial_rate: float = Field(default=0.05, ge=0, le=1, description="Share of simulated tool calls whose result "
                                "comes back cut short (a change it would have made is not applied).")
    real_exec: bool = Field(default=True, description="Call sandbox-safe MCP servers for real.")
    allow_unconfined: bool = Field(
        default=False,
        description="Where MCP servers can't be confined (not root, no namespaces), run them unconfined instead "
        "of failing; the run report says so.",
    )
    coding_runs_code: bool = Field(
        default=True, description="In a coding episode that is not free text, the first agent step must call "
        "run_python (the sandbox)."
    )
    grounded_calls_first: bool = Field(
        default=False, description="In a grounded task's episodes (one exact call answers it) the first agent step "
        "must call a tool, any of the agent's (tool_choice=required): a small model that answers without calling "
        "makes no data. Which tool and which arguments stay its choice, and the checks hold it to the exact call; "
        "the row records required_first_call='*'. Evaluation forces it only in eval.forced_models' forced episodes.")
    grounded_answer_after_call: bool = Field(
        default=False, description="With grounded_calls_first: the step after the forced call's results must "
        "answer (tool_choice=none). One exact call answers a grounded task, and a small fine-tuned model repeats "
        "the call instead of reporting it (the call budget check then fails). What it answers stays its own; an "
        "answer that writes a tool call as text is an invalid reply, and the row records forced_answer_step. "
        "Evaluation applies it only to eval.forced_models' forced episodes.")
    answer_bad_words: list[str] = Field(
        default_factory=lambda: ["tool_call"],
        description="Strings a native-mode step that must answer may not write (sent as vLLM's bad_words in those "
        "steps only). A small fine-tuned agent writes its call as text where it must answer ('<tool_call>{...}'), "
        "an invalid reply, the commonest way such an agent's episodes fail (docs/studies/data-value.md). Banned, it "
        "writes an answer or something the checks reject. Empty ([]) for a server that refuses vLLM's extension.")
    coding_free_text: float = Field(
        default=1.0, ge=0, le=1,
        description="Share of a coding task's episodes in which the agent answers in plain text, the program in a "
        "fenced code block, with no schema and no tool call (the first ceil(share x samples) samples); the others "
        "use llm.tool_calling. The 135M model wrote passing code in free text, never through a JSON run_python call.",
    )
    samples: int = Field(
        default=3, ge=1, le=64,
        description="Episodes per task (best-of-N rejection sampling, as in K2): each its own seed and row id.",
    )


QualityGate = Literal["empty_answer", "repeated_fragment", "markup_loop", "names_tool", "internal_id",
                      "schema_dump", "says_nothing", "invalid_arguments"]
"""The quality gates of ``synth.judge.gates`` (what every accepted trajectory must pass), by name."""
QUALITY_GATES: tuple[QualityGate, ...] = get_args(QualityGate)


class JudgeStageConfig(Strict):
    samples: int = Field(default=1, ge=1, description="Judge samples per trajectory; majority decides.")
    pass_threshold: float = Field(default=0.6, ge=0, le=1, description="Minimum weighted score to accept.")
    accept: Literal["llm", "verifiable", "both", "auto"] = Field(
        default="auto",
        description="What accepts a trajectory: llm (the LLM judge alone), verifiable (code checks that verify "
        "the outcome, alone), both (code checks and the LLM judge), auto (code checks, plus each LLM criterion "
        "whose measured agreement with the code checks on this run reaches trust_agreement).",
    )
    trust_agreement: float = Field(
        default=0.8, gt=0, le=1,
        description="auto: a criterion's agreement with the code checks needed to trust it (share of paired "
        "trajectories where both say the same).",
    )
    calibration_min_pairs: int = Field(
        default=8, ge=1, description="auto: trajectories judged by both a criterion and code checks before the "
        "criterion's agreement counts at all.")
    llm_rows: Literal["needed", "all"] = Field(
        default="needed",
        description="Which trajectories the LLM judge scores. needed: those whose acceptance it can change under "
        "`accept` (llm: all; auto and both: those no code check rejected; verifiable: none), plus the calibration "
        "sample; all: every trajectory. With a small agent a code check rejects most rows, and judging those "
        "spends a large share of all generated tokens on verdicts that change nothing.",
    )
    calibration_share: float = Field(
        default=0.3, gt=0, le=1,
        description="llm_rows=needed: share of trajectories (fixed by row id) the LLM judge scores whatever the "
        "code checks say. Calibration is measured on this uniform sample alone, so rows judged because they "
        "passed do not bias the agreement.",
    )
    per_criterion: bool = Field(
        default=False, description="Ask the judge one criterion per request (the prompt a critic trained by `synth "
        "critic` / `synth train --role judge` learnt on) instead of every criterion in one; its replies are merged, "
        "and the evidence rule and calibration are unchanged.")
    gates: list[QualityGate] = Field(
        default_factory=lambda: list(QUALITY_GATES),
        description="Quality gates a trajectory must pass to be accepted, in every accept mode "
        "(synth.judge.gates): an empty answer, a repeated fragment, markup loops, a tool name or an internal id in "
        "the answer, a dumped schema, an answer that says nothing of the tool results, arguments that fail the "
        "tool's JSON Schema. Default: all of them; [] turns them off.",
    )


    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Off, it dumps as before the field existed: the fingerprints of runs judged before stay the same.
        out: dict[str, Any] = handler(self)
        if out.get("per_criterion") is False:
            out.pop("per_criterion")
        return out

class RayConfig(Strict):
    enabled: bool = Field(default=True, description="false runs stages in-process (tests, debugging).")
    address: str | None = Field(default=None, description="Ray cluster address; None: $RAY_ADDRESS or local Ray.")
    workers: int = Field(default=1, ge=1, description="Ray tasks per stage; each runs many calls concurrently.")
    num_cpus: int | None = Field(default=None, description="CPUs for local Ray (None: Ray decides).")
    shard_cpus: float = Field(default=1, gt=0, description="CPUs each shard asks Ray for (one asyncio loop uses "
                              "one); what makes Ray spread shards over a cluster's nodes.")


class TrajectoryDedupConfig(Strict):
    """Near-duplicate trajectories: MinHash LSH over word 3-shingles of the normalised transcript (user turns, tool
    names and argument values; not the system prompt, ids, timings or tool results). Only train rows are dropped;
    held-out rows never are, and a train row near a held-out row is dropped."""

    enabled: bool = Field(default=True, description="Drop near-copies from train (the index beside the dataset, "
                          "dataset/dedup/, is written either way, for later runs to check against).")
    threshold: float = Field(
        default=0.9, gt=0, le=1,
        description="Estimated Jaccard similarity of two transcripts' word 3-shingles at or above which the later "
        "one is a copy. 0.9: a change of one word touches three shingles, so a copy differing by about one word in "
        "60 (the same question and calls, a reworded phrase) is dropped, while another argument value or another "
        "question in a short transcript (a city, a file) changes a third of its shingles and is kept; lower it to "
        "drop paraphrases too, 1 drops exact copies only.")
    runs: list[RunName] = Field(
        default_factory=list, description="Earlier runs (names under runs_dir) whose dataset's rows this run's "
        "train rows are checked against (their dedup/ index, else their Parquet rows).")
    indexes: list[Path] = Field(
        default_factory=list, description="Folders to check against besides runs: a dedup/ index, or a dataset "
        "folder (an earlier published dataset: data/<split>-*.parquet).")
    data_runs: bool = Field(
        default=True, description="Also check against train.data_runs (synth improve's earlier rounds): those rows "
        "are trained on with this run's, so a copy of one would be trained on twice.")


class DatasetConfig(Strict):
    heldout_share: float = Field(
        default=0.2, ge=0, lt=1,
        description="Share of tool groups (MCP servers, synthetic domain leaves; coding tasks: problems) held out "
        "for evaluation, chosen by the group's key, the same in every round: a task whose tools are all held out "
        "is evaluated and never trained on, one whose tools mix both sides is in neither split "
        "(synth.data.heldout).",
    )
    dedup: TrajectoryDedupConfig = Field(
        default_factory=TrajectoryDedupConfig,
        description="Near-duplicate trajectories dropped from train, inside the run and against earlier runs "
        "(synth.data.trajectory_dedup).")


class PublishConfig(Strict):
    repo_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
                                description="OWNER/NAME of the Hub dataset repo (`synth publish --repo-id`).")
    private: bool = Field(default=False, description="Create the repo private.")


class QuotaConfig(Strict):
    max_tokens: int | None = Field(default=None, ge=1, description="Token budget of a quota run: once spent, no "
                                   "new row starts (inside a round too) and no round follows.")
    max_wall_s: float = Field(default=3600, gt=0, description="Wall-time budget of a quota run, like max_tokens.")
    max_rounds: int = Field(default=5, ge=1, description="Rounds a quota run may take before it stops short of "
                            "accept.")
    max_growth: float = Field(default=2.0, gt=1, le=2, description="A round grows the agents at most this factor "
                              "(2: at most doubling), whatever the acceptance rate so far predicts.")
    # Set by the pipeline for the stages of a quota run (workers read them from the config they are sent).
    stop_at: float | None = Field(default=None, description="Internal: Unix time after which no new row starts.")
    tokens_left: int | None = Field(default=None, description="Internal: tokens a stage may still spend.")


class TrainSettings(Strict):
    """How one training job steps: the optimizer's hyper-parameters, the schedule and where it runs. The
    pipeline's ``train`` section and a training job spec (``synth.train.job.TrainJob``) share them."""

    lr: float = Field(default=1e-4, gt=0, description="Peak learning rate of AdamW (the baseline, and MuonClip's "
                      "AdamW group: embeddings, norms, output head).")
    muon_lr: float | None = Field(default=None, gt=0, description="Peak learning rate of MuonClip's matrices; "
                                  "None: lr. K2's 0.2*sqrt(max(A,B)) scale gives Muon updates of RMS 0.2*lr, which "
                                  "matches AdamW's steady state in pre-training; early in a fine-tune AdamW's "
                                  "updates are larger (train_summary.json's update_rms measures both).")
    weight_decay: float = Field(default=0.1, ge=0, description="Decoupled weight decay of both optimizers.")
    tau: float = Field(default=100.0, gt=0, description="QK-Clip threshold (MuonClip).")
    epochs: int = Field(default=3, ge=1, description="Passes over the training rows.")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimizer steps.")
    micro_batch_tokens: int = Field(default=4096, ge=64, description="Padded tokens per forward pass.")
    grad_accum: int = Field(default=2, ge=1, description="Micro-batches per optimizer step.")
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1, description="Share of the steps the lr warms up over, "
                                "before its cosine decay.")
    max_grad_norm: float | None = Field(default=1.0, gt=0, description="Gradients are clipped to this global "
                                        "norm before each step; None: not clipped.")
    max_seq_len: int = Field(default=4096, ge=16, description="Longer rows are dropped (and counted), not cut.")
    save_every: int = Field(default=10, ge=1, description="Optimizer steps between resume checkpoints.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: CUDA when present.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto", description="Compute dtype (weights stay fp32). auto: bf16 autocast on CUDA with bf16 and "
        "on CPUs with native bf16 (AVX512-BF16/AMX), else fp32 (emulated bf16 runs about 5x slower).")
    save_dtype: Literal["float32", "bfloat16"] = Field(
        default="float32", description="Dtype of the saved checkpoint (fp32 keeps small fine-tuning deltas).")
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads; None: torch's default.")
    gradient_checkpointing: Literal["auto", "on", "off"] = Field(
        default="auto", description="Recompute each layer's activations in the backward pass. auto: on for the "
        "CPU, whose max-logit capture is exact eager attention (a 3k-token row would keep ~1 GB of attention "
        "scores per layer), off on CUDA (flex attention keeps no score matrix).")


Optimizer = Literal["muonclip", "adamw"]
RUN_NAME = r"^[A-Za-z0-9_.-]+$"
RunName = Annotated[str, StringConstraints(pattern=RUN_NAME)]


class TrainConfig(TrainSettings):
    """The ``train`` stage: one training job per optimizer (and seed replicate) on the run's train split, each a
    full fine-tune of a Hugging Face causal LM."""

    optimizers: list[Optimizer] = Field(
        default_factory=lambda: ["muonclip"], min_length=1,
        description="One job per optimizer, on the same data: muonclip (synth.optim.MuonClip) or adamw (the "
        "baseline).")
    name: str | None = Field(default=None, pattern=RUN_NAME,
                             description="The job's output folder runs/<run>/train/<name>/ when there is one "
                             "optimizer; None: the optimizer's name.")
    base_model: Path | None = Field(default=None, description="HF checkpoint to start from; None: embedded SmolLM2.")
    replicates: int = Field(default=0, ge=0, description="Extra jobs per optimizer with the next seeds (seed + 1, "
                            "+ 2, ...), named <optimizer>-seed<seed>.")
    data_runs: list[RunName] = Field(
        default_factory=list, description="Other runs (names under runs_dir) whose dataset stage every job also "
        "trains on, besides this run's (synth improve: the earlier rounds).")
    here: bool = Field(
        default=True, description="Train on this machine. false: write each unfinished job's spec to "
        "runs/<run>/train/jobs/<name>.yaml and stop; run `synth train --job <file>` where the GPU is, copy its "
        "output folder back to runs/<run>/train/<name>/, and run again: a copied checkpoint of the same job "
        "counts as finished.")

    @model_validator(mode="after")
    def _one_name_one_job(self) -> TrainConfig:
        if self.name is not None and len(self.optimizers) > 1:
            raise ValueError(f"train.name names one job's folder, but train.optimizers lists {self.optimizers}: "
                             "leave the name unset (each job is named by its optimizer)")
        return self


class EvalConfig(Strict):
    """The ``eval`` stage: the held-out tasks the dataset recorded, as full episodes, each model under test as the
    agent (native tool calls)."""

    models: list[str] = Field(default_factory=list, description="Models to evaluate: 'base', a job of the run's "
                              "train stage, or a checkpoint folder; empty: base + every trained job.")
    base_model: Path | None = Field(default=None, description="Checkpoint of 'base'; None: embedded SmolLM2.")
    tasks_from: str | None = Field(
        default=None, pattern=RUN_NAME, description="A run (its name under runs_dir) whose dataset's held-out "
        "tasks are scored instead of this run's (synth improve scores round 1's in every round); None: this run's.")
    max_tasks: int | None = Field(default=None, ge=1, description="Evaluate at most this many held-out tasks (the "
                                  "first by id).")
    port: int = Field(default=8766, ge=1024, le=65535, description="Port the model under test is served on.")
    kv_cache_gb: int = Field(default=2, ge=1, description="KV cache of the server of the model under test.")
    concurrency: int = Field(default=8, ge=1, description="Episodes in flight at once.")
    temperature: float | None = Field(default=0.0, ge=0, le=2,
                                      description="Agent sampling temperature: 0 (greedy), so a score is the "
                                      "model's and not a draw's; None: llm.temperature.")
    forced_models: list[str] = Field(
        default_factory=lambda: ["base"],
        description="Models also scored forced, the way generation forces the agent (rollouts.grounded_calls_"
        "first, grounded_answer_after_call and coding_runs_code on, whatever the run set): the first step of each "
        "turn that expects a call must call a tool, the step after must answer, a coding task's first step calls "
        "the sandbox. The base never saw the tool format it is served with; forced, its calls show what it knows "
        "apart from that format.")
    max_tokens: int | None = Field(default=None, ge=1, description="Tokens one agent reply may take (no grammar "
                                   "closes a rambling reply in native mode); None: llm.max_tokens.")


class ImproveConfig(Strict):
    """``synth improve``: rounds of generate -> accept -> train -> eval (expert iteration)."""

    rounds: int = Field(default=2, ge=1, description="Generate/train/eval rounds after the base model's eval.")
    optimizers: list[Optimizer] = Field(
        default_factory=lambda: ["muonclip"], min_length=1,
        description="Optimizers trained each round on the same data (the round's train.optimizers); the first "
        "one's model generates the next round's data (the others are baselines).")
    agents_per_round: int | None = Field(default=None, ge=1, description="New agents each round; None: agents.count.")
    cumulative: bool = Field(default=True, description="Train each round on the train splits of every round so "
                             "far (expert iteration keeps its data), not only the newest.")
    train_here: bool = Field(
        default=True, description="Train on this machine (the round's train.here). false: at a round whose "
        "checkpoints are not finished, write each job's spec (improve/round-<k>/train/jobs/<name>.yaml) and stop; "
        "run `synth train --job <file>` on a GPU machine, copy its output folder back, and run `synth improve` "
        "again: a copied checkpoint of the same job counts as finished.")
    replicates: int = Field(
        default=0, ge=0, description="Extra training seeds of the last round's models (the round's seed + 1, "
        "+ 2, ...), trained and scored like the round's own and named <optimizer>-seed<seed>. One seed's score on "
        "a few dozen held-out tasks moves by more than two optimizers differ: with replicates the data-value "
        "figures are each optimizer's mean over its seeds, with their range and a paired sign test.")
    train_by_round: dict[int, dict[str, Any]] = Field(
        default_factory=dict, description="train.* settings of single rounds, over train.*: {round: {key: "
        "value}}. For a setting that must differ by round, e.g. MuonClip's muon_lr matched to each round's own "
        "AdamW update RMS (synth.train.match_lr), which shrinks as the rounds' data grows.")

    @field_validator("train_by_round")
    @classmethod
    def _known_train_keys(cls, value: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
        for k, settings in value.items():
            if k < 1:
                raise ValueError(f"round {k}: rounds are numbered from 1 (round 0 only evaluates the base model)")
            allowed = set(TrainSettings.model_fields)
            unknown = sorted(set(settings) - allowed)
            if unknown:
                raise ValueError(f"round {k}: {unknown} cannot be set for one round (the loop sets the optimizers, "
                                 f"names, seeds and data of each round's jobs); valid: {sorted(allowed)}")
            TrainSettings.model_validate(settings)  # each value checked as train.* checks it
        return value


class PipelineConfig(Strict):
    run: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]+$", description="Run name: runs/<run>/.")
    runs_dir: Path = Field(default=Path("runs"), description="Where runs are written: runs_dir/<run>/<stage>/. "
                           "On a cluster, an absolute path on storage every node sees.")
    seed: int = Field(default=0, description="Every row id and every sample derives from it: the same seed and "
                      "settings plan the same rows.")
    llm: LLMConfig = Field(default_factory=LLMConfig)
    embedded: EmbeddedConfig = Field(default_factory=EmbeddedConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    tools: ToolsStageConfig = Field(default_factory=ToolsStageConfig)
    grow: GrowConfig = Field(default_factory=GrowConfig)
    agents: AgentsStageConfig = Field(default_factory=AgentsStageConfig)
    tasks: TasksStageConfig = Field(default_factory=TasksStageConfig)
    rollouts: RolloutsStageConfig = Field(default_factory=RolloutsStageConfig)
    judge: JudgeStageConfig = Field(default_factory=JudgeStageConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    on_change: Literal["refuse", "recompute"] = Field(
        default="refuse",
        description="A re-run whose settings differ from those that made a stage's rows: refuse with the "
        "differences, or recompute that stage and the ones after it.",
    )
    row_attempts: int = Field(
        default=2, ge=1,
        description="Attempts a row gets across re-runs: a row that ended in an error is tried again by the next "
        "run until it has failed this many times.",
    )
    accept: int | None = Field(default=None, ge=1, description="Quota: grow the run until this many are accepted.")
    quota: QuotaConfig = Field(default_factory=QuotaConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    improve: ImproveConfig = Field(default_factory=ImproveConfig)

    @field_validator("runs_dir")
    @classmethod
    def _relative_to_cwd(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.run

    def endpoint_urls(self) -> list[EndpointConfig]:
        """Configured endpoints, else ``$SYNTH_BASE_URL`` (comma-separated); empty means: use the embedded server."""
        if self.llm.endpoints:
            return self.llm.endpoints
        env = os.environ.get("SYNTH_BASE_URL", "").strip()
        key = os.environ.get("SYNTH_API_KEY", "EMPTY")
        return [EndpointConfig(base_url=url.strip(), api_key=key) for url in env.split(",") if url.strip()]


def _set_path(data: dict[str, Any], dotted: str, raw: str, error: type[SynthError], hint: str) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise error(f"--set {dotted}={raw}: {key!r} is not a section (it holds {node!r})", hint=hint)
    node[keys[-1]] = yaml.safe_load(raw) if raw != "" else None


def read_yaml(path: Path, overrides: list[str] | None, *, error: type[SynthError], what: str, missing_hint: str,
              override_form: str, override_hint: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` with ``dotted.key=value`` overrides (YAML values) applied; every
    problem raised as ``error`` naming the file (``what``: "config file", "job file") or the override."""
    if not path.exists():
        raise error(f"{what} {path} does not exist", hint=missing_hint)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{what} {path} must hold a mapping at the top level")
    for item in overrides or []:
        if "=" not in item:
            raise error(f"--set {item!r} has no '=': it must be {override_form}", hint=override_hint)
        key, raw = item.split("=", 1)
        _set_path(data, key.strip(), raw.strip(), error, override_hint)
    return data


def _describe(err: ValidationError, overrides: list[str] | None = None) -> tuple[str, str]:
    """The problems in the file and those in the ``--set`` overrides, one line each: a problem whose field an
    override set (or lies inside it, or holds it) is the flag's, named as typed; the rest are the file's."""
    keys = [(item, tuple(item.split("=", 1)[0].strip().split("."))) for item in overrides or [] if "=" in item]
    in_file, in_flags = [], []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        msg = e["msg"]
        ctx = e.get("ctx") or {}
        if e["type"] == "extra_forbidden":
            msg = "unknown field" + (f" (fields there: {', '.join(known)})" if (known := _fields_at(loc[:-1]))
                                     else "")
        if "expected" in ctx:
            msg += f" (allowed: {ctx['expected']})"
        line = f"{'.'.join(loc)}: {msg}; got {e.get('input')!r}"
        flag = next((item for item, key in keys if key[:len(loc)] == loc or loc[:len(key)] == key), None)
        if flag is not None:
            in_flags.append(f"  --set {flag}: {line}")
        else:
            in_file.append(f"  {line}")
    return "\n".join(in_file), "\n".join(in_flags)


def _fields_at(loc: tuple[str, ...]) -> list[str]:
    """The fields the config section at ``loc`` takes (none when ``loc`` is no section of the model)."""
    model: Any = PipelineConfig
    for key in loc:
        field = model.model_fields.get(key) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = field.annotation
    return sorted(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def load_config(path: Path | str | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Load ``path`` (default ``pipelines/default.yaml``) and apply ``a.b=value`` overrides."""
    path = Path(path) if path else PIPELINES / "default.yaml"
    data = read_yaml(path, overrides, error=ConfigError, what="config file",
                     missing_hint="pass --config with a YAML file (pipelines/ holds examples)",
                     override_form="section.field=value",
                     override_hint="write each --set as section.field=value, e.g. --set agents.count=10")
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        in_file, in_flags = _describe(exc, overrides)
        if not in_file:  # the file is fine: blaming it would send the user to the wrong place
            raise ConfigError(f"invalid --set:\n{in_flags}",
                              hint="fix that --set flag (section.field=value; docs/config.md lists every field), "
                              "then run the command again") from exc
        raise ConfigError(f"invalid config {path}:\n{in_file}" + (f"\nand invalid --set:\n{in_flags}"
                                                                  if in_flags else "")) from exc
