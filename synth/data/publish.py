"""Push a built dataset folder to the Hugging Face Hub. The token comes from the environment only."""

from __future__ import annotations

import os
from pathlib import Path


class PublishError(RuntimeError):
    pass


def publish(dataset_dir: Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    token = token or os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        raise PublishError(
            "no Hugging Face token: create a write token at your Hub settings (Access Tokens) and export it as "
            "HF_TOKEN, then run `synth publish --repo-id OWNER/NAME` again. synth never writes the token to disk."
        )
    if not (dataset_dir / "README.md").exists() or not (dataset_dir / "data").is_dir():
        raise PublishError(f"{dataset_dir} holds no built dataset; run `synth dataset` first")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    # The on-disk `hf/` copy is for local loading; the Hub serves the Parquet files the card's configs name.
    info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(dataset_dir),
                             allow_patterns=["README.md", "data/*", "sft/*", "summary.json"],
                             commit_message="Upload synth dataset")
    return str(getattr(info, "commit_url", f"datasets/{repo_id}"))
