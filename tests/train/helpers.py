"""A tiny Llama built from a config (SmolLM2's real tokenizer, so the template's tokens are real) and SFT rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


USER_TEXTS = [
    "What is the weather in {city}?", "Hello! I am planning a trip. How warm is it in {city} today?",
    "Hi, quick question about the temperature.", "I need the forecast, please.", "Good morning.",
    "Can you help me with something?", "Is it cold outside in {city} right now? My flight leaves soon.",
    "Tell me the weather for my city, I live in {city}.", "Hello, welcome! I'd like to know the temperature.",
    "I'm a travel agent and a client asked me about {city}.", "weather {city}", "Hi there, how are you today?",
]


def conversation(city: str, temp: int, user: str = USER_TEXTS[0]) -> list[dict[str, Any]]:
    call = {"id": f"call_{city}", "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": city}}}
    return [
        {"role": "system", "content": "You answer weather questions."},
        {"role": "user", "content": user.format(city=city)},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": f"call_{city}", "content": f'{{"temp_c": {temp}}}'},
        {"role": "assistant", "content": f"It is {temp} degrees in {city}."},
    ]


def sft_rows(n: int) -> list[dict[str, Any]]:
    cities = ["Oslo", "Lima", "Pune", "Cork", "Kyiv", "Nice", "Riga", "Bern"]
    return [{"messages": conversation(cities[i % len(cities)], 3 + i), "tools": [TOOL]} for i in range(n)]


def write_sft(path: Path, rows: list[dict[str, Any]], with_task_ids: list[str] | None = None) -> Path:
    """Rows as the dataset builder writes its SFT view (same features), optionally with task ids."""
    from datasets import Dataset, Value

    from synth.data.build import SFT_FEATURES, _sft_message

    features = SFT_FEATURES.copy()
    table = []
    for i, row in enumerate(rows):
        # _sft_message takes OpenAI-form messages (arguments as JSON strings) like the builder does.
        msgs = []
        for m in row["messages"]:
            calls = [{**c, "function": {"name": c["function"]["name"],
                                        "arguments": __import__("json").dumps(c["function"]["arguments"])}}
                     for c in m.get("tool_calls") or []]
            msgs.append(_sft_message({**m, "tool_calls": calls}))
        item = {"messages": msgs, "tools": row["tools"]}
        if with_task_ids is not None:
            item["task_id"] = with_task_ids[i]
        table.append(item)
    if with_task_ids is not None:
        features["task_id"] = Value("string")
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(table, features=features).to_parquet(str(path))
    return path


def tiny_model(out: Path, *, layers: int = 2, hidden: int = 64, heads: int = 4, kv_heads: int = 2) -> Path:
    """A randomly initialised Llama (GQA) saved as a HF checkpoint with SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from synth.serve.checkpoint import ensure_checkpoint

    tokenizer = AutoTokenizer.from_pretrained(ensure_checkpoint())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=4096, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def tool_calling_checkpoint(root: Path) -> Path:
    """A tiny Llama trained through ``synth train`` until it writes the conversation's turns by heart.

    Trained once per ``root`` (a finished run is not trained again), so tests share one per session through
    ``tmp_path_factory.getbasetemp()``. Small enough for vLLM on two shared cores (head_dim 64, which vLLM's CPU
    attention supports), and trained hard enough (one conversation, many steps) that greedy decoding reproduces
    the assistant's turns: a server that renders the same template and runs the hermes parser must then return
    the call as ``tool_calls``.
    """
    from synth.config import PipelineConfig, TrainConfig
    from synth.train.trainer import train

    base = root / "tiny-base"
    if not (base / "config.json").exists():
        tiny_model(base, layers=2, hidden=128, heads=2, kv_heads=1)
    # Many openings, one first move: the model learns to call the tool whatever the user says first (an eval's
    # user simulator writes its own openings), and to answer from the result.
    rows = [{"messages": conversation("Oslo", 3, user), "tools": [TOOL]} for user in USER_TEXTS]
    data = write_sft(root / "sft.parquet", rows)
    cfg = PipelineConfig(runs_dir=root / "runs", run="tc", train=TrainConfig(
        base_model=base, data_files=[data], lr=2e-2, epochs=60, micro_batch_tokens=8192, grad_accum=1,
        warmup_ratio=0.05, threads=1, name="tool-caller"))
    summary = train(cfg, progress=False)
    assert summary.last_loss is not None and summary.last_loss < 0.05, summary.last_loss
    return Path(summary.checkpoint)
