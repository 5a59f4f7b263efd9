"""Image metrics: PSNR, LPIPS and CLIP per image; FID and KID per set of images.

Images travel as uint8 tensors [3, H, W] (RGB, 0..255), the form they have on disk, so
every metric sees exactly the pixels a user sees. The networks are injected: `load_*`
builds them from local weight files (see `weights.py`), tests pass tiny random ones.
lpips, torchvision, torchmetrics and torch-fidelity are imported only when a metric that
needs them is loaded, so the package works without the `eval` extra.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .weights import ResolvedWeights, torch_hub_dir

PIXEL_MAX = 255.0
CLIP_S_WEIGHT = 2.5  # Hessel et al. 2021, CLIPScore: CLIP-S = 2.5 * max(cos, 0)
INCEPTION_FEATURES = 2048
KID_SUBSETS = 100


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected|| in float64 (L2 over all elements): the one error
    measure the velocity fidelity, the tools and the tests report."""
    expected = expected.double()
    return float((actual.double() - expected).norm() / expected.norm())


def image_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> uint8 [3, H, W] RGB."""
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()


def psnr(candidate: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR in dB of uint8 [3, H, W] images: 10 log10(255^2 / MSE), inf for identical images."""
    _check_pair(candidate, reference)
    mse = (candidate.double() - reference.double()).square().mean().item()
    return math.inf if mse == 0 else 10.0 * math.log10(PIXEL_MAX**2 / mse)


def _check_pair(candidate: torch.Tensor, reference: torch.Tensor) -> None:
    if candidate.shape != reference.shape:
        raise ValueError(f"images differ in size: {tuple(candidate.shape)} vs reference {tuple(reference.shape)}")


def clip_s(cosine: float) -> float:
    """CLIP-S of Hessel et al. (2021): 2.5 * max(cos, 0), which spreads typical cosines (0.2-0.4) over 0.5-1."""
    return CLIP_S_WEIGHT * max(cosine, 0.0)


class LpipsMetric:
    """LPIPS distance (Zhang et al. 2018) of two uint8 images; 0 for identical ones.

    `network` is an `lpips.LPIPS` module (or anything with its call signature: two
    float [N, 3, H, W] batches in [-1, 1] -> [N, 1, 1, 1]). Images are compared at their
    full resolution, as `lpips.LPIPS` does by default (spatial average of the layer distances).
    """

    def __init__(self, network: nn.Module, name: str, device: torch.device | str = "cpu"):
        self.network = network.to(device).eval()
        self.name = name
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, candidate: torch.Tensor, reference: torch.Tensor) -> float:
        _check_pair(candidate, reference)
        pair = [image.to(self.device, torch.float32).unsqueeze(0) / 127.5 - 1.0 for image in (candidate, reference)]
        return float(self.network(pair[0], pair[1]).flatten()[0])


def load_lpips(backbone: Path, net: str = "alex", device: torch.device | str = "cpu") -> LpipsMetric:
    """lpips.LPIPS(net) v0.1: its linear heads from the wheel, the backbone from `backbone`'s torch.hub folder."""
    import lpips

    with torch_hub_dir(backbone.parent.parent), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # lpips 0.1 calls torchvision with the deprecated `pretrained=`
        network = lpips.LPIPS(net=net, version="0.1", verbose=False)
    return LpipsMetric(network, f"LPIPS v0.1, {net} backbone ({backbone.name})", device)


class ClipMetric:
    """Cosine similarity of CLIP image and text embeddings, computed with a transformers `CLIPModel`.

    `CLIPModel.forward` returns both embeddings L2-normalised (stable across transformers
    4.x and 5.x, unlike `get_*_features`), so the cosine is their dot product. Prompts
    longer than CLIP's 77 tokens are truncated, as every CLIP score does.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, image_processor: Any, name: str, device: torch.device | str = "cpu", batch_size: int = 16):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.name = name
        self.device = torch.device(device)
        self.batch_size = batch_size

    @torch.no_grad()
    def cosines(self, images: Sequence[Image.Image], texts: Sequence[str]) -> list[float]:
        """cos(image_i, text_i) for each pair, in [-1, 1]."""
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        scores: list[float] = []
        for start in range(0, len(images), self.batch_size):
            batch_images, batch_texts = images[start : start + self.batch_size], texts[start : start + self.batch_size]
            tokens = self.tokenizer(list(batch_texts), padding=True, truncation=True, max_length=_max_length(self.model), return_tensors="pt")
            pixels = self.image_processor(images=[image.convert("RGB") for image in batch_images], return_tensors="pt")["pixel_values"]
            output = self.model(input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device), pixel_values=pixels.to(self.device, self.model.dtype))
            scores.extend((output.image_embeds.float() * output.text_embeds.float()).sum(-1).tolist())
        return scores


def _max_length(model: nn.Module) -> int:
    return int(model.config.text_config.max_position_embeddings)


def load_clip(folder: Path, name: str, device: torch.device | str = "cpu") -> ClipMetric:
    """A CLIPModel with its tokenizer and image processor from a local folder (safetensors weights only)."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    model = CLIPModel.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
    return ClipMetric(model, tokenizer, processor, name, device)


