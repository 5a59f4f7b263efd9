"""Metric functions against closed forms: identical images, a known noise, shifted feature sets."""

from __future__ import annotations

import math

import pytest
import torch
from eval_helpers import TinyFeatures, build_tiny_clip, build_tiny_lpips, needs_lpips, needs_torchmetrics
from PIL import Image

from flux2_int8.evaluate import LpipsMetric, clip_s, image_tensor, psnr, set_scores
from flux2_int8.evaluate.metrics import small_sample_note


def _image(seed: int, size: int = 64) -> torch.Tensor:
    return torch.randint(0, 256, (3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_psnr_of_identical_images_is_infinite():
    image = _image(0)
    assert psnr(image, image.clone()) == math.inf


@pytest.mark.parametrize("amplitude", [1, 5, 40])
def test_psnr_of_a_known_noise(amplitude):
    """+-a on every pixel (kept inside 0..255) gives MSE a^2, so PSNR = 20 log10(255 / a)."""
    reference = torch.full((3, 32, 32), 128, dtype=torch.uint8)
    signs = torch.where(torch.arange(32 * 32).reshape(32, 32) % 2 == 0, 1, -1).expand(3, 32, 32)
    noisy = (reference.int() + amplitude * signs).to(torch.uint8)
    assert psnr(noisy, reference) == pytest.approx(20 * math.log10(255 / amplitude), abs=1e-9)


def test_psnr_refuses_images_of_different_sizes():
    with pytest.raises(ValueError, match="differ in size"):
        psnr(_image(0, 64), _image(0, 32))


def test_image_tensor_keeps_pixels_and_layout():
    array = _image(3).permute(1, 2, 0).numpy()
    tensor = image_tensor(Image.fromarray(array))
    assert tensor.dtype == torch.uint8 and tensor.shape == (3, 64, 64)
    assert torch.equal(tensor.permute(1, 2, 0), torch.from_numpy(array))


def test_clip_s_is_hessel_weighting():
    assert clip_s(0.257) == pytest.approx(0.6425)
    assert clip_s(-0.1) == 0.0


def test_clip_cosine_matches_normalised_projected_embeddings():
    metric = build_tiny_clip()
    images = [Image.fromarray(_image(seed).permute(1, 2, 0).numpy()) for seed in (1, 2)]
    texts = ["a red cube on the table", "a green cat"]
    cosines = metric.cosines(images, texts)
    with torch.no_grad():
        tokens = metric.tokenizer(texts, padding=True, return_tensors="pt")
        pixels = metric.image_processor(images=images, return_tensors="pt")["pixel_values"]
        image_embeds = _projected(metric.model.get_image_features(pixel_values=pixels))
        text_embeds = _projected(metric.model.get_text_features(**tokens))
    expected = torch.nn.functional.cosine_similarity(image_embeds, text_embeds, dim=-1)
    assert cosines == pytest.approx(expected.tolist(), abs=1e-5)
    assert metric.cosines(images, texts[::-1]) != pytest.approx(cosines)


def _projected(output) -> torch.Tensor:
    """transformers 4.x returns the projected embedding; 5.x wraps it as `pooler_output`."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def test_load_clip_reads_a_saved_folder_and_scores_the_same(tmp_path):
    """The offline path: a CLIPModel folder (safetensors, tokenizer, preprocessor) found and loaded."""
    from flux2_int8.evaluate import WeightsLocation, resolve_weights
    from flux2_int8.evaluate.metrics import load_clip

    original = build_tiny_clip()
    for part in (original.model, original.tokenizer, original.image_processor):
        part.save_pretrained(tmp_path)
    folder = resolve_weights({"clip"}, WeightsLocation(), clip_model=str(tmp_path)).clip
    loaded = load_clip(folder, "saved tiny CLIP")
    images = [Image.fromarray(_image(seed).permute(1, 2, 0).numpy()) for seed in (1, 2)]
    texts = ["a red cube", "a green cat on the sofa"]
    assert loaded.cosines(images, texts) == pytest.approx(original.cosines(images, texts), abs=1e-6)


def test_clip_refuses_unpaired_inputs():
    with pytest.raises(ValueError, match="2 images but 1 texts"):
        build_tiny_clip().cosines([Image.new("RGB", (32, 32))] * 2, ["a cube"])


def test_lpips_metric_feeds_the_network_images_in_minus_one_to_one():
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, first, second):
            seen.append((first, second))
            return (first - second).abs().mean().reshape(1, 1, 1, 1)

    black, white = torch.zeros(3, 8, 8, dtype=torch.uint8), torch.full((3, 8, 8), 255, dtype=torch.uint8)
    assert LpipsMetric(Recorder(), "recorder")(black, white) == pytest.approx(2.0)
    first, second = seen[0]
    assert first.shape == (1, 3, 8, 8) and first.min() == -1.0 and second.max() == 1.0


@needs_lpips
def test_lpips_is_zero_for_identical_images_and_grows_with_noise():
    metric = build_tiny_lpips()
    image = _image(5)
    noisy_a = (image.int() + torch.randint(-8, 9, image.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 255).to(torch.uint8)
    noisy_b = (image.int() + torch.randint(-64, 65, image.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 255).to(torch.uint8)
    assert metric(image, image.clone()) == pytest.approx(0.0, abs=1e-7)
    assert 0 < metric(noisy_a, image) < metric(noisy_b, image)


@needs_torchmetrics
def test_fid_of_identical_sets_is_zero_and_of_a_shift_is_its_squared_norm():
    features = torch.randn(24, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shift = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.0, 0.25], dtype=torch.float64)
    assert set_scores(features, features.clone(), kid=False).fid == pytest.approx(0.0, abs=1e-6)
    # Equal covariances: the trace term vanishes and FID is ||mu_1 - mu_2||^2.
    assert set_scores(features, features + shift, kid=False).fid == pytest.approx(float(shift.square().sum()), rel=1e-6)


@needs_torchmetrics
def test_kid_is_near_zero_for_identical_sets_and_positive_for_different_ones():
    images = [_image(seed, 32) for seed in range(16)]
    features = TinyFeatures()(torch.stack(images)).double()
    same = set_scores(features, features.clone(), fid=False)
    shifted = set_scores(features, features + 1.0, fid=False)
    assert same.fid is None and shifted.kid_std > 0
    assert abs(same.kid_mean) < 0.05 * shifted.kid_mean
    assert set_scores(features, features + 1.0, fid=False) == shifted  # seeded: reruns agree


@needs_torchmetrics
def test_kid_is_not_biased_negative_by_paired_near_duplicates():
    """Candidate i is reference i plus a little noise: KID must not go below zero by much."""
    generator = torch.Generator().manual_seed(1)
    reference = torch.randn(48, 16, generator=generator, dtype=torch.float64)
    candidate = reference + 0.01 * torch.randn(48, 16, generator=generator, dtype=torch.float64)
    scores = set_scores(reference, candidate, fid=False)
    assert abs(scores.kid_mean) < 2 * scores.kid_std


@needs_torchmetrics
def test_set_scores_needs_two_images_for_fid_and_four_for_kid():
    three = torch.randn(3, 4, dtype=torch.float64)
    scores = set_scores(three, three + 1.0)
    assert scores.fid is not None and scores.kid_mean is None
    assert set_scores(three[:1], three[:1]).fid is None


def test_small_sample_note_names_the_rank_problem_only_when_it_exists():
    note = small_sample_note(48, 2048)
    assert note is not None and "rank <= 47" in note and "KID" in note
    assert small_sample_note(5000, 2048) is None
