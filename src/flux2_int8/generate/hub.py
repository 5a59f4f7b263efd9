"""Where a pipeline and a checkpoint come from: a local path, or the Hugging Face cache.

Downloads go through huggingface_hub, so files land in (and are reused from) the
standard HF cache and `HF_HOME`, `HF_HUB_OFFLINE` and `hf auth login` work as users
expect. A machine that cannot reach the hub and has nothing cached gets one message
saying what is missing and how to provide it, not a stack of HTTP retries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import snapshot_download

from ..errors import CheckpointError, ConfigError
from ..formats.header import loads_bounded
from ..loading.hub import HUB_FILE, hub_errors, resolve_checkpoint
from ..nano import NANO_BASE, nano_folder
from ..planning.text_encoder import CUT_FROM_LAYERS, cut_for
from ..tiny import TINY_BASE, tiny_pipeline_cache
from ..variants import VARIANTS, Variant, get_variant

PIPELINE_CLASS = "Flux2KleinPipeline"
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
TEXT_ENCODER_INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")  # torch.save / pickle weight files


@dataclass(frozen=True)
class BaseSource:
    """What the user named as `base`: a variant, a hub repository, or a local folder."""

    spec: str
    variant: Variant | None = None
    repo_id: str | None = None
    folder: Path | None = None


# The built-in bases, by the name `--base` takes: the shipped trained nano, and the tiny
# random-weight pipeline (built once into the cache on first use).
def _nano_outliers_folder() -> Path:
    from ..nano.outliers import nano_outliers_folder  # built on first use (needs diffusers)

    return nano_outliers_folder()


BUILT_IN_BASES: dict[str, Callable[[], Path]] = {NANO_BASE: nano_folder, TINY_BASE: tiny_pipeline_cache, "nano-outliers": _nano_outliers_folder}


def parse_base(base: str | Path) -> BaseSource:
    """Tell a variant name, a built-in base (nano, tiny), a local pipeline folder and a hub repository id apart (no I/O beyond stat)."""
    spec = str(base)
    if spec.strip().lower() in BUILT_IN_BASES:
        return BaseSource(spec, folder=BUILT_IN_BASES[spec.strip().lower()]())
    if spec.strip().lower() in VARIANTS:
        variant = get_variant(spec)
        return BaseSource(spec, variant=variant, repo_id=variant.hub_id)
    path = Path(spec).expanduser()
    if path.is_dir():
        check_pipeline_folder(path)
        return BaseSource(spec, folder=path)
    if _REPO_ID.match(spec) and not path.exists():
        return BaseSource(spec, repo_id=spec)
    raise ConfigError(f"base '{spec}' is neither a variant ({', '.join(VARIANTS)}), a built-in base ({', '.join(BUILT_IN_BASES)}), an existing pipeline folder, nor a hub repository id (owner/name)")


def check_pipeline_folder(folder: Path) -> dict[str, Any]:
    """Read `model_index.json` and refuse anything but a FLUX.2 [klein] pipeline folder."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise ConfigError(f"{folder}: not a diffusers pipeline folder (no model_index.json)")
    try:
        document = loads_bounded(index.read_bytes())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{index}: cannot be read as JSON ({error})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{index}: must hold a JSON object")
    if document.get("_class_name") != PIPELINE_CLASS:
        raise ConfigError(f"{folder}: holds a {document.get('_class_name')!r} pipeline; expected {PIPELINE_CLASS} (FLUX.2 [klein])")
    return document


def check_safetensors_only(folder: Path, skip: Iterable[str] = ()) -> None:
    """Refuse a pipeline component whose weights exist only as a pickle (`.bin`, `.pt`, ...).

    `from_pretrained` is always called with `use_safetensors=True`, so such a file is
    never unpickled (unpickling can run code); this says which component it is and
    how to convert it, where diffusers would only report a missing file. The components
    are those `model_index.json` lists; `skip` names those given as loaded objects.
    """
    names = sorted(name for name in check_pipeline_folder(folder) if not name.startswith("_") and name not in skip)
    for component in (folder / name for name in names if (folder / name).is_dir()):
        files = [p for p in component.rglob("*") if p.is_file()]
        pickles = [p for p in files if p.suffix.lower() in PICKLE_SUFFIXES]
        if pickles and not any(p.suffix == ".safetensors" for p in files):
            raise ConfigError(
                f"{component}: the '{component.name}' weights are only a pickle ({pickles[0].name}), which flux2-int8 never loads "
                "(unpickling can run code); convert it where you trust the file: load it with diffusers/transformers and "
                "save_pretrained(..., safe_serialization=True)"
            )


