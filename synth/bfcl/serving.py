"""Which endpoint and model ``synth bfcl`` scores, and serving a local checkpoint the way FC mode needs it.

``--model`` is one of:

- an endpoint URL (``http://host:8000/v1``): the first model it serves;
- ``base`` (the default when no endpoint is configured), a trained model's name under ``runs/<run>/train/``, or a
  checkpoint folder: served here by vLLM on ``eval.port``, as ``synth eval`` serves the model under test;
- else the served name of a model on the configured endpoints (``SYNTH_BASE_URL`` or ``llm.endpoints``);
  nothing given with endpoints configured: the first model they serve.

Why a local checkpoint gets a server of its own rather than the embedded one on ``embedded.port``: FC mode needs the
tool chat template (SmolLM2's own template drops ``tools``) and a tool parser, which the pipeline's server is not
started with; on a server without them every FC reply would be text and score 0 whatever the model can do. The
served name follows the weights, so a server left running with other weights on that port is refused, not used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from synth.bfcl.data import BfclError
from synth.config import EmbeddedConfig, EndpointConfig, PipelineConfig
from synth.serve import server
from synth.tool_format import TOOL_CALL_PARSER

BASE = "base"


class Target(BaseModel):
    """What to score: the endpoints, the served name there (None: the first listed), and the local server's
    configuration when one is served here."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    endpoints: list[EndpointConfig]
    served_name: str | None = None
    local: EmbeddedConfig | None = None


def is_url(model: str | None) -> bool:
    return bool(model) and str(model).startswith(("http://", "https://"))


def local_checkpoint(config: PipelineConfig, model: str | None) -> tuple[bool, Path | None]:
    """Whether ``model`` names a checkpoint here, and which: a folder, or None for the base (``eval.base_model``,
    else the embedded SmolLM2)."""
    if model == BASE:
        return True, config.eval.base_model
    if model is None or is_url(model):
        return False, None
    trained = config.run_dir / "train" / model
    if (trained / "config.json").exists():
        return True, trained
    if (Path(model) / "config.json").exists():
        return True, Path(model)
    return False, None


def _tag(checkpoint: Path) -> str:
    weights = sorted(checkpoint.glob("*.safetensors"))
    ident = "|".join(f"{w.name}:{w.stat().st_size}:{int(w.stat().st_mtime)}" for w in weights)
    return hashlib.sha256(f"{checkpoint.resolve()}|{ident}".encode()).hexdigest()[:8]


def served_config(config: PipelineConfig, checkpoint: Path | None, chat_template: Path) -> EmbeddedConfig:
    """How a local checkpoint (None: the embedded model) is served for BFCL: on ``eval.port``, with the tool
    template and the parser that reads what it teaches."""
    name = None if checkpoint is None else f"{checkpoint.name.lower()}-{_tag(checkpoint)}"
    return EmbeddedConfig(**{**config.embedded.model_dump(), "port": config.eval.port, "model_dir": checkpoint,
                             "served_name": name, "chat_template": chat_template,
                             "tool_call_parser": TOOL_CALL_PARSER, "kv_cache_gb": config.eval.kv_cache_gb})


def resolve(config: PipelineConfig, model: str | None, chat_template: Path, concurrency: int) -> Target:
    """What ``--model`` names (see the module docstring); starts nothing."""
    if is_url(model):
        key = os.environ.get("SYNTH_API_KEY", "EMPTY")
        return Target(endpoints=[EndpointConfig(base_url=str(model), api_key=key, max_concurrency=concurrency)])
    configured = config.endpoint_urls()
    local, checkpoint = local_checkpoint(config, model)
    if local or (model is None and not configured):  # nothing named, nothing configured: the base, served here
        emb = served_config(config, checkpoint if local else config.eval.base_model, chat_template)
        return Target(endpoints=[EndpointConfig(base_url=server.base_url(emb), max_concurrency=concurrency)],
                      served_name=server.served_name(emb), local=emb)
    if not configured:
        raise BfclError(f"--model {model!r} is not an endpoint URL, 'base', a trained model of run "
                        f"{config.run!r} nor a checkpoint folder, and no endpoint is configured",
                        hint="pass --model http://HOST:PORT/v1, or set SYNTH_BASE_URL and pass the served name")
    return Target(endpoints=configured, served_name=model)


@contextlib.contextmanager
def serving(target: Target, *, keep_server: bool = False) -> Iterator[Target]:
    """Serve ``target``'s local checkpoint (or find exactly it served: same name, same parser) for the block;
    stop it afterwards if this call started it, unless ``keep_server``. A remote target passes through."""
    emb = target.local
    if emb is None:
        yield target
        return
    already = server.is_healthy(emb)
    if already:
        info = server.server_info(emb)
        if info is None or info.served_name != server.served_name(emb) or info.tool_call_parser != \
                emb.tool_call_parser:
            what = f"{info.served_name} (tool parser {info.tool_call_parser})" if info else "a server this " \
                "machine did not start"
            raise BfclError(f"port {emb.port} already serves {what}, not {server.served_name(emb)} with the "
                            f"{emb.tool_call_parser} tool parser",
                            hint=f"stop it (`synth serve --stop --set embedded.port={emb.port}`) or pick another "
                            "port (--set eval.port=PORT)")
    else:
        try:
            server.start(emb)
        except server.ServerError as exc:
            raise BfclError(f"the model under test could not be served: {exc}",
                            hint="see the server log named above") from exc
    try:
        yield target
    finally:
        if not already and not keep_server:
            server.stop(emb)


def describe(target: Target) -> dict[str, object] | None:
    """How a server started here for ``target`` runs (dtype, template, parser), for the summary; None if remote."""
    if target.local is None:
        return None
    info = server.server_info(target.local)
    described: dict[str, object] = info.model_dump() if info is not None else {}
    return {**described, "chat_template": str(target.local.chat_template)}
