"""Push a built dataset folder to the Hugging Face Hub. The token comes from the environment only."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from synth.errors import SynthError


class PublishError(SynthError, RuntimeError):
    """The dataset could not be pushed: no token, no built dataset, or the Hub refused it."""

    hint = "check the token (HF_TOKEN, with write access) and --repo-id OWNER/NAME, then publish again"


def publish(dataset_dir: Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    token = token or os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        raise PublishError(
            "no Hugging Face token in HF_TOKEN",
            hint="create a write token at your Hub settings (Access Tokens) and export it as HF_TOKEN, then run "
            "`synth publish --repo-id OWNER/NAME` again. synth never writes the token to disk.",
        )
    if not (dataset_dir / "README.md").exists() or not (dataset_dir / "data").is_dir():
        raise PublishError(f"{dataset_dir} holds no built dataset", hint="run `synth dataset` first")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    # HF_ENDPOINT read now: the library reads it once, at its import, which may have come before it was set.
    api = HfApi(token=token, endpoint=os.environ.get("HF_ENDPOINT") or None)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        # The on-disk `hf/` copy is for local loading; the Hub serves the Parquet files the card's configs name.
        info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(dataset_dir),
                                 allow_patterns=["README.md", "data/*", "sft/*", "summary.json"],
                                 commit_message="Upload synth dataset")
    except HfHubHTTPError as exc:  # the Hub answered: a bad token, a repo of someone else, a name it refuses
        status = getattr(getattr(exc, "response", None), "status_code", None)
        said = getattr(exc, "server_message", None) or str(exc).splitlines()[0]
        raise PublishError(f"the Hub at {api.endpoint} refused to publish {dataset_dir} to {repo_id} "
                           f"(HTTP {status}): {said}", hint=_refusal_hint(status, repo_id)) from exc
    except (*_transport_errors(), OSError) as exc:  # no answer: no network, a wrong HF_ENDPOINT, a proxy
        raise PublishError(f"cannot reach the Hub at {api.endpoint} to publish {dataset_dir} to {repo_id}: "
                           f"{type(exc).__name__}: {exc}",
                           hint="check the network (and HF_ENDPOINT, when set, or a proxy in HTTPS_PROXY), then "
                           "run `synth publish` again") from exc
    return str(getattr(info, "commit_url", f"datasets/{repo_id}"))


def _refusal_hint(status: int | None, repo_id: str) -> str:
    if status == 401:
        return "the token in HF_TOKEN is not valid: create a new write token (Hub settings, Access Tokens)"
    if status == 403:
        return (f"the token may not write to {repo_id}: use a token with write access to that owner, or another "
                "--repo-id OWNER/NAME")
    if status == 404:
        return f"the Hub knows no owner {repo_id.split('/')[0]!r} for this token: check --repo-id OWNER/NAME"
    if status == 429 or (status or 0) >= 500:
        return "the Hub is busy or failing: wait a little and run `synth publish` again"
    return PublishError.hint


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client errors huggingface_hub raises when the Hub does not answer at all: its client is httpx (or,
    in newer releases, the httpx2 fork), or requests in old ones. Whichever are installed."""
    found: list[type[BaseException]] = []
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)
