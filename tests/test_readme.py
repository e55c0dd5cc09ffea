"""The README and the docs say only what is true of the code: every `make` target and `synth` command they name
exists (with the options named beside it), every config default the README states is the real one, every file
path and module they name exists, every library the README names is a dependency, and the README stays short."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from itertools import product
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from synth.cli import app
from synth.config import PipelineConfig
from synth.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = [*sorted((REPO_ROOT / "docs").rglob("*.md")), REPO_ROOT / "bench" / "README.md"]
TOP_DIRS = (".ci", "bench", "docs", "pipelines", "rubrics", "synth", "tests", "tools_registry")


def code_text(markdown: str) -> list[str]:
    """Every line of a fenced block, then every code span (one wrapped over lines joined by a space)."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, flags=re.S | re.M)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.S | re.M)
    spans = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose) if "\n\n" not in span]
    return [line for block in blocks for line in block.splitlines()] + spans


def synth_invocations(markdown: str) -> list[list[str]]:
    """Each `synth ...` command line named in code, as its words up to a comment or a pipe."""
    found = []
    for text in code_text(markdown):
        for m in re.finditer(r"(?:^|[\s=(])synth((?:[ \t]+[^\s#|;&]+)+)", text.split("#")[0]):
            found.append([w.strip("[]") for w in m.group(1).split()])
    return found


def resolve(words: list[str]) -> tuple[list[str], set[str], list[str]]:
    """(command path, the options that command takes, the words after the path) for ``synth WORDS``."""
    cmd: Any = typer.main.get_command(app)
    global_opts = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    rest = list(words)
    while rest and rest[0].startswith("-"):
        assert rest[0] in global_opts, f"`synth {' '.join(words)}`: no global option {rest[0]}"
        rest.pop(0)
    path: list[str] = []
    while getattr(cmd, "commands", None) and rest and re.fullmatch(r"[a-z][\w-]*", rest[0]):
        assert rest[0] in cmd.commands, f"`synth {' '.join(words)}`: {' '.join([*path, rest[0]])} is no command"
        path.append(rest[0])
        cmd = cmd.commands[rest.pop(0)]
    return path, {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}, rest


