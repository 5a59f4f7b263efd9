"""The metric networks' weight files: where they live, fetching them, and checking them offline.

No PyPI package ships them. CLIP comes from the Hugging Face hub (a `CLIPModel` folder);
LPIPS's small linear heads ship inside the `lpips` wheel, but its AlexNet/VGG backbone is
torchvision's ImageNet file; FID/KID's InceptionV3 is torch-fidelity's port of the TF
FID network. The two torch files are plain torch.hub downloads, named with the first
8 hex digits of their SHA-256, which is checked before a file is handed to the library
that unpickles it.

Layout of a weights folder (`flux2-int8 fetch-weights DIR`, then `--metrics-weights DIR`):

    DIR/huggingface/            a Hugging Face cache holding the CLIP repository
    DIR/torch/hub/checkpoints/  alexnet-owt-7be5be79.pth, weights-inception-2015-12-05-6726825d.pth

Without a folder the standard caches are used (`HF_HOME`, `TORCH_HOME`) and missing
files are downloaded on first use, unless `HF_HUB_OFFLINE=1`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, Flux2Int8Error

DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"
DEFAULT_LPIPS_NET = "alex"
# torchvision's ImageNet weights lpips 0.1 loads (`tv.alexnet(pretrained=True)` = IMAGENET1K_V1).
# Today: alexnet-owt-7be5be79.pth and vgg16-397923af.pth.
LPIPS_BACKBONES = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights"}
CLIP_FILES = ("*.json", "*.txt", "model.safetensors")
# Metrics that need weights, and the packages each imports.
PACKAGES = {
    "clip": ("transformers",),
    "lpips": ("lpips", "torchvision"),
    "fid": ("torchmetrics", "torch_fidelity"),
    "kid": ("torchmetrics", "torch_fidelity"),
}
METRIC_LABELS = {"clip": "CLIP score", "lpips": "LPIPS", "fid": "FID", "kid": "KID"}


# accuracy: does the picture show what a nano grammar prompt asks for (nano.score); other prompts get none.
METRICS = ("clip", "lpips", "psnr", "fid", "kid", "fidelity", "accuracy")
WEIGHTLESS = frozenset({"psnr", "fidelity", "accuracy"})


def parse_metrics(spec: str | Sequence[str]) -> set[str]:
    """`clip,lpips,psnr,fid,kid,fidelity,accuracy` (any subset, or `all`) -> a set; unknown names are refused."""
    names = [n.strip().lower() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if names == ["all"]:
        return set(METRICS)
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        problem = f"unknown metric {unknown[0]!r}" if unknown else "name at least one metric"
        raise ConfigError(f"--metrics: {problem} (choose from {', '.join(METRICS)}, or all)")
    return set(names)


class MetricWeightsError(Flux2Int8Error):
    """A metric's package or weight file is missing; the message says which and how to get it."""


@dataclass(frozen=True)
class WeightsLocation:
    """Where metric weights are read from: a fetched folder (never downloads into it) or the standard caches."""

    root: Path | None = None

    @property
    def offline(self) -> bool:
        return self.root is not None or _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")

    @property
    def hf_cache(self) -> Path | None:
        return None if self.root is None else self.root / "huggingface"

    @property
    def torch_hub(self) -> Path:
        import torch.hub

        return Path(torch.hub.get_dir()) if self.root is None else self.root / "torch" / "hub"

    def torch_file(self, url: str) -> Path:
        return self.torch_hub / "checkpoints" / url.rsplit("/", 1)[1]


@dataclass(frozen=True)
class ResolvedWeights:
    """The local files each chosen metric loads: a CLIP folder, an LPIPS backbone, the Inception file."""

    clip: Path | None = None
    clip_name: str = DEFAULT_CLIP_MODEL
    lpips: Path | None = None
    lpips_net: str = DEFAULT_LPIPS_NET
    inception: Path | None = None


def resolve_weights(metrics: Iterable[str], location: WeightsLocation, clip_model: str = DEFAULT_CLIP_MODEL, lpips_net: str = DEFAULT_LPIPS_NET, download: bool | None = None) -> ResolvedWeights:
    """Every file the chosen metrics need, fetched when allowed (`download`, default: not offline).

    All problems are gathered into one `MetricWeightsError`, raised before any image is
    generated, so a long run never ends in a missing file. PSNR and transformer fidelity
    need nothing.
    """
    found, problems = _resolve(set(metrics), location, clip_model, lpips_net, download)
    if problems:
        raise MetricWeightsError(_problems_message(problems, location))
    return ResolvedWeights(found.get("clip"), clip_model, found.get("lpips"), lpips_net, found.get("inception"))


def resolve_available(metrics: Iterable[str], location: WeightsLocation, clip_model: str = DEFAULT_CLIP_MODEL, lpips_net: str = DEFAULT_LPIPS_NET, download: bool | None = None) -> tuple[ResolvedWeights, dict[str, str]]:
    """The files of those `metrics` that can be had here (found, or fetched when online), and why each other one cannot.

    For a default metric set: a run offline scores what it can instead of failing on CLIP.
    """
    found, problems = _resolve(set(metrics), location, clip_model, lpips_net, download)
    return ResolvedWeights(found.get("clip"), clip_model, found.get("lpips"), lpips_net, found.get("inception")), problems


