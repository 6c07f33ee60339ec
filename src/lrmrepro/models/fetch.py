"""Obtain a model checkpoint folder from the hub, a local path, or a GGUF file.

Offline (no network, ``HF_HUB_OFFLINE=1``) a hub model that is not in the local cache fails with a message
saying how to provide it: download it elsewhere and point ``models.<name>.path`` at the folder
(``source: local``), or fill the Hugging Face cache (``HF_HOME``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .. import io


class ModelUnavailable(RuntimeError):
    pass


def fetch_model(spec: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    source = spec["source"]
    if source == "hub":
        return _from_hub(spec["id"], spec.get("revision", "main"), out_dir)
    if source == "local":
        return _from_local(Path(spec["path"]), out_dir)
    if source == "gguf":
        from .gguf import convert_gguf_to_hf

        return {"source": "gguf", **convert_gguf_to_hf(spec, out_dir)}
    raise ValueError(f"models.*.source {source!r} is not fetched; allowed here: hub, local, gguf")


def _from_hub(repo_id: str, revision: str, out_dir: str | Path) -> dict[str, Any]:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = snapshot_download(repo_id, revision=revision,
                                 allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py"])
    except (LocalEntryNotFoundError, OSError) as err:
        raise ModelUnavailable(
            f"model {repo_id!r} (revision {revision}) is not available: the hub cannot be reached and it is not in the "
            f"local Hugging Face cache ({err.__class__.__name__}). Download it on a machine with network access "
            f"(`huggingface-cli download {repo_id}`) and either copy the cache (HF_HOME) here or set "
            f"`source: local` with `path: <folder>` for this model in config.yaml."
        ) from err
    info = _from_local(Path(path), out_dir)
    return {**info, "source": "hub", "repo_id": repo_id, "revision": revision, "snapshot": str(path)}


def _from_local(path: Path, out_dir: str | Path) -> dict[str, Any]:
    if not (path / "config.json").exists():
        raise ModelUnavailable(f"models.*.path {str(path)!r} is not a checkpoint folder (no config.json there)")
    with io.atomic_dir(out_dir) as tmp:
        for item in path.iterdir():
            if item.name.startswith("."):
                continue
            target = tmp / item.name
            if item.is_dir():
                shutil.copytree(item, target)
            else:
                shutil.copy2(item.resolve(), target)
    return {"source": "local", "path": str(path)}
