"""MCP server entries and their isolated installs: a venv per PyPI server, an npm prefix per npm server.

Both the harvester and the rollout's real execution start servers through this module, so a server installed
once is reused by every stage and every clone (installs live in the cache, not the repository).

Installing runs no package's own code: npm installs with ``--ignore-scripts`` and pip takes wheels only
(``--only-binary :all:``, so no ``setup.py`` runs). A server that needs its install scripts or a source build
says so in ``mcp_servers.yaml`` (``install_scripts`` / ``build_from_source``); nothing falls back on its own.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from synth.errors import SynthError
from synth.paths import TOOLS_REGISTRY, cache_dir

if TYPE_CHECKING:
    from synth.tools.provenance import ArtifactProvenance

SERVERS_FILE = TOOLS_REGISTRY / "mcp_servers.yaml"


class ServerEntry(BaseModel):
    id: str = Field(description="Stable id, e.g. 'pypi/mcp-server-time'.")
    registry: Literal["pypi", "npm"]
    package: str
    version: str
    command: str = Field(description="Executable the package installs (venv bin or node_modules/.bin).")
    args: list[str] = Field(default_factory=list, description="'{root}' is replaced by a scratch directory.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Placeholder values for keys needed only to start."
    )
    requirements: list[str] = Field(
        default_factory=list,
        description="PyPI only: extra requirements installed with the package, e.g. 'mcp<2' for servers "
        "written against mcp 1.x that do not pin it.",
    )
    category: str = "general"
    sandbox_safe: bool = Field(default=False, description="Safe to call for real inside a rollout sandbox.")
    reuse: Literal["stateless", "workspace", "never"] = Field(
        default="never",
        description="Whether rollouts may keep this server's process for the next episode of a shard: "
        "'stateless' (it keeps no state), 'workspace' (it keeps state only in files under its scratch root, "
        "which is emptied between episodes), 'never' (it may keep state in its process: a fresh one each "
        "episode). Checked against the server's source before an entry says other than 'never'.",
    )
    install_scripts: bool = Field(
        default=False, description="npm only: run the packages' install scripts (third-party code, as the installer)."
    )
    build_from_source: bool = Field(
        default=False, description="PyPI only: allow source distributions (their setup.py runs at install)."
    )


class InstallError(SynthError, RuntimeError):
    """A server's package could not be installed or has no command to start; the message names the server."""

    hint = "fix the server's entry in tools_registry/mcp_servers.yaml (or remove it), then harvest it again"


class ServersFileError(SynthError, ValueError):
    """The server list (``mcp_servers.yaml``) cannot be read; the message names the file and the entry."""

    hint = "fix that entry (`git checkout tools_registry/` restores the shipped list)"


def load_servers(path: Path = SERVERS_FILE) -> list[ServerEntry]:
    try:
        # The C loader when PyYAML has it: the server list is long and every stage reads it.
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError as exc:
        raise ServersFileError(f"{path} is not valid YAML: {exc}") from exc
    entries = []
    for i, item in enumerate(data.get("servers", [])):
        try:
            entries.append(ServerEntry.model_validate(item))
        except ValidationError as exc:
            where = item.get("id", f"servers[{i}]") if isinstance(item, dict) else f"servers[{i}]"
            wrong = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ServersFileError(f"{path}: {where}: {wrong}") from exc
    return entries


def install_root(entry: ServerEntry) -> Path:
    safe = entry.package.replace("/", "__").replace("@", "")
    # Extra requirements change what is installed, so they get their own place.
    extra = (
        "-" + hashlib.sha256("\n".join(entry.requirements).encode()).hexdigest()[:8]
        if entry.requirements
        else ""
    )
    return cache_dir() / "mcp" / entry.registry / f"{safe}-{entry.version}{extra}"


def executable(entry: ServerEntry) -> Path:
    root = install_root(entry)
    if entry.registry == "pypi":
        return root / "bin" / entry.command
    return root / "node_modules" / ".bin" / entry.command


