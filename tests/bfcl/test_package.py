"""bfcl-eval is imported without its heavy modules: what a fresh interpreter holds after loading the checker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from synth.bfcl import package
from synth.paths import REPO_ROOT

LIST_IMPORTS = """
import json, os, sys
from synth.bfcl.package import load
bfcl = load()
from bfcl_eval.constants import eval_config
print(json.dumps({"modules": sorted(sys.modules), "version": bfcl.version, "root": str(eval_config.PROJECT_ROOT),
                  "env_after": os.environ.get("BFCL_PROJECT_ROOT")}))
"""


def _load_fresh(cache: Path) -> dict[str, Any]:
    """``load()`` in a fresh interpreter with ``cache`` as synth's cache: what it imported and where BFCL writes."""
    env = {k: v for k, v in os.environ.items() if k != "BFCL_PROJECT_ROOT"} | {"SYNTH_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", LIST_IMPORTS], capture_output=True, text=True, check=True,
                         cwd=REPO_ROOT, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_checker_loads_without_the_packages_heavy_modules(tmp_path: Path) -> None:
    loaded = _load_fresh(tmp_path)
    modules = set(loaded["modules"])
    assert loaded["version"] == package.PINNED_VERSION
    bfcl = sorted(m for m in modules if m.startswith("bfcl_eval"))
    # The three modules synth uses and what they import, nothing of the handlers, the runner or the agentic parts.
    assert {"bfcl_eval.utils", "bfcl_eval.model_handler.utils",
            "bfcl_eval.eval_checker.ast_eval.ast_checker"} <= set(bfcl)
    assert not [m for m in bfcl if m.startswith(("bfcl_eval.model_handler.api_inference",
                                                 "bfcl_eval.model_handler.local_inference",
                                                 "bfcl_eval.model_handler.base_handler",
                                                 "bfcl_eval.eval_checker.eval_runner",
                                                 "bfcl_eval.eval_checker.multi_turn_eval",
                                                 "bfcl_eval.eval_checker.agentic_eval"))]
    heavy = {"numpy", "pandas", "openai", "anthropic", "cohere", "mistralai", "google", "boto3", "faiss",
             "sentence_transformers", "torch", "tree_sitter", "qwen_agent", "dotenv"}
    assert not heavy & {m.split(".")[0] for m in modules}


def test_the_stubs_stand_in_for_the_modules_that_import_the_rest() -> None:
    bfcl = package.load()
    mapping = sys.modules["bfcl_eval.constants.model_config"].MODEL_CONFIG_MAPPING
    assert mapping[package.FC_MODEL].underscore_to_dot and not mapping[package.PROMPT_MODEL].underscore_to_dot
    assert set(package.STUBBED) == {"bfcl_eval.constants.model_config",
                                    "bfcl_eval.model_handler.parser.java_parser",
                                    "bfcl_eval.model_handler.parser.js_parser"}
    with pytest.raises(NotImplementedError, match="Python categories only"):
        bfcl.default_decode_ast_prompting("[f(a=1)]", bfcl.return_format.JAVA, False)


def test_the_folders_bfcl_makes_on_import_go_to_synths_cache(tmp_path: Path) -> None:
    loaded = _load_fresh(tmp_path)
    assert Path(loaded["root"]) == tmp_path / "bfcl"
    assert {p.name for p in (tmp_path / "bfcl").iterdir()} == {"result", "score", ".file_locks"}
    assert loaded["env_after"] is None  # the variable is set for the import only


def test_a_missing_package_is_a_synth_error_saying_how_to_install_it(monkeypatch) -> None:
    package.load.cache_clear()
    monkeypatch.setattr(package.importlib.util, "find_spec", lambda name: None)
    try:
        with pytest.raises(package.BfclNotInstalled) as err:
            package.load()
        assert "--no-deps bfcl-eval==" in err.value.hint
    finally:
        monkeypatch.undo()
        package.load.cache_clear()
