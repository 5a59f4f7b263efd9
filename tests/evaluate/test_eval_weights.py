"""Metric weights: one message naming what is missing, checked SHA-256 prefixes, weightless metrics."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from eval_helpers import needs_lpips, needs_torchmetrics

from flux2_int8.evaluate import MetricWeightsError, WeightsLocation, parse_metrics, resolve_weights
from flux2_int8.evaluate import weights as weights_module


def test_weightless_metrics_need_nothing(tmp_path):
    resolved = resolve_weights(set(), WeightsLocation(tmp_path))
    assert (resolved.clip, resolved.lpips, resolved.inception) == (None, None, None)


@needs_lpips
@needs_torchmetrics
def test_an_empty_weights_folder_names_every_missing_file_in_one_message(tmp_path):
    with pytest.raises(MetricWeightsError) as error:
        resolve_weights({"clip", "lpips", "fid"}, WeightsLocation(tmp_path))
    message = str(error.value)
    assert "CLIP score needs the hub repository openai/clip-vit-large-patch14" in message
    assert f"LPIPS needs alexnet-owt-7be5be79.pth in {tmp_path}/torch/hub/checkpoints" in message
    assert "FID needs weights-inception-2015-12-05-6726825d.pth" in message
    assert f"flux2-int8 fetch-weights {tmp_path}" in message and "--metrics psnr,fidelity" in message
    assert "\n" not in message


def test_a_missing_package_is_named_with_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(weights_module.PACKAGES, "lpips", ("surely_not_installed_package",))
    with pytest.raises(MetricWeightsError, match=r"LPIPS needs the Python package\(s\) surely_not_installed_package \(pip install 'flux2-int8\[eval\]'\)"):
        resolve_weights({"lpips"}, WeightsLocation(tmp_path))


def _fake_checkpoint(folder, stem: str, content: bytes) -> str:
    """Write `content` where torch.hub keeps `<stem>-<sha256 prefix>.pth`; return its URL."""
    name = f"{stem}-{hashlib.sha256(content).hexdigest()[:8]}.pth"
    (folder / "torch" / "hub" / "checkpoints").mkdir(parents=True, exist_ok=True)
    (folder / "torch" / "hub" / "checkpoints" / name).write_bytes(content)
    return f"https://example.invalid/models/{name}"


def test_a_torch_file_is_accepted_when_its_hash_matches_its_name(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_module, "_missing_packages", lambda metrics: {})
    url = _fake_checkpoint(tmp_path, "alexnet-owt", b"weights")
    monkeypatch.setattr(weights_module, "backbone_url", lambda net: url)
    resolved = resolve_weights({"lpips"}, WeightsLocation(tmp_path))
    assert resolved.lpips == tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]


def test_a_torch_file_whose_bytes_differ_from_its_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_module, "_missing_packages", lambda metrics: {})
    url = _fake_checkpoint(tmp_path, "alexnet-owt", b"weights")
    path = tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    path.write_bytes(b"tampered")
    monkeypatch.setattr(weights_module, "backbone_url", lambda net: url)
    with pytest.raises(MetricWeightsError, match="does not match the SHA-256 in its name"):
        resolve_weights({"lpips"}, WeightsLocation(tmp_path))


def test_a_local_clip_folder_must_hold_safetensors_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_module, "_missing_packages", lambda metrics: {})
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({}))
    (folder / "preprocessor_config.json").write_text(json.dumps({}))
    with pytest.raises(MetricWeightsError, match=f"needs model.safetensors in the CLIP folder {folder}"):
        resolve_weights({"clip"}, WeightsLocation(), clip_model=str(folder))
    (folder / "model.safetensors").write_bytes(b"")
    assert resolve_weights({"clip"}, WeightsLocation(), clip_model=str(folder)).clip == folder


def test_a_cached_clip_repository_is_found_offline(tmp_path, monkeypatch):
    """The layout fetch-weights writes: a Hugging Face cache under DIR/huggingface."""
    monkeypatch.setattr(weights_module, "_missing_packages", lambda metrics: {})
    snapshot = tmp_path / "huggingface" / "models--openai--clip-vit-large-patch14" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "preprocessor_config.json", "model.safetensors"):
        (snapshot / name).write_text("{}")
    (tmp_path / "huggingface" / "models--openai--clip-vit-large-patch14" / "refs").mkdir()
    (tmp_path / "huggingface" / "models--openai--clip-vit-large-patch14" / "refs" / "main").write_text("a" * 40)
    assert resolve_weights({"clip"}, WeightsLocation(tmp_path)).clip == snapshot


def test_a_weights_folder_means_offline_and_unknown_backbones_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert WeightsLocation(tmp_path).offline and not WeightsLocation().offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert WeightsLocation().offline
    with pytest.raises(MetricWeightsError, match="unknown LPIPS backbone 'squeeze'"):
        resolve_weights({"lpips"}, WeightsLocation(tmp_path), lpips_net="squeeze")


def test_torch_hub_dir_is_restored(tmp_path):
    before = torch.hub.get_dir()
    with weights_module.torch_hub_dir(tmp_path):
        assert torch.hub.get_dir() == str(tmp_path)
    assert torch.hub.get_dir() == before


def test_parse_metrics():
    assert parse_metrics("all") == {"clip", "lpips", "psnr", "fid", "kid", "fidelity", "accuracy"}
    assert parse_metrics(" PSNR, fidelity ") == {"psnr", "fidelity"}
    with pytest.raises(Exception, match="unknown metric 'ssim'"):
        parse_metrics("psnr,ssim")
    with pytest.raises(Exception, match="name at least one metric"):
        parse_metrics(",")