def transformer_config_of(folder: Path) -> dict[str, Any]:
    """The base pipeline's `transformer/config.json`, the shape every checkpoint must fit."""
    path = folder / "transformer" / "config.json"
    try:
        return loads_bounded(path.read_bytes())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: the base pipeline's transformer config cannot be read ({error})") from None


def pipeline_patterns(skip_transformer_weights: bool, skip_text_encoder_weights: bool = False) -> list[str]:
    """The files of a klein hub repository the pipeline needs.

    The official repositories also hold a BFL single-file copy of the transformer at
    their root; it is never fetched. For a component whose checkpoint is given, only
    its config is, so the base's BF16 weights of it (8-18 GB for a transformer,
    8-16 GB for a text encoder) are never downloaded.
    """
    patterns = ["model_index.json", "scheduler/*", "tokenizer/*", "vae/*"]
    patterns.append("transformer/config.json" if skip_transformer_weights else "transformer/*")
    patterns += ["text_encoder/config.json", "text_encoder/generation_config.json", f"text_encoder/{TEXT_ENCODER_INDEX}"] if skip_text_encoder_weights else ["text_encoder/*"]
    return patterns


def download_text_encoder_weights(repo_id: str | None, folder: Path, local_files_only: bool, revision: str | None = None, token: str | bool | None = None) -> None:
    """Fetch only the text-encoder shards holding the layers the pipeline reads (the cut, `planning.text_encoder`).

    Qwen3-8B's last shards hold layers past 27, the final norm and the LM head: with the
    cut, they are never downloaded.
    """
    if repo_id is None:
        return
    component = folder / "text_encoder"
    index = component / TEXT_ENCODER_INDEX
    names = ["text_encoder/model.safetensors"]
    if index.is_file():
        config = loads_bounded((component / "config.json").read_bytes())
        cut = cut_for(int(config["num_hidden_layers"]), config.get(CUT_FROM_LAYERS))
        weight_map = loads_bounded(index.read_bytes()).get("weight_map", {})
        names = sorted({f"text_encoder/{shard}" for key, shard in weight_map.items() if cut.model_key(key) is not None})
    with hub_errors(f"the text encoder of '{repo_id}'", repo_id, f"hf download {repo_id} --include 'text_encoder/*'", "pass a local pipeline folder as the base", local_files_only):
        snapshot_download(repo_id, allow_patterns=names, local_files_only=local_files_only, revision=revision, token=token)


def download_pipeline(repo_id: str, skip_transformer_weights: bool, local_files_only: bool, skip_text_encoder_weights: bool = False, revision: str | None = None, token: str | bool | None = None) -> Path:
    """The local snapshot folder of a hub pipeline (from the cache, or downloaded into it)."""
    patterns = pipeline_patterns(skip_transformer_weights, skip_text_encoder_weights)
    with hub_errors(f"the pipeline '{repo_id}'", repo_id, f"hf download {repo_id}", "pass a local pipeline folder as the base", local_files_only):
        folder = Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=local_files_only, revision=revision, token=token))
    check_pipeline_folder(folder)
    return folder


def resolve_lora(spec: str, local_files_only: bool) -> Path:
    """A LoRA file: a local file or folder, a hub file `owner/repo/file.safetensors`, or a hub repository holding one."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return _single_safetensors(path, spec)
    if path.exists() or HUB_FILE.match(spec):
        return resolve_checkpoint(spec, local_files_only)
    if not _REPO_ID.match(spec):
        raise CheckpointError(spec, "no such LoRA file or folder (on the hub: owner/repo or owner/repo/file.safetensors)")
    with hub_errors(f"the LoRA '{spec}'", spec, f"hf download {spec}", "pass the LoRA's local path", local_files_only):
        folder = Path(snapshot_download(spec, allow_patterns=["*.safetensors"], local_files_only=local_files_only))
    return _single_safetensors(folder, spec)


def _single_safetensors(folder: Path, spec: str) -> Path:
    files = sorted(folder.rglob("*.safetensors"))
    if len(files) != 1:
        found = ", ".join(str(f.relative_to(folder)) for f in files) or "none"
        raise CheckpointError(spec, f"expected one .safetensors LoRA file, found {found}; name the file (owner/repo/file.safetensors or its path)")
    return files[0]
