"""The training script runs end to end (a 20-step smoke run, so it cannot rot) and keeps the pipeline's conventions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import Flux2KleinPipeline
from safetensors import safe_open

from flux2_int8.nano import NANO_MAX_SEQUENCE_LENGTH, NANO_SIZE, NANO_STEPS
from flux2_int8.nano.grammar import split_scenes
from flux2_int8.nano.model import build_scheduler, build_vae
from flux2_int8.nano.train import TrainConfig, _draw_sigmas, _pick, sampling_sigmas, scene_chances, set_latent_statistics

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "nano"
    command = [
        sys.executable, str(REPOSITORY / "scripts" / "train_nano.py"), "--out", str(out), "--threads", "1",
        "--vae-steps", "10", "--vae-batch", "2", "--transformer-steps", "10", "--transformer-batch", "4", "--latent-pool", "8", "--pool-refresh", "2", "--log-every", "5",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert '"phase": "done"' in completed.stdout
    return out


def test_smoke_run_writes_a_bf16_pipeline_that_the_stock_class_samples(smoke_run):
    files = list(smoke_run.rglob("*.safetensors"))
    assert {f.parent.name for f in files} == {"transformer", "vae", "text_encoder"}
    assert sum(f.stat().st_size for f in files) < 5 * 2**20
    for file in files:
        with safe_open(file, "pt") as weights:
            floats = {weights.get_slice(k).get_dtype() for k in weights.keys() if not k.endswith("num_batches_tracked")}
            assert floats == {"BF16"}, file
    pipe = Flux2KleinPipeline.from_pretrained(smoke_run, dtype=torch.float32)
    assert pipe.config.is_distilled
    image = pipe(
        prompt="two red circles on a blue background", height=NANO_SIZE, width=NANO_SIZE, num_inference_steps=NANO_STEPS,
        max_sequence_length=NANO_MAX_SEQUENCE_LENGTH, generator=torch.Generator().manual_seed(0), output_type="np",
    ).images
    assert image.shape == (1, NANO_SIZE, NANO_SIZE, 3) and np.isfinite(image).all()
    # The latent statistics were measured, not left at batch norm's fresh 0 and 1.
    assert not torch.allclose(pipe.vae.bn.running_var, torch.ones_like(pipe.vae.bn.running_var))


def test_training_sigmas_are_the_pipelines_shifted_schedule():
    """What Flux2KleinPipeline steps through at 128x128 in 4 steps (mu from compute_empirical_mu)."""
    scheduler = build_scheduler()
    pipe = Flux2KleinPipeline(scheduler=scheduler, vae=None, text_encoder=None, tokenizer=None, transformer=None)
    from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu, retrieve_timesteps

    mu = compute_empirical_mu(image_seq_len=(NANO_SIZE // 16) ** 2, num_steps=NANO_STEPS)
    timesteps, _ = retrieve_timesteps(pipe.scheduler, NANO_STEPS, "cpu", sigmas=np.linspace(1.0, 1 / NANO_STEPS, NANO_STEPS), mu=mu)
    assert torch.allclose(sampling_sigmas(), timesteps.float() / 1000)
    assert sampling_sigmas()[-1] > 0.6  # shifted: the last step starts from mostly noise
    drawn = _draw_sigmas(4000, np.random.default_rng(0), sampling_sigmas(), 0.75)
    assert 0 < drawn.min() and drawn.max() <= 1 and (drawn > 0.5).float().mean() > 0.9


def test_latent_statistics_come_from_real_latents():
    vae = build_vae(0).eval()
    set_latent_statistics(vae, split_scenes()[0], np.random.default_rng(0), images=32)
    assert vae.bn.running_mean.shape == (32,)
    assert not torch.allclose(vae.bn.running_mean, torch.zeros(32)) and (vae.bn.running_var > 0).all()


def test_count_weights_shift_the_training_pictures_towards_more_objects():
    train, _ = split_scenes()
    assert scene_chances(train, "1,1,1") is None  # every scene alike: the earlier runs' draws
    chances = scene_chances(train, "1,2,3")
    counts = np.array([scene.count for scene in train])
    weighted = {count: (counts == count).sum() * count for count in (1, 2, 3)}
    assert chances[counts == 3].sum() == pytest.approx(weighted[3] / sum(weighted.values()))
    drawn = _pick(train, 20000, np.random.default_rng(0), chances)
    share_of_threes = sum(scene.count == 3 for scene in drawn) / len(drawn)
    assert share_of_threes == pytest.approx(weighted[3] / sum(weighted.values()), abs=0.02)
    assert share_of_threes > 0.35  # uniform draws give about a quarter


@pytest.mark.parametrize("value", ["1,2", "a,b,c", "1,-1,1", "0,0,0"])
def test_malformed_count_weights_are_refused_before_training(value):
    with pytest.raises(ValueError, match="count_weights"):
        TrainConfig(count_weights=value)


def test_grown_single_blocks_leave_the_output_unchanged_until_trained():
    from flux2_int8.nano.model import build_transformer
    from flux2_int8.nano.train import grow_single_blocks
    from flux2_int8.tiny import random_transformer_inputs

    transformer = build_transformer(seed=0).eval()
    with torch.no_grad():  # a trained model's blocks are not at their zero start
        for parameter in transformer.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    grown = grow_single_blocks(transformer, 2, seed=0).eval()
    assert len(grown.single_transformer_blocks) == len(transformer.single_transformer_blocks) + 2
    assert grown.config.num_single_layers == transformer.config.num_single_layers + 2
    inputs = random_transformer_inputs(dict(transformer.config))
    with torch.no_grad():
        torch.testing.assert_close(grown(**inputs, return_dict=False)[0], transformer(**inputs, return_dict=False)[0], rtol=0, atol=0)
    assert grow_single_blocks(transformer, 0, seed=0) is transformer
    new_block = grown.single_transformer_blocks[-1]
    assert new_block.attn.to_out.weight.abs().sum() == 0 and new_block.attn.to_qkv_mlp_proj.weight.abs().sum() > 0


def test_a_negative_growth_is_refused():
    from flux2_int8.nano.model import build_transformer
    from flux2_int8.nano.train import grow_single_blocks

    with pytest.raises(ValueError, match="grow_single_blocks"):
        grow_single_blocks(build_transformer(seed=0), -1, seed=0)


def test_growth_without_a_resumed_model_is_refused_before_training(tmp_path):
    from flux2_int8.nano.train import train_nano

    with pytest.raises(ValueError, match="resumed"):
        train_nano(TrainConfig(grow_single_blocks=1), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, message", [(["--count-weights", "1,2"], "count_weights"), (["--grow-single-blocks", "2"], "--resume")])
def test_the_script_refuses_bad_options_with_a_usage_message(tmp_path, flags, message):
    command = [sys.executable, str(REPOSITORY / "scripts" / "train_nano.py"), "--out", str(tmp_path / "out"), *flags]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 2 and message in completed.stderr and "Traceback" not in completed.stderr
    assert not (tmp_path / "out").exists()