def ensure_installed(entry: ServerEntry, timeout_s: float = 300) -> Path:
    """Install the server once into its own place and return its executable."""
    exe = executable(entry)
    if not exe.exists():
        install_package(entry, timeout_s)
    if not exe.exists():
        found = find_commands(entry)
        raise InstallError(
            f"{entry.id}: installed, but no executable {entry.command!r} in {exe.parent}; "
            f"the package provides {found or 'no executables'}",
            hint=f"fix 'command' of {entry.id} in tools_registry/mcp_servers.yaml",
        )
    if entry.registry == "pypi" and not (install_root(entry) / BYTECODE_MARK).exists():
        _compile_bytecode(install_root(entry), timeout_s)
    return exe


BYTECODE_MARK = ".bytecode"


def _compile_bytecode(root: Path, timeout_s: float) -> None:
    """Compile the venv's modules once with its own interpreter (compiling runs none of the package's code).

    Installs use ``--no-compile`` and a confined server cannot write ``__pycache__`` (read-only host), so without
    this every start compiled its imports again: about 1.1 s of CPU per start of mcp-server-time against 0.7 s
    with bytecode (measured), the largest cost of an episode with real tools in ``make bench-scale``.
    """
    with open(root.with_name(root.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / BYTECODE_MARK).exists():
            return
        # -q: quiet; -j 0: all cores; errors (a module for another Python) are not fatal: it stays uncompiled.
        # A root without its own interpreter (not a venv) has nothing to compile.
        python = root / "bin" / "python"
        if python.exists():
            with contextlib.suppress(InstallError, OSError):
                _run([str(python), "-m", "compileall", "-q", "-j", "0", str(root / "lib")], timeout_s)
        (root / BYTECODE_MARK).write_text("compiled\n")


def install_package(entry: ServerEntry, timeout_s: float = 300) -> Path:
    """Install the package into its install root (idempotent) and return that root.

    Installs go to a ``.partial`` sibling first, so a killed install never looks finished.
    """
    root = install_root(entry)
    if (root / ".installed").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    # Two processes (a harvest and a test run) may install the same server at once; one waits for the other.
    with open(root.with_name(root.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / ".installed").exists():
            return root
        return _install_locked(entry, root, timeout_s)


def _install_locked(entry: ServerEntry, root: Path, timeout_s: float) -> Path:
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if entry.registry == "pypi":
            _install_venv(entry, tmp, timeout_s)
        else:
            tmp.mkdir(parents=True)
            npm = [
                "npm",
                "install",
                "--prefix",
                str(tmp),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--no-save",
                f"{entry.package}@{entry.version}",
            ]
            # Install scripts are third-party code run as the installer; only an entry that needs them runs them.
            _run(npm if entry.install_scripts else [*npm, "--ignore-scripts"], timeout_s, env=_NPM_ENV)
    except InstallError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    from synth.tools import provenance

    provenance.write(tmp, provenance.collect(entry.registry, entry.package, entry.version, tmp))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    if entry.registry == "pypi":
        # A venv records its own path in scripts; renaming breaks them, so point the shebangs at the new place.
        _fix_venv_paths(tmp, root)
    (root / ".installed").write_text(f"{entry.package}=={entry.version}\n")
    return root


def _install_venv(entry: ServerEntry, tmp: Path, timeout_s: float) -> None:
    """A venv with the pinned package; servers that need a newer Python get the newest one found."""
    last: InstallError | None = None
    for python in _pythons():
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _run([python, "-m", "venv", "--without-pip", str(tmp)], timeout_s)
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "--python",
                    str(tmp / "bin" / "python"),
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "--no-compile",
                    "--report",  # what was downloaded, its hash and its metadata: the artifact's provenance
                    str(tmp / ".pip-report.json"),
                    # Wheels only: a source distribution's setup.py is third-party code run at install.
                    *([] if entry.build_from_source else ["--only-binary", ":all:"]),
                    f"{entry.package}=={entry.version}",
                    *entry.requirements,
                ],
                timeout_s,
            )
            return
        except InstallError as exc:
            last = exc
            if "Python" not in str(exc):  # only a Requires-Python mismatch is worth another interpreter
                if not entry.build_from_source and "matching distribution" in str(exc):
                    raise InstallError(
                        f"{exc}; wheels only were allowed (a source build runs the package's setup.py)",
                        hint=f"set build_from_source: true for {entry.id} in tools_registry/mcp_servers.yaml to "
                        "allow it",
                    ) from exc
                raise
    assert last is not None
    raise last