def _resolve(wanted: set[str], location: WeightsLocation, clip_model: str, lpips_net: str, download: bool | None) -> tuple[dict[str, Path], dict[str, str]]:
    download = not location.offline if download is None else download
    if lpips_net not in LPIPS_BACKBONES:
        raise MetricWeightsError(f"unknown LPIPS backbone '{lpips_net}': expected one of {', '.join(LPIPS_BACKBONES)}")
    problems = _missing_packages(wanted)
    found: dict[str, Path] = {}
    if "clip" in wanted and "clip" not in problems:
        _try(problems, "clip", found, lambda: _clip_folder(clip_model, location, download))
    if "lpips" in wanted and "lpips" not in problems:
        _try(problems, "lpips", found, lambda: _torch_file(backbone_url(lpips_net), location, download))
    for metric in ("fid", "kid"):
        if metric in wanted and metric not in problems and "inception" not in found:
            _try(problems, metric, found, lambda: _torch_file(inception_url(), location, download), key="inception")
    return found, problems


def backbone_url(net: str) -> str:
    """Where torchvision downloads the LPIPS backbone from (its weights enum is the one source of truth)."""
    import torchvision.models

    return getattr(torchvision.models, LPIPS_BACKBONES[net]).IMAGENET1K_V1.url


def inception_url() -> str:
    """torch-fidelity's InceptionV3 weights, the network FID is defined with (weights-inception-2015-12-05-6726825d.pth today)."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


def _try(problems: dict[str, str], metric: str, found: dict[str, Path], fetch, key: str | None = None) -> None:
    try:
        found[key or metric] = fetch()
    except MetricWeightsError as error:
        problems[metric] = " ".join(str(error).split())  # library errors span lines; the message is one


def _missing_packages(metrics: set[str]) -> dict[str, str]:
    problems = {}
    for metric in sorted(metrics & set(PACKAGES)):
        absent = [name for name in PACKAGES[metric] if importlib.util.find_spec(name) is None]
        if absent:
            problems[metric] = f"needs the Python package(s) {', '.join(absent)} (pip install 'flux2-int8[eval]')"
    return problems


def _problems_message(problems: dict[str, str], location: WeightsLocation) -> str:
    listed = "; ".join(f"{METRIC_LABELS[metric]} {problem}" for metric, problem in problems.items())
    target = location.root or "DIR"
    return (
        f"metric weights missing ({listed}). On a machine with internet run "
        f"`flux2-int8 fetch-weights {target}`, copy the folder here and pass --metrics-weights {target}; "
        f"or leave these metrics out (e.g. --metrics psnr,fidelity)"
    )


def _clip_folder(clip_model: str, location: WeightsLocation, download: bool) -> Path:
    """A local CLIPModel folder (config, model.safetensors, tokenizer and preprocessor files)."""
    folder = Path(clip_model).expanduser()
    if folder.is_dir():
        absent = [name for name in ("config.json", "preprocessor_config.json", "model.safetensors") if not (folder / name).is_file()]
        if absent:
            raise MetricWeightsError(f"needs {', '.join(absent)} in the CLIP folder {folder}")
        return folder
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    cache = location.hf_cache
    try:
        path = Path(snapshot_download(clip_model, allow_patterns=list(CLIP_FILES), cache_dir=cache, local_files_only=not download))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
        if download:  # huggingface_hub reports an unreachable hub as a cache miss
            raise MetricWeightsError(f"needs the hub repository {clip_model}, which could not be downloaded ({error})") from None
        raise MetricWeightsError(f"needs the hub repository {clip_model} (config, tokenizer and model.safetensors) in the Hugging Face cache {cache or 'HF_HOME'}") from None
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise MetricWeightsError(f"needs the hub repository {clip_model}, which could not be fetched ({error})") from None
    if not (path / "model.safetensors").is_file():
        raise MetricWeightsError(f"needs model.safetensors in {clip_model}; that repository has none (pass a CLIP folder with safetensors weights as --clip-model)")
    return path


def _torch_file(url: str, location: WeightsLocation, download: bool) -> Path:
    """A torch.hub checkpoint, downloaded when allowed and missing, its SHA-256 prefix checked."""
    path = location.torch_file(url)
    expected = _hash_prefix(path.name)
    if not path.is_file():
        if not download:
            raise MetricWeightsError(f"needs {path.name} in {path.parent}")
        import torch.hub

        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), hash_prefix=expected, progress=True)
        except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad hash is a RuntimeError
            raise MetricWeightsError(f"needs {path.name}, which could not be downloaded from {url} ({error})") from None
    elif not sha256_of(path).startswith(expected):
        raise MetricWeightsError(f"needs {path.name}, but {path} does not match the SHA-256 in its name (a broken or different file; delete it and fetch again)")
    return path


def _hash_prefix(file_name: str) -> str:
    """torch.hub names files `<name>-<first 8 hex digits of SHA-256>.<ext>`."""
    return Path(file_name).stem.rsplit("-", 1)[1]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def torch_hub_dir(directory: Path) -> Iterator[None]:
    """Point torch.hub (torchvision's and lpips' loaders) at `directory` for the duration."""
    import torch.hub

    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(directory))
    try:
        yield
    finally:
        torch.hub.set_dir(previous)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")
