"""Where a plan's headers come from: a local pipeline folder, or the Hugging Face hub by range requests.

On the hub, huggingface_hub's `parse_safetensors_file_metadata` reads a file's header
with HTTP range requests (a few hundred kilobytes for a 16 GB encoder), and the small
JSON files (configs, shard indexes) come through the normal cache. Nothing else is
downloaded, so a plan answers before the 30 GB download it is about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Flux2Int8Error
from ..formats.header import SafetensorsHeader, TensorInfo, loads_bounded, read_header, read_json_file

COMPONENTS = ("transformer", "text_encoder", "vae")
# A file on the hub, as every option taking a checkpoint spells it (the loaders' `loading.hub` too).
HUB_FILE = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)/(?P<file>[^\s]+\.safetensors)$")


@dataclass
class PipelineHeaders:
    """A pipeline's configs and safetensors headers, by component (`transformer`, `text_encoder`, `vae`)."""

    label: str
    configs: dict[str, dict[str, Any]]
    headers: dict[str, list[SafetensorsHeader]] = field(default_factory=dict)
    folder: Path | None = None  # the local folder, when there is one


def local_pipeline(folder: Path, need_weights: tuple[str, ...] = COMPONENTS) -> PipelineHeaders:
    """Configs and headers of a local pipeline folder (`model_index.json` + component folders)."""
    if not (folder / "model_index.json").is_file():
        raise ConfigError(f"{folder}: not a diffusers pipeline folder (no model_index.json)")
    configs, headers = {}, {}
    for component in COMPONENTS:
        config_path = folder / component / "config.json"
        if not config_path.is_file():
            raise ConfigError(f"{folder}: no {component}/config.json")
        configs[component] = _object(read_json_file(config_path), config_path)
        if component in need_weights:
            files = sorted((folder / component).glob("*.safetensors"))
            if not files:
                raise ConfigError(f"{folder / component}: no .safetensors weights to plan from")
            headers[component] = [read_header(file) for file in files]
    return PipelineHeaders(str(folder), configs, headers, folder)


def cached_pipeline(repo_id: str, need_weights: tuple[str, ...] = COMPONENTS, revision: str | None = None) -> PipelineHeaders | None:
    """The repository's snapshot in the HF cache when it holds every config and needed weight file, else None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
        found = local_pipeline(folder, need_weights)
    except (LocalEntryNotFoundError, HfHubHTTPError, ConfigError, Flux2Int8Error, OSError, ValueError):
        return None
    return PipelineHeaders(repo_id, found.configs, found.headers, folder)


def hub_pipeline(repo_id: str, need_weights: tuple[str, ...] = COMPONENTS, revision: str | None = None, token: str | bool | None = None) -> PipelineHeaders:
    """Configs (through the HF cache) and headers (range requests) of a hub pipeline repository."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    api = HfApi(token=token)
    try:
        files = api.list_repo_files(repo_id, revision=revision)
        configs = {c: _object(loads_bounded(Path(hf_hub_download(repo_id, f"{c}/config.json", revision=revision, token=token)).read_bytes()), Path(f"{repo_id}/{c}/config.json")) for c in COMPONENTS}
        headers = {}
        for component in need_weights:
            names = sorted(name for name in files if name.startswith(f"{component}/") and name.endswith(".safetensors"))
            headers[component] = [_hub_header(api, repo_id, name, revision) for name in names]
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise Flux2Int8Error(f"planning '{repo_id}' reads its headers from the Hugging Face hub, which cannot be reached (or HF_HUB_OFFLINE is set); plan a local pipeline folder instead") from None
    except HfHubHTTPError as error:
        raise Flux2Int8Error(f"planning '{repo_id}': the Hugging Face hub answered with an error ({error}); a gated repository needs `hf auth login`") from None
    except Exception as error:  # noqa: BLE001 (re-raised unless it is the network failing)
        if not _is_network_error(error):
            raise
        raise Flux2Int8Error(f"planning '{repo_id}' reads its headers from the Hugging Face hub, which cannot be reached ({error}); plan a local pipeline folder instead") from None
    return PipelineHeaders(repo_id, configs, headers)


def _is_network_error(error: Exception) -> bool:
    """No network: an OSError, or the HTTP client's transport error (huggingface_hub's client package varies by release)."""
    return isinstance(error, OSError) or any(cls.__name__ in ("TransportError", "RequestError", "ConnectionError") for cls in type(error).__mro__)


def file_header(spec: str | Path, revision: str | None = None, token: str | bool | None = None) -> SafetensorsHeader:
    """A local safetensors file's header, or a hub file's (`owner/repo/file.safetensors`) by range requests."""
    path = Path(spec).expanduser()
    if path.exists() or not HUB_FILE.match(str(spec)):
        return read_header(path)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    repo_id, filename = HUB_FILE.match(str(spec)).group("repo", "file")  # type: ignore[union-attr]
    try:
        return _hub_header(HfApi(token=token), repo_id, filename, revision)
    except (OfflineModeIsEnabled, HfHubHTTPError) as error:
        raise Flux2Int8Error(f"planning '{spec}': its header cannot be read from the Hugging Face hub ({error}); pass the local file") from None
    except Exception as error:  # noqa: BLE001 (re-raised unless it is the network failing)
        if not _is_network_error(error):
            raise
        raise Flux2Int8Error(f"planning '{spec}': the Hugging Face hub cannot be reached ({error}); pass the local file") from None


def _hub_header(api: Any, repo_id: str, filename: str, revision: str | None) -> SafetensorsHeader:
    metadata = api.parse_safetensors_file_metadata(repo_id, filename, revision=revision)
    tensors = {name: TensorInfo(info.dtype, tuple(info.shape)) for name, info in metadata.tensors.items()}
    return SafetensorsHeader(Path(f"{repo_id}/{filename}"), tensors, dict(metadata.metadata or {}))


def _object(document: Any, path: Path) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: must hold a JSON object")
    return document
