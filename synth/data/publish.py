"""Push a built dataset folder to the Hugging Face Hub. The token comes from the environment only."""

from __future__ import annotations

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

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        # The on-disk `hf/` copy is for local loading; the Hub serves the Parquet files the card's configs name.
        info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(dataset_dir),
                                 allow_patterns=["README.md", "data/*", "sft/*", "summary.json"],
                                 commit_message="Upload synth dataset")
    except (HfHubHTTPError, OSError) as exc:  # a refused token, a repo of someone else, no network
        raise PublishError(f"the Hub refused to publish {dataset_dir} to {repo_id}: {exc}") from exc
    return str(getattr(info, "commit_url", f"datasets/{repo_id}"))