class _Precomputed(nn.Module):
    """Identity 'feature extractor': lets torchmetrics' FID run on features we extracted once."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@dataclass(frozen=True)
class SetScores:
    """FID and KID of a candidate image set against the reference set, with the set size."""

    count: int
    fid: float | None = None
    kid_mean: float | None = None
    kid_std: float | None = None


class InceptionFeatures:
    """Pool features of InceptionV3 (torch-fidelity's FID network, or an injected module), batched.

    `extractor` maps uint8 [N, 3, H, W] to float [N, F]; torch-fidelity's resizes to
    299x299 itself.
    """

    def __init__(self, extractor: nn.Module | Callable[[torch.Tensor], torch.Tensor], name: str, device: torch.device | str = "cpu", batch_size: int = 8):
        self.extractor = extractor
        self.name = name
        self.device = torch.device(device)
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """uint8 [3, H, W] images (same size) -> float64 [N, F] on the CPU."""
        rows = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack(list(images[start : start + self.batch_size])).to(self.device)
            rows.append(self.extractor(batch).double().cpu())
        return torch.cat(rows)


def load_inception(weights: Path, device: torch.device | str = "cpu") -> InceptionFeatures:
    """torch-fidelity's InceptionV3 (2048 pool features) through torchmetrics, from a local weights file."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    extractor = NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(INCEPTION_FEATURES)], feature_extractor_weights_path=str(weights))
    return InceptionFeatures(extractor.to(device), f"InceptionV3 pool3 ({INCEPTION_FEATURES} features, torch-fidelity {weights.name})", device)


def set_scores(reference: torch.Tensor, candidate: torch.Tensor, fid: bool = True, kid: bool = True, seed: int = 0) -> SetScores:
    """FID and KID (torchmetrics) from float64 features [N, F] of the reference and candidate sets.

    Row i of both sets is the same case (same prompt and seed). FID uses every row and
    needs at least 2. KID's unbiased estimator assumes independent sets, which paired
    near-duplicates are not (a shared case biases it negative), so each of `KID_SUBSETS`
    seeded draws splits the cases in two halves and compares the reference images of one
    half with the candidate images of the other; it needs at least 4 cases. On a few dozen
    images FID is biased upward (see `small_sample_note`) while KID is not.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import poly_mmd

    count = min(len(reference), len(candidate))
    result: dict[str, float] = {}
    if fid and count >= 2:
        metric = FrechetInceptionDistance(feature=_Precomputed(reference.shape[1]))
        metric.update(reference[:count].double(), real=True)
        metric.update(candidate[:count].double(), real=False)
        result["fid"] = max(float(metric.compute()), 0.0)  # tiny negatives are eigenvalue round-off
    if kid and count >= 4:
        generator = torch.Generator().manual_seed(seed)
        half = count // 2
        draws = []
        for _ in range(KID_SUBSETS):
            order = torch.randperm(count, generator=generator)
            draws.append(poly_mmd(reference[order[:half]].double(), candidate[order[half : 2 * half]].double()))
        values = torch.stack(draws)
        result["kid_mean"], result["kid_std"] = float(values.mean()), float(values.std(unbiased=False))
    return SetScores(count, result.get("fid"), result.get("kid_mean"), result.get("kid_std"))


def small_sample_note(count: int, num_features: int) -> str | None:
    """Why an FID over `count` images must be read with care, or None when the set is large enough."""
    if count > num_features:
        return None
    return (
        f"FID over {count} images: each covariance has rank <= {count - 1}, far below the {num_features} features, "
        "so FID is biased upward and depends on the set size; compare it only at the same size (candidate vs candidate), "
        "or read KID, which is unbiased"
    )


@dataclass
class MetricModels:
    """The loaded metric networks; None for a metric that was not asked for."""

    clip: ClipMetric | None = None
    lpips: LpipsMetric | None = None
    inception: InceptionFeatures | None = None


def load_metric_models(metrics: set[str], weights: ResolvedWeights, device: torch.device | str = "cpu") -> MetricModels:
    """Build the networks the chosen metrics need from already resolved local files."""
    models = MetricModels()
    if "clip" in metrics and weights.clip is not None:
        models.clip = load_clip(weights.clip, weights.clip_name, device)
    if "lpips" in metrics and weights.lpips is not None:
        models.lpips = load_lpips(weights.lpips, weights.lpips_net, device)
    if metrics & {"fid", "kid"} and weights.inception is not None:
        models.inception = load_inception(weights.inception, device)
    return models
