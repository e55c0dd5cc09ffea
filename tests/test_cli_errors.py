"""Failures speak in one message: the thing that was wrong (field, file and line, URL, folder) and what to do,
with the traceback only behind --debug. Run through the real command line, as a user meets them.

One boundary: every user-facing error derives from ``SynthError`` and the CLI catches that type alone; anything
else is a bug and keeps its traceback; nothing below the CLI ends the process with SystemExit."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import pkgutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import synth
from synth import cli
from synth.errors import SynthError
from synth.llm.client import EndpointUnavailable
from synth.paths import REPO_ROOT
from synth.tools.validate import RegistryFileError, validate_harvest


def _synth(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synth", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


@pytest.mark.parametrize("value", ["[4,2]", "[0,0]", "[0,3]"])
def test_bad_toolset_range_fails_at_config_load(value: str, tmp_path: Path) -> None:
    done = _synth("agents", "--set", f"agents.toolset_size={value}", "--set", f"runs_dir={tmp_path}")
    assert done.returncode == 2
    assert "agents.toolset_size" in done.stderr and "1 <= min <= max" in done.stderr
    assert "Traceback" not in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dead_server_is_one_message_not_a_ray_traceback(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    done = _synth("tools", "--set", f"runs_dir={tmp_path}", "--set", "llm.max_retries=0", "--set", "llm.model=m",
                  "--set", "tools.evolve_leaves=1", "--set", "ray.num_cpus=1", env={"SYNTH_BASE_URL": dead})
    assert done.returncode == 1, done.stderr[-2000:]
    assert dead in done.stderr and "make serve" in done.stderr
    assert "Traceback" not in done.stderr and "ray::" not in done.stderr
    error_lines = done.stderr[done.stderr.index("error:"):].strip().splitlines()
    assert len(error_lines) <= 8, error_lines


def test_runs_folder_that_cannot_be_written_names_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = _synth("agents", "--set", f"runs_dir={blocker}/runs", "--set", "ray.enabled=false",
                  env={"SYNTH_BASE_URL": "http://127.0.0.1:9/v1"}, timeout=120)
    assert done.returncode == 1
    assert f"cannot use the run folder {blocker}/runs" in done.stderr and "Traceback" not in done.stderr
    assert "--set runs_dir=DIR" in done.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = _synth("--debug", "tools", "--set", f"runs_dir={blocker}/runs", "--set", "ray.enabled=false",
                  env={"SYNTH_BASE_URL": "http://127.0.0.1:9/v1"}, timeout=120)
    assert done.returncode != 0 and "Traceback" in done.stderr


def _registry(tmp_path: Path, *lines: str) -> Path:
    mcp = tmp_path / "mcp"
    mcp.mkdir()
    (mcp / "pypi__mcp-server-time.jsonl").write_text("\n".join(lines) + "\n")
    return mcp


GOOD = ('{"server": "pypi/mcp-server-time", "registry": "pypi", "package": "mcp-server-time", "version": "1.0", '
        '"tool": {"name": "get_time", "description": "Current time.", "inputSchema": {"type": "object"}}}')


def test_half_written_registry_line_names_file_and_line(tmp_path: Path) -> None:
    mcp = _registry(tmp_path, GOOD, GOOD[:57])
    with pytest.raises(RegistryFileError) as err:
        validate_harvest(mcp, [])
    assert "pypi__mcp-server-time.jsonl:2" in str(err.value) and "not valid JSON" in str(err.value)
    assert "synth tools harvest --only" in err.value.hint and "delete line 2" in err.value.hint


def test_registry_row_without_server_names_the_missing_field(tmp_path: Path) -> None:
    mcp = _registry(tmp_path, GOOD.replace('"server": "pypi/mcp-server-time", ', ""))
    with pytest.raises(RegistryFileError, match=r"jsonl:1: the row has no server"):
        validate_harvest(mcp, [])


# --- the boundary itself ------------------------------------------------------------------------------------------


def _run_cli(monkeypatch: pytest.MonkeyPatch, *args: str, raises: BaseException) -> None:
    """``synth <args>`` in this process, with loading the config raising ``raises`` (every command loads it)."""

    def load_config(*_: object, **__: object) -> None:
        raise raises

    monkeypatch.setattr(cli, "load_config", load_config)
    monkeypatch.setattr(cli, "_DEBUG", False)
    monkeypatch.setattr(sys, "argv", ["synth", *args])
    cli.run()


class _FolderGone(SynthError):
    hint = "make the folder again"


def test_a_synth_error_is_one_message_with_what_to_do(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        _run_cli(monkeypatch, "report", raises=_FolderGone("the folder /data/x is gone"))
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the folder /data/x is gone") and "what to do: make the folder again" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2


def test_a_synth_error_keeps_its_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    from synth.config import ConfigError

    with pytest.raises(SystemExit) as done:
        _run_cli(monkeypatch, "report", raises=ConfigError("agents.count: must be >= 1"))
    assert done.value.code == 2


def test_debug_raises_the_synth_error_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(_FolderGone, match="/data/x"):
        _run_cli(monkeypatch, "--debug", "report", raises=_FolderGone("the folder /data/x is gone"))


def test_a_bug_is_not_caught(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # A ValueError or a FileNotFoundError that no SynthError names is a bug: it leaves the boundary as itself, so
    # Python prints its traceback, instead of a message that hides where it came from.
    for bug in (ValueError("list index 3"), FileNotFoundError(2, "No such file", "/tmp/x"), KeyError("k")):
        with pytest.raises(type(bug)):
            _run_cli(monkeypatch, "report", raises=bug)
    assert "error:" not in capsys.readouterr().err


class _RayTaskError(Exception):
    """What ray.exceptions.RayTaskError looks like to the boundary: the task's own exception as ``cause``, and
    the remote traceback in its text."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"ray::run_shard() (pid=1, ip=10.0.0.1)\nTraceback (most recent call last):\n  {cause!r}")
        self.cause = cause