def config_fields() -> dict[str, Any]:
    """Every dotted field of the default config with its default as plain data (sections and leaves)."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            out[prefix + key] = value
            if isinstance(value, dict) and isinstance(getattr(_model(prefix + key), "model_fields", None), dict):
                walk(value, f"{prefix}{key}.")

    def _model(dotted: str) -> Any:
        model: Any = PipelineConfig
        for part in dotted.split("."):
            annotation = model.model_fields[part].annotation
            model = annotation if isinstance(annotation, type) else None
            if model is None:
                return None
        return model

    walk(PipelineConfig().model_dump(mode="json"), "")
    return out


def test_readme_is_short() -> None:
    lines = README.read_text().count("\n")
    assert lines <= 300, f"README.md has {lines} lines: move detail into docs/"


def test_make_targets_named_in_the_readme_exist() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = {t for line in re.findall(r"^([A-Za-z][\w .-]*?):(?!=)", makefile, flags=re.M) for t in line.split()}
    named = {t for text in code_text(README.read_text()) for t in re.findall(r"\bmake ([a-z][\w-]*)", text)}
    assert named, "the README names no make target"
    assert not named - targets, f"make targets the README names that the Makefile lacks: {sorted(named - targets)}"


def test_synth_commands_named_in_the_readme_exist_with_their_options() -> None:
    calls = synth_invocations(README.read_text())
    assert len(calls) >= 10, "the README's synth commands were not found"
    config = config_fields()
    runner = CliRunner()
    for words in calls:
        path, opts, rest = resolve(words)
        if path:
            result = runner.invoke(app, [*path, "--help"])
            assert result.exit_code == 0, f"`synth {' '.join(path)} --help` failed: {result.output}"
        for i, word in enumerate(rest):
            if word.startswith("--"):
                assert word in opts, f"`synth {' '.join(words)}`: {' '.join(path)} takes no {word}"
            if i and rest[i - 1] == "--set" and "=" in word and not word.startswith("section."):
                assert word.split("=")[0] in config, f"`synth {' '.join(words)}`: no config field {word}"


def test_the_commands_said_to_take_config_set_run_do() -> None:
    table = "\n".join(line for line in README.read_text().splitlines() if line.startswith("| `synth "))
    commands = [c[0] for c in synth_invocations(table)]
    assert {"tools", "dataset", "train", "eval", "publish"} <= set(commands)
    for name in {*commands, "pipeline", "improve", "report"}:
        _, opts, _ = resolve([name])
        assert {"--config", "--set", "--run"} <= opts, f"synth {name} does not take --config/--set/--run"


def test_config_defaults_stated_in_the_readme_are_the_real_ones() -> None:
    config = config_fields()
    stated = re.findall(r"`([a-z_]+(?:\.[a-z_]+)*)` \(([^)]+)\)", README.read_text())
    stated = [(name, text) for name, text in stated if name.split(".")[0] in PipelineConfig.model_fields]
    assert len(stated) >= 5, "the README states no config default in the form `section.field` (default)"
    wrong = []
    for name, text in stated:
        if name not in config:
            wrong.append(f"{name}: no such config field")
            continue
        said = yaml.safe_load(text)
        said = None if said in ("none", "None") else said
        if said != config[name]:
            wrong.append(f"`{name}` ({text}): the default is {config[name]!r}")
    assert not wrong, "\n".join(wrong)


def _expand(path: str) -> Iterator[str]:
    """``a/{b,c}.md`` -> a/b.md, a/c.md."""
    parts = re.split(r"\{([^{}]*)\}", path)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    for combo in product(*choices):
        yield "".join(combo)


def named_paths(markdown: str) -> list[str]:
    """Repository paths a page names (``synth/...``, ``bench/...``, ...), without placeholders like ``<run>``."""
    dirs = "|".join(map(re.escape, TOP_DIRS))
    found = re.findall(rf"(?<![\w./~<>-])((?:{dirs})/[\w./*{{}},<>-]*)", markdown)
    return [p.rstrip(".,") for p in found if "<" not in p and ">" not in p]


def module_exists(dotted: str) -> bool:
    """``synth.a.b.Name``: a package or module path, then (if anything is left) a name its source defines."""
    node = REPO_ROOT
    parts = dotted.split(".")
    source = None
    while parts:
        part = parts[0]
        if (node / part).is_dir():
            node = node / part
            parts.pop(0)
            source = node / "__init__.py"
        elif (node / f"{part}.py").exists():
            source = node / f"{part}.py"
            parts.pop(0)
            break
        else:
            break
    if not parts:
        return True
    return source is not None and source.exists() and re.search(rf"\b{re.escape(parts[0])}\b", source.read_text())


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_path_and_module_a_page_names_exists(page: Path) -> None:
    text = page.read_text()
    missing = []
    for path in named_paths(text):
        if not any(list(REPO_ROOT.glob(p)) if "*" in p else (REPO_ROOT / p).exists() for p in _expand(path)):
            missing.append(path)
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        target = link.split("#")[0]
        if target and not re.match(r"[a-z]+:", target) and not (page.parent / target).exists():
            missing.append(f"link {link}")
    for dotted in re.findall(r"(?<![\w./-])((?:synth|bench)(?:\.[A-Za-z_]\w*)+)", text):
        if not module_exists(dotted):
            missing.append(f"module {dotted}")
    assert not missing, f"{page.name} names what does not exist: {sorted(set(missing))}"


def test_libraries_the_readme_names_are_dependencies() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    declared = {re.split(r"[\[<>=!~ ;]", s, maxsplit=1)[0].lower().replace("_", "-") for s in specs}
    readme = README.read_text()
    section = readme[readme.index("## Libraries"):]
    bullets = re.findall(r"^- (.*?)(?=^- |\Z)", section, flags=re.M | re.S)
    named = 0
    for bullet in bullets:
        for lib, note in re.findall(r"\*\*([\w.-]+)\*\*( \(installed with [\w.-]+\))?", " ".join(bullet.split())):
            named += 1
            via = note.removeprefix(" (installed with ").removesuffix(")") if note else lib
            assert via.lower().replace("_", "-") in declared, f"{lib}: not a dependency in pyproject.toml"
    assert named >= 15
