"""BFCL's own data, AST checker, prompt-mode system prompt and decoder, and tool conversion, from ``bfcl-eval``.

How and why it is imported this way. ``bfcl-eval`` (PyPI) ships BFCL v4's data and the code that scores it, but
declares some thirty dependencies for its model handlers and agentic categories: numpy pinned to 1.26.4, a dozen
API SDKs, faiss, sentence-transformers, tree-sitter. Installed with them it would downgrade this environment's
numpy and pull gigabytes; so ``make install`` installs it with ``--no-deps`` (pinned to ``PINNED_VERSION``), and
this module imports only the three modules synth uses, whose own imports are the standard library, ``filelock``
and ``tenacity`` (both already here):

- ``bfcl_eval.utils``: the dataset loaders and the output-shape checks (``is_empty_output`` and the like);
- ``bfcl_eval.model_handler.utils``: the prompt-mode system prompt, its decoder, and ``convert_to_tool``;
- ``bfcl_eval.eval_checker.ast_eval.ast_checker``: the AST checker.

Their module-level imports reach three modules that would drag in the rest, which are replaced in ``sys.modules``
by stubs before the import (nothing else is stubbed):

- ``bfcl_eval.constants.model_config`` imports every model handler (hence every SDK) to build its model table.
  The checker reads one flag of it, ``underscore_to_dot`` (whether the model saw dotted function names with
  underscores, as OpenAI-style tools require). The stub's table has the two entries synth scores as: ``FC_MODEL``
  (True, as BFCL's OpenAI-compatible FC models) and ``PROMPT_MODEL`` (False, as its prompt-mode models).
- ``bfcl_eval.model_handler.parser.java_parser`` and ``js_parser`` import tree-sitter for the Java and JavaScript
  categories, which synth does not score; the stubs raise if called.

``bfcl_eval.constants.eval_config`` creates ``result/``, ``score/`` and ``.file_locks/`` under
``$BFCL_PROJECT_ROOT`` when imported (by default beside site-packages), so that variable points into synth's
cache for the import. ``tests/bfcl/test_package.py`` lists what a fresh interpreter has imported after ``load()``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from synth.errors import SynthError
from synth.paths import cache_dir

log = logging.getLogger(__name__)

PINNED_VERSION = "2026.3.23"
"""The bfcl-eval release ``make install`` installs (BFCL v4 data)."""
FC_MODEL = "synth-bfcl-fc"
"""The model name the checker is given for FC-mode replies (dotted names were sent with underscores)."""
PROMPT_MODEL = "synth-bfcl-prompt"
"""The model name the checker is given for prompt-mode replies (function names as BFCL writes them)."""
INSTALL_HINT = f"install it without its dependencies: .venv/bin/pip install --no-deps bfcl-eval=={PINNED_VERSION} " \
    "(`make install` does)"


class BfclNotInstalled(SynthError, ImportError):
    """The ``bfcl-eval`` package is missing, or its modules are not where this loader expects them."""


@dataclass(frozen=True)
class _ModelFlags:
    """What the checker reads of a BFCL ``ModelConfig``."""

    underscore_to_dot: bool


def _unsupported(what: str) -> Callable[..., Any]:
    def call(*_args: Any, **_kwargs: Any) -> Any:
        raise NotImplementedError(f"{what} is not loaded by synth (tree-sitter is not installed): synth scores "
                                  "BFCL's Python categories only")

    return call


def _stubs() -> dict[str, types.ModuleType]:
    model_config = types.ModuleType("bfcl_eval.constants.model_config")
    model_config.MODEL_CONFIG_MAPPING = {  # type: ignore[attr-defined]
        FC_MODEL: _ModelFlags(underscore_to_dot=True),
        PROMPT_MODEL: _ModelFlags(underscore_to_dot=False),
    }
    java = types.ModuleType("bfcl_eval.model_handler.parser.java_parser")
    java.parse_java_function_call = _unsupported("BFCL's Java parser")  # type: ignore[attr-defined]
    js = types.ModuleType("bfcl_eval.model_handler.parser.js_parser")
    js.parse_javascript_function_call = _unsupported("BFCL's JavaScript parser")  # type: ignore[attr-defined]
    return {m.__name__: m for m in (model_config, java, js)}


STUBBED = tuple(_stubs())
"""The bfcl-eval modules replaced by stubs (see the module docstring)."""


@dataclass(frozen=True)
class Bfcl:
    """The parts of bfcl-eval synth uses, as BFCL defines them."""

    version: str
    ast_checker: Callable[..., dict[str, Any]]
    default_decode_ast_prompting: Callable[..., list[dict[str, Any]]]
    system_prompt_pre_processing_chat_model: Callable[..., list[dict[str, Any]]]
    convert_to_tool: Callable[..., list[dict[str, Any]]]
    gorilla_to_openapi: dict[str, str]
    model_style: Any
    language: Any
    return_format: Any
    is_empty_output: Callable[[Any], bool]
    is_function_calling_format_output: Callable[[Any], bool]
    load_dataset_entry: Callable[..., list[dict[str, Any]]]
    load_ground_truth_entry: Callable[[str], list[dict[str, Any]]]


@contextlib.contextmanager
def _project_root() -> Iterator[None]:
    """``$BFCL_PROJECT_ROOT`` in synth's cache while bfcl-eval's constants are imported (they mkdir there)."""
    before = os.environ.get("BFCL_PROJECT_ROOT")
    if before is None:
        os.environ["BFCL_PROJECT_ROOT"] = str(cache_dir() / "bfcl")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("BFCL_PROJECT_ROOT", None)


def _install_stubs() -> None:
    for name, stub in _stubs().items():
        present = sys.modules.get(name)
        if present is None:
            sys.modules[name] = stub
        elif name.endswith("model_config"):
            # bfcl-eval was imported whole before (its own CLI in this process): its table gets synth's two names.
            present.MODEL_CONFIG_MAPPING.update(stub.MODEL_CONFIG_MAPPING)  # type: ignore[attr-defined]


@cache
def load() -> Bfcl:
    """Import BFCL's checker, decoder, prompts and loaders without the package's heavy modules (once)."""
    if importlib.util.find_spec("bfcl_eval") is None:
        raise BfclNotInstalled("the bfcl-eval package (BFCL's data and checker) is not installed", hint=INSTALL_HINT)
    version = importlib.metadata.version("bfcl-eval")
    if version != PINNED_VERSION:
        log.warning("bfcl-eval %s is installed; synth was checked against %s (its data may differ)", version,
                    PINNED_VERSION)
    _install_stubs()
    try:
        with _project_root():
            utils = importlib.import_module("bfcl_eval.utils")
            handler_utils = importlib.import_module("bfcl_eval.model_handler.utils")
            checker = importlib.import_module("bfcl_eval.eval_checker.ast_eval.ast_checker")
            enums = importlib.import_module("bfcl_eval.constants.enums")
            types_ = importlib.import_module("bfcl_eval.constants.type_mappings")
    except ImportError as exc:
        raise BfclNotInstalled(f"bfcl-eval {version} could not be imported without its dependencies: {exc}",
                               hint=f"this loader was written for bfcl-eval {PINNED_VERSION}; {INSTALL_HINT}") \
            from exc
    return Bfcl(
        version=version,
        ast_checker=checker.ast_checker,
        default_decode_ast_prompting=handler_utils.default_decode_ast_prompting,
        system_prompt_pre_processing_chat_model=handler_utils.system_prompt_pre_processing_chat_model,
        convert_to_tool=handler_utils.convert_to_tool,
        gorilla_to_openapi=types_.GORILLA_TO_OPENAPI,
        model_style=enums.ModelStyle,
        language=enums.Language,
        return_format=enums.ReturnFormat,
        is_empty_output=utils.is_empty_output,
        is_function_calling_format_output=utils.is_function_calling_format_output,
        load_dataset_entry=utils.load_dataset_entry,
        load_ground_truth_entry=utils.load_ground_truth_entry,
    )