@pytest.mark.parametrize("wrap", [_RayTaskError, lambda e: ExceptionGroup("shards", [e])], ids=["ray", "group"])
def test_a_synth_error_inside_ray_or_a_task_group_is_its_own_message(
        wrap: type, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        _run_cli(monkeypatch, "report", raises=wrap(EndpointUnavailable("no LLM endpoint answered: http://h:1/v1")))
    err = capsys.readouterr().err
    assert done.value.code == 1 and err.startswith("error: no LLM endpoint answered: http://h:1/v1")
    assert "make serve" in err and "ray::" not in err and "Traceback" not in err


def test_a_bug_inside_ray_keeps_its_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(_RayTaskError):
        _run_cli(monkeypatch, "report", raises=_RayTaskError(ZeroDivisionError("division by zero")))


def test_user_error_through_the_real_command_line(tmp_path: Path) -> None:
    # rollouts in an empty run: its input stage has not finished (no model is asked, so the URL may be dead).
    args = ("rollouts", "--set", f"runs_dir={tmp_path}", "--set", "ray.enabled=false")
    env = {"SYNTH_BASE_URL": "http://127.0.0.1:9/v1"}
    done = _synth(*args, env=env, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.startswith("error: stage 'rollouts' reads 'tasks'"), done.stderr[-2000:]
    assert "what to do: run `synth tasks` first" in done.stderr and "Traceback" not in done.stderr
    debug = _synth("--debug", *args, env=env, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "StageIncomplete" in debug.stderr


def test_a_stage_whose_every_row_failed_is_a_failed_run() -> None:
    from synth.stages.summary import StageSummary

    cli._exit_if_all_failed([StageSummary(stage="agents", planned=2, ok=1, failed=1)])  # one row made it: no error
    with pytest.raises(cli.StageFailed, match=r"every row of stage 'agents' failed \(EndpointUnavailable: 2\)") as err:
        cli._exit_if_all_failed([StageSummary(stage="agents", planned=2, ok=0, failed=2,
                                              errors={"EndpointUnavailable": 2})])
    assert "runs/<run>/agents/" in err.value.hint


# --- every error a user can meet is a SynthError ----------------------------------------------------------------

# Exceptions that never reach a user as an error: each is caught where it is raised and turned into a row, a tool
# message or a report line, or it is a bug that must keep its traceback. Everything else derives from SynthError.
INTERNAL = {
    "synth.stages.lifeline.DriverGone": "a BaseException that ends a worker whose driver is gone; no row is written",
    "synth.stages.outputs.UndeclaredInput": "a stage read an input it did not declare: a bug in the stage",
    "synth.sim.real_exec.UnknownToolError": "the caller asked the hub for a tool it does not run: a bug (the "
                                            "episode answers unknown tool names before the hub is asked)",
    "synth.runtime.check_runner.SplitError": "stdlib only (its source runs inside the sandbox, where synth cannot "
                                             "be imported); the verdict records why the tests did not split",
    "synth.sim.world.SchemaViolation": "a simulated patch that breaks the world's schema: dropped and recorded as "
                                       "a PatchEvent",
    "synth.tasks.build.DraftInvalid": "a model's task draft that does not fit its agent: recorded on the task row",
    "synth.bench.instant_server.Unsatisfiable": "the benchmark sampler tries another branch of the schema",
    "synth.tools.harvest.HarvestError": "one server's failed harvest: a row of the harvest report",
    "synth.tools.mcp_client.McpError": "a server's protocol failure: a tool message (ToolError) or a harvest row",
    "synth.tools.mcp_client.McpTimeout": "as McpError",
    "synth.tools.mcp_client.McpClosed": "as McpError",
    "synth.tools.mcp_client.McpPagingError": "as McpError",
    "synth.tools.errors.ToolError": "a failed tool call, answered to the model as the tool's message",
    "synth.tools.errors.UnknownTool": "as ToolError",
    "synth.tools.errors.InvalidArguments": "as ToolError",
    "synth.tools.errors.ToolUnavailable": "as ToolError",
    "synth.tools.errors.ToolTimeout": "as ToolError",
    "synth.tools.errors.ToolFailed": "as ToolError",
    "synth.tools.errors.ChangeRejected": "as ToolError",
    "synth.tools.errors.InjectedFailure": "as ToolError",
}


def _exception_classes() -> dict[str, type[BaseException]]:
    found = {}
    for info in pkgutil.walk_packages(synth.__path__, "synth."):
        if info.name == "synth.__main__":  # runs the command line on import
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_every_exception_class_is_a_synth_error_or_listed_as_internal() -> None:
    classes = _exception_classes()
    assert "synth.errors.SynthError" in classes and "synth.config.ConfigError" in classes  # the walk saw synth/
    loose = sorted(name for name, cls in classes.items() if not issubclass(cls, SynthError) and name not in INTERNAL)
    assert loose == [], f"derive these from synth.errors.SynthError (or list them in INTERNAL, with why): {loose}"
    listed_but_user_facing = sorted(n for n in INTERNAL if n in classes and issubclass(classes[n], SynthError))
    assert listed_but_user_facing == [], f"these are SynthErrors now; drop them from INTERNAL: {listed_but_user_facing}"


# --- no SystemExit below the CLI ----------------------------------------------------------------------------------


def _exits(tree: ast.AST) -> list[int]:
    """Lines that name SystemExit or call sys.exit / exit / quit."""
    def is_exit(node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id == "SystemExit"
        if isinstance(node, ast.Attribute):
            return node.attr == "exit" and ast.unparse(node.value) == "sys"
        return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"exit", "quit"}

    return [node.lineno for node in ast.walk(tree) if is_exit(node)]


def test_the_scan_sees_an_exit() -> None:
    source = "import sys\ndef f():\n    raise SystemExit('no')\n\ndef g():\n    sys.exit(2)\n    exit()\n"
    assert sorted(_exits(ast.parse(source))) == [3, 6, 7]


def test_no_system_exit_below_the_cli() -> None:
    found = []
    for path in sorted((REPO_ROOT / "synth").rglob("*.py")):
        if path == REPO_ROOT / "synth" / "cli.py":
            continue
        found += [f"{path.relative_to(REPO_ROOT)}:{line}" for line in _exits(ast.parse(path.read_text()))]
    assert found == [], f"raise a SynthError subclass instead; the CLI decides how the process ends: {found}"


def test_the_cli_catches_synth_error_once_and_no_other_error_tuple() -> None:
    tree = ast.parse((REPO_ROOT / "synth" / "cli.py").read_text())
    caught = [ast.unparse(h.type) for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and h.type is not None]
    assert caught.count("SynthError") == 1
    # Besides the boundary only Ctrl-C in `serve --foreground`, and the unwrapping of Ray's wrappers (which
    # re-raises whatever is not a SynthError): no command catches errors of its own.
    assert caught.count("Exception") == 1
    assert set(caught) <= {"SynthError", "Exception", "KeyboardInterrupt"}, caught
