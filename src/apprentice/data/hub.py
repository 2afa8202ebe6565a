"""Datasets on the Hugging Face Hub (`--hub REPO_ID`): fetched with `huggingface_hub` into its
own cache (HF_HUB_CACHE), then read from there like any local LeRobot folder.

Offline (HF_HUB_OFFLINE=1, or no network) a repository already in the cache is used as it is;
one that is not gives one error naming it.
"""

from __future__ import annotations

from pathlib import Path

from apprentice.errors import ApprenticeError


def fetch_hub(repo_id: str, *, revision: str | None = None) -> Path:
    """The local folder of dataset `repo_id` (e.g. "lerobot/pusht"), downloaded where it is not
    in the cache yet."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ApprenticeError(f"--hub {repo_id!r}: expected a dataset id OWNER/NAME")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ApprenticeError(
            "--hub needs huggingface_hub: pip install 'apprentice[lerobot]'"
        ) from None
    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", revision=revision))
    except Exception as e:  # the hub's errors are many (network, auth, not found, offline)
        raise ApprenticeError(
            f"--hub {repo_id}: could not fetch it ({type(e).__name__}: {e})"
        ) from None


__all__ = ["fetch_hub"]
