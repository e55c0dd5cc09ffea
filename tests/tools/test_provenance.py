"""Provenance of harvested artifacts (hash, licence from package metadata) and the dataset's derived licence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synth.tools import provenance
from synth.tools.harvest import harvest_server, jsonl_path
from synth.tools.provenance import ArtifactProvenance, licence_section, normalize_license


def test_licence_names_from_metadata_become_spdx_ids() -> None:
    assert normalize_license("MIT License") == "MIT"
    assert normalize_license("Apache Software License") == "Apache-2.0"
    assert normalize_license("Apache License, Version 2.0") == "Apache-2.0"
    assert normalize_license("  ") is None and normalize_license(None) is None
    assert normalize_license("Custom Corp EULA") == "Custom Corp EULA"  # kept as written, never guessed


def test_pip_report_gives_artifact_hash_and_licence(tmp_path: Path) -> None:
    report = {
        "install": [
            {"metadata": {"name": "anyio", "license_expression": "MIT"}, "download_info": {"url": "x"}},
            {
                "metadata": {"name": "mcp_server_time", "classifier": ["License :: OSI Approved :: MIT License"]},
                "download_info": {
                    "url": "https://files.example/mcp_server_time-2026.10.19-py3-none-any.whl",
                    "archive_info": {"hashes": {"sha256": "ab" * 32}},
                },
            },
        ]
    }
    (tmp_path / ".pip-report.json").write_text(json.dumps(report))
    prov = provenance.collect("pypi", "mcp-server-time", "2026.10.19", tmp_path)
    assert prov.sha256 == "ab" * 32 and prov.artifact == "mcp_server_time-2026.10.19-py3-none-any.whl"
    assert prov.license == "MIT" and prov.license_source == "pip metadata classifier"


def _registry(tmp_path: Path, licences: dict[str, str | None]) -> Path:
    out = tmp_path / "mcp"
    out.mkdir()
    for server, lic in licences.items():
        line = {"server": server, "registry": "npm", "package": server, "version": "1", "harvested_at": "x",
                "license": lic, "tool": {"name": "t"}}  # fmt: skip
        (out / (server.replace("/", "__") + ".jsonl")).write_text(json.dumps(line) + "\n")
    return out


def test_card_licence_is_derived_from_the_model_and_the_tools(tmp_path: Path) -> None:
    # Guards against a card that says apache-2.0 whatever the model and the tools are.
    registry = _registry(tmp_path, {"npm/a": "MIT", "npm/b": "Apache-2.0", "npm/c": None})
    same = licence_section("smollm2-135m-instruct", [], registry_dir=registry)
    assert same.license == "apache-2.0" and same.model_licence == "Apache-2.0"
    mixed = licence_section("smollm2-135m-instruct", ["npm/a", "npm/b"], registry_dir=registry)
    assert mixed.license == "other" and "| MCP server `npm/a` | MIT |" in mixed.markdown
    unknown = licence_section("smollm2-135m-instruct", ["npm/a", "npm/c"], registry_dir=registry)
    assert unknown.license == "unknown" and "npm/c" in unknown.markdown and "**unknown**" in unknown.markdown
    other_model = licence_section("some-org/model", ["npm/a"], registry_dir=registry)
    assert other_model.license == "unknown"  # a model of unknown licence is never assumed permissive
    given = licence_section("some-org/model", ["npm/a"], model_licence="MIT License", registry_dir=registry)
    assert given.license == "mit"


def test_run_provenance_names_the_commit_and_package_versions() -> None:
    run = provenance.run_provenance()
    assert run["commit"] and len(run["commit"]) == 40
    assert run["packages"]["pydantic"] and "openai" in run["packages"]


@pytest.mark.sandbox  # the harvest runs servers confined
async def test_harvest_copies_the_artifact_provenance_onto_every_tool_line(
    fake_entry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = fake_entry("pypi/fake-ok", "ok")
    from synth.tools.servers import install_root

    provenance.write(install_root(entry), ArtifactProvenance(
        registry="pypi", package="fake-mcp", version="0.0.1", artifact="fake_mcp-0.0.1-py3-none-any.whl",
        sha256="cd" * 32, license="MIT", license_source="pip metadata license_expression"))  # fmt: skip
    result = await harvest_server(entry, tmp_path / "out", timeout_s=20)
    assert result.status == "ok", result.reason
    assert (result.sha256, result.license) == ("cd" * 32, "MIT")
    rows = [json.loads(line) for line in jsonl_path(tmp_path / "out", entry.id).read_text().splitlines()]
    assert {(r["sha256"], r["license"], r["artifact"]) for r in rows} == {
        ("cd" * 32, "MIT", "fake_mcp-0.0.1-py3-none-any.whl")
    }


def test_npm_licence_pointing_at_a_missing_file_is_unknown_not_guessed(tmp_path: Path) -> None:
    pkg = tmp_path / "node_modules" / "@scope" / "srv"
    pkg.mkdir(parents=True)
    lock = {"packages": {"node_modules/@scope/srv": {"version": "1.0.0", "license": "SEE LICENSE IN LICENSE",
                                                     "integrity": "sha512-AAAA"}}}  # fmt: skip
    (tmp_path / "node_modules" / ".package-lock.json").write_text(json.dumps(lock))
    prov = provenance.collect("npm", "@scope/srv", "1.0.0", tmp_path)
    assert prov.license is None and "not in the package" in (prov.note or "")
    assert prov.artifact == "srv-1.0.0.tgz" and prov.integrity == "sha512-AAAA"
    (pkg / "LICENSE").write_text("MIT License\n\nCopyright (c) 2026\n\nPermission is hereby granted, free of charge")
    assert provenance.collect("npm", "@scope/srv", "1.0.0", tmp_path).license == "MIT"


def test_dataset_card_takes_its_licence_from_the_model_and_the_real_tools(tmp_path: Path) -> None:
    import yaml

    from synth.config import PipelineConfig
    from synth.data.card import write_card
    from synth.stages.dataset_build import DatasetSummary

    def row(model: str, server: str | None) -> dict:
        calls = [{"mode": "real", "server": server}] if server else []
        return {"model": model, "calls": calls, "usage": {}}

    summary = DatasetSummary(path=str(tmp_path), trajectories=2, accepted=1, rejected=1, errored=0)
    card = tmp_path / "README.md"
    write_card(card, PipelineConfig(), summary, [row("smollm2-135m-instruct", "pypi/mcp-server-time")] * 2)
    meta = yaml.safe_load(card.read_text().split("---")[1])
    assert meta["license"] == "other"  # Apache-2.0 model, MIT server (from the committed registry)
    text = card.read_text()
    assert "| MCP server `pypi/mcp-server-time` | MIT |" in text and "- commit: `" in text and "pydantic " in text
    memory = "npm/@modelcontextprotocol/server-memory"
    write_card(card, PipelineConfig(), summary, [row("smollm2-135m-instruct", memory)])
    assert yaml.safe_load(card.read_text().split("---")[1])["license"] == "unknown"  # its licence file is missing
    write_card(card, PipelineConfig(), summary, [row("smollm2-135m-instruct", None)])
    assert yaml.safe_load(card.read_text().split("---")[1])["license"] == "apache-2.0"