def _pythons() -> list[str]:
    found = [sys.executable]
    for version in ("3.13", "3.12"):
        # pyenv's own interpreters first: its shims fail for a version that is not selected.
        candidates = [
            *map(str, sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))),
            shutil.which(f"python{version}"),
        ]
        exe = next((c for c in candidates if c and Path(c).exists()), None)
        if exe:
            found.append(exe)
    return found


def find_commands(entry: ServerEntry) -> list[str]:
    """Executables the installed package declares (npm ``bin``, PyPI console scripts), best guess first.

    Used to curate ``command`` in mcp_servers.yaml and to say what to use when it is wrong.
    """
    root = install_root(entry)
    names: list[str] = []
    if entry.registry == "npm":
        manifest = root / "node_modules" / entry.package / "package.json"
        if manifest.exists():
            data = json.loads(manifest.read_text())
            bins = data.get("bin")
            if isinstance(bins, str):
                names = [entry.package.split("/")[-1]]
            elif isinstance(bins, dict):
                names = list(bins)
    else:
        wanted = _normalize(entry.package)
        for dist in (root / "lib").glob("python*/site-packages/*.dist-info"):
            if _normalize(dist.name.split("-")[0]) != wanted:
                continue
            parser = configparser.ConfigParser(delimiters=("=",))
            parser.optionxform = str  # type: ignore[assignment,method-assign]  # script names are case-sensitive
            parser.read(dist / "entry_points.txt")
            if parser.has_section("console_scripts"):
                names = list(parser["console_scripts"])
    base = _normalize(entry.package.split("/")[-1])
    return sorted(names, key=lambda n: (_normalize(n) != base, "mcp" not in n.lower(), len(n)))


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# Browser and binary downloads cannot succeed offline; skipping them keeps the rest of the install working.
_NPM_ENV = {
    "PUPPETEER_SKIP_DOWNLOAD": "1",
    "PUPPETEER_SKIP_CHROMIUM_DOWNLOAD": "1",
    "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
    "npm_config_update_notifier": "false",
}


def _fix_venv_paths(old: Path, new: Path) -> None:
    for script in (new / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            try:
                text = script.read_text()
            except UnicodeDecodeError:
                continue
            if str(old) in text:
                script.write_text(text.replace(str(old), str(new)))
    cfg = new / "pyvenv.cfg"
    if cfg.exists():
        cfg.write_text(cfg.read_text().replace(str(old), str(new)))


def _run(cmd: list[str], timeout_s: float, env: dict[str, str] | None = None) -> None:
    full_env = {**os.environ, **env} if env else None
    # Its own process group, so a timeout also ends what the installer spawned (node-gyp builds, pip builds),
    # which would otherwise run on for minutes in a directory that is about to be removed.
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise InstallError(f"install timed out after {timeout_s:.0f}s: {' '.join(cmd)}") from exc
    finally:
        if (
            proc.poll() is None
        ):  # an exception in communicate (e.g. KeyboardInterrupt) must not leak the group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode != 0:
        tail = [ln for ln in (stderr or stdout or "").strip().splitlines() if ln.strip()][-5:]
        detail = " | ".join(tail) or f"exit status {proc.returncode}, no output"
        raise InstallError(f"install failed ({cmd[-1]}): {detail}")


def artifact_provenance(entry: ServerEntry) -> ArtifactProvenance:
    """Where the installed package came from: artifact, sha256, licence (see ``synth.tools.provenance``)."""
    from synth.tools import provenance

    return provenance.read(entry.registry, entry.package, entry.version, install_root(entry))


def server_env(entry: ServerEntry) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "NODE_PATH")}
    env.update(entry.env)
    return env
