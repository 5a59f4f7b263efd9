"""Train nano on CPU (or GPU): the VAE first, then the transformer, on pictures drawn on the fly.

The transformer is trained exactly as `Flux2KleinPipeline` samples it, because any
mismatch shows up as garbage only at the end: latents are normalised with the
VAE's batch-norm statistics (set here from real latents, not left at 0/1),
position ids come from the pipeline's own helpers, the model's timestep is the
noise level sigma (the pipeline passes t/1000), the target is the flow velocity
noise - x0, and sigmas are drawn where the pipeline samples: mostly at its four
shifted 128x128 sigmas, the rest from the same shifted distribution.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from diffusers import AutoencoderKLFlux2, Flux2KleinPipeline, Flux2Transformer2DModel
from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

from ..errors import ConfigError
from ..outputs import claim_folder, input_files, staged_folder
from . import model
from .draw import draw_batch
from .grammar import Scene, all_scenes, split_scenes


class TrainingOptionError(ConfigError, ValueError):
    """A training option no run can use; a `ValueError` too, as the dataclass raised before."""


@dataclass
class TrainConfig:
    """What one training run does; the defaults are the run that made the shipped weights."""

    seed: int = 0
    vae_steps: int = 4000
    vae_batch: int = 16
    vae_crop: int = 64  # the VAE is convolutional: 64 px crops of 128 px pictures train it 4x cheaper
    vae_lr: float = 1e-3
    vae_minutes: float = 14.0
    transformer_steps: int = 12000
    transformer_batch: int = 32
    transformer_lr: float = 1e-3
    transformer_minutes: float = 58.0
    kl_weight: float = 1e-3
    # Encoding pictures costs as much as a transformer step on CPU, so a pool of encoded
    # pictures is reused (with fresh noise and sigma each time) and partly renewed each step.
    latent_pool: int = 2048
    pool_refresh: int = 8  # new pictures per step
    ema_decay: float = 0.999
    pipeline_sigma_fraction: float = 0.75  # share of samples at the pipeline's own four sigmas
    # Relative chance of a transformer training scene by its number of objects (1,2,3). "1,1,1"
    # draws every scene alike, so single objects ("a" and "one") are half of all pictures;
    # "1,2,3" gives three objects, the hardest count, 43 % of the pictures instead of 25 %.
    count_weights: str = "1,1,1"
    # With --resume: append this many single-stream blocks to the resumed transformer, each an
    # identity at first (zero output projection), so training goes on from the same function
    # with more depth.
    grow_single_blocks: int = 0
    checkpoint_minutes: float = 10.0
    log_every: int = 25

    def __post_init__(self) -> None:
        """Refuse a value no run can use (a batch of 0, a NaN rate) before any training, naming the option and its range."""
        for name, (low, high, low_open) in _RANGES.items():
            value = getattr(self, name)
            finite = not isinstance(value, float) or math.isfinite(value)
            if not finite or value < low or (low_open and value == low) or (high is not None and value > high):
                bounds = f"{'(' if low_open else '['}{low}, {'inf)' if high is None else f'{high}]'}"
                raise TrainingOptionError(f"--{name.replace('_', '-')} {value}: must be a finite number in {bounds}")
        if self.ema_decay >= 1:
            raise TrainingOptionError(f"--ema-decay {self.ema_decay}: must be below 1 (1 would never move the average)")
        if self.vae_crop % 8:
            raise TrainingOptionError(f"--vae-crop {self.vae_crop}: must be a multiple of 8 (the VAE downsamples 8x)")
        if self.pool_refresh > self.latent_pool:
            raise TrainingOptionError(f"--pool-refresh {self.pool_refresh}: at most --latent-pool ({self.latent_pool})")
        try:
            scene_chances(all_scenes(), self.count_weights)  # refuse a malformed value before any training
        except ValueError as error:
            raise TrainingOptionError(f"--count-weights: {error}") from None

    def check_resume(self, resume: str | Path | None) -> None:
        """Refuse what needs a resumed run without one, and a resume folder that is not a pipeline."""
        if self.grow_single_blocks and resume is None:
            raise TrainingOptionError("--grow-single-blocks adds blocks to the transformer of a resumed run (--resume); from scratch, set num_single_layers in nano.model")
        if resume is not None:
            model.pipeline_entries(Path(resume).expanduser())


# name -> (lowest, highest or None, lowest excluded): what each TrainConfig number may be.
_RANGES: dict[str, tuple[float, float | None, bool]] = {
    "seed": (0, 2**63 - 1, False),
    "vae_steps": (1, None, False),
    "vae_batch": (1, None, False),
    "vae_crop": (8, model.NANO_SIZE, False),
    "vae_lr": (0, None, True),
    "vae_minutes": (0, None, True),
    "transformer_steps": (1, None, False),
    "transformer_batch": (1, None, False),
    "transformer_lr": (0, None, True),
    "transformer_minutes": (0, None, True),
    "kl_weight": (0, None, False),
    "latent_pool": (1, None, False),
    "pool_refresh": (0, None, False),
    "ema_decay": (0, 1, False),
    "pipeline_sigma_fraction": (0, 1, False),
    "grow_single_blocks": (0, None, False),
    "checkpoint_minutes": (0, None, True),
    "log_every": (1, None, False),
}


Log = Callable[[dict[str, Any]], None]


def train_nano(config: TrainConfig, out: str | Path, log: Log = print, resume: str | Path | None = None, overwrite: bool = False) -> Path:
    """Train nano and write it to `out` as a diffusers folder (bf16); return `out`.

    Every `checkpoint_minutes` of transformer training the current weights are
    written to `out` too, so a run stopped early still leaves a usable model.
    With `resume` (a folder this function wrote) the VAE, text encoder and
    tokenizer are taken from there and the transformer continues from its
    weights; give such a run another `seed`, so it draws new pictures. `out` is
    claimed before any training (`flux2_int8.outputs`): it may not be or hold the
    resumed folder, and must be new, empty, made by flux2-int8, or `overwrite` given.
    """
    config.check_resume(resume)
    out = claim_folder(out, input_files(resume), overwrite)
    torch.set_flush_denormal(True)  # denormal floats slow CPU training several-fold
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train_scenes, _ = split_scenes()
    if resume is None:
        tokenizer = model.build_tokenizer()
        text_encoder = model.build_text_encoder(config.seed)
        vae = train_vae(config, train_scenes, rng, log)
        set_latent_statistics(vae, train_scenes, rng)
        transformer = model.build_transformer(config.seed + 1)
    else:
        trained = Flux2KleinPipeline.from_pretrained(resume, dtype=torch.float32, local_files_only=True)
        tokenizer, text_encoder, vae, transformer = trained.tokenizer, trained.text_encoder, trained.vae, trained.transformer
        text_encoder.eval().requires_grad_(False)
        vae.eval().requires_grad_(False)
        transformer = grow_single_blocks(transformer, config.grow_single_blocks, config.seed)
    parts = (vae, text_encoder, tokenizer)
    ema = train_transformer(config, transformer, parts, train_scenes, rng, out, log)
    export(ema, parts, out)
    return out


def train_vae(config: TrainConfig, scenes: list[Scene], rng: np.random.Generator, log: Log) -> AutoencoderKLFlux2:
    """Reconstruction (MSE) plus a light KL term, which keeps the decoder robust to latent noise."""
    vae = model.build_vae(config.seed).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    clock = _Clock(config.vae_steps, config.vae_minutes)
    while not clock.done():
        _set_lr(optimizer, config.vae_lr, clock.progress(), warmup=0.02)
        images = _crop(draw_batch(_pick(scenes, config.vae_batch, rng), rng), config.vae_crop, rng)
        posterior = vae.encode(images).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        mse = torch.nn.functional.mse_loss(reconstruction, images)
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        loss = mse + config.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        clock.tick()
        if clock.step % config.log_every == 0 or clock.done():
            log({"phase": "vae", "step": clock.step, "loss": loss.item(), "mse": mse.item(), "s": clock.elapsed()})
    vae.eval().requires_grad_(False)
    return model._round_to_bf16(vae)


@torch.no_grad()
def set_latent_statistics(vae: AutoencoderKLFlux2, scenes: list[Scene], rng: np.random.Generator, images: int = 256) -> None:
    """Set `vae.bn`'s running mean/variance from real patchified latents.

    The pipeline divides latents by these statistics before the transformer and
    multiplies them back before decoding; left at 0/1 the transformer would see
    latents of the wrong scale.
    """
    latents = torch.cat([_patchified_latents(vae, draw_batch(_pick(scenes, 32, rng), rng)) for _ in range(images // 32)])
    vae.bn.running_mean.copy_(latents.mean(dim=(0, 2, 3)))
    vae.bn.running_var.copy_(latents.var(dim=(0, 2, 3)))
    model._round_to_bf16(vae.bn)


def train_transformer(
    config: TrainConfig,
    transformer: Flux2Transformer2DModel,
    parts: tuple[Any, ...],
    scenes: list[Scene],
    rng: np.random.Generator,
    out: Path,
    log: Log,
) -> Flux2Transformer2DModel:
    """Flow matching at the pipeline's conventions; returns the EMA of the weights."""
    vae, text_encoder, tokenizer = parts
    embeds = prompt_embeddings(text_encoder, tokenizer)
    ema = copy.deepcopy(transformer).eval().requires_grad_(False)
    transformer.train()
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=config.transformer_lr, weight_decay=0.01)
    pipeline_sigmas = sampling_sigmas()
    pool = LatentPool(vae, scenes, rng, config.latent_pool, scene_chances(scenes, config.count_weights))
    clock = _Clock(config.transformer_steps, config.transformer_minutes)
    last_checkpoint = time.monotonic()
    while not clock.done():
        _set_lr(optimizer, config.transformer_lr, clock.progress(), warmup=0.01)
        batch, latents = pool.draw(config.transformer_batch, config.pool_refresh)
        loss = flow_matching_loss(transformer, latents, [embeds[scene.prompt] for scene in batch], rng, pipeline_sigmas, config.pipeline_sigma_fraction)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
        optimizer.step()
        _update_ema(ema, transformer, min(config.ema_decay, (1 + clock.step) / (10 + clock.step)))
        clock.tick()
        if clock.step % config.log_every == 0 or clock.done():
            log({"phase": "transformer", "step": clock.step, "loss": loss.item(), "s": clock.elapsed()})
        if time.monotonic() - last_checkpoint > config.checkpoint_minutes * 60:
            export(ema, parts, out)
            log({"phase": "checkpoint", "step": clock.step, "s": clock.elapsed(), "path": str(out)})
            last_checkpoint = time.monotonic()
    return ema


def grow_single_blocks(transformer: Flux2Transformer2DModel, blocks: int, seed: int) -> Flux2Transformer2DModel:
    """`transformer` with `blocks` more single-stream blocks after its own, computing the same function.

    A new block adds `gate * to_out(...)` to the residual stream; with `to_out` zeroed it adds
    nothing, while its other weights start random (seeded), so gradients reach them as soon as
    `to_out` moves. The usual zero-initialised residual branch, as ControlNet's zero convolutions.
    """
    if blocks == 0:
        return transformer
    if blocks < 0:
        raise ValueError(f"grow_single_blocks must be 0 or more; got {blocks}")
    config = dict(transformer.config)
    config["num_single_layers"] += blocks
    with torch.random.fork_rng():
        torch.manual_seed(seed + 2)
        grown = Flux2Transformer2DModel.from_config(config)
    missing, unexpected = grown.load_state_dict(transformer.state_dict(), strict=False)
    assert not unexpected and all(key.startswith("single_transformer_blocks.") for key in missing), (missing, unexpected)
    with torch.no_grad():
        for block in grown.single_transformer_blocks[-blocks:]:
            block.attn.to_out.weight.zero_()
            if block.attn.to_out.bias is not None:
                block.attn.to_out.bias.zero_()
    return grown.to(next(transformer.parameters()).dtype)


class LatentPool:
    """Encoded training pictures, reused: `draw` renews `refresh` random entries, then samples a batch.

    With `size` 0 every batch is drawn and encoded afresh.
    """

    def __init__(
        self, vae: AutoencoderKLFlux2, scenes: list[Scene], rng: np.random.Generator, size: int, chances: np.ndarray | None = None
    ) -> None:
        self.vae, self.scenes, self.rng, self.chances = vae, scenes, rng, chances
        self.pool_scenes = _pick(scenes, size, rng, chances)
        self.latents = torch.cat([self.encode(self.pool_scenes[i : i + 64]) for i in range(0, size, 64)]) if size else None

    @torch.no_grad()
    def encode(self, scenes: list[Scene]) -> torch.Tensor:
        """(B, 32, 8, 8) normalised, patchified latents: what the pipeline's transformer sees at 128 px."""
        return _normalise(self.vae, _patchified_latents(self.vae, draw_batch(scenes, self.rng)))

    def draw(self, batch: int, refresh: int) -> tuple[list[Scene], torch.Tensor]:
        if self.latents is None:
            scenes = _pick(self.scenes, batch, self.rng, self.chances)
            return scenes, self.encode(scenes)
        slots = self.rng.choice(len(self.pool_scenes), size=refresh, replace=False)
        fresh = _pick(self.scenes, refresh, self.rng, self.chances)
        self.latents[slots] = self.encode(fresh)
        for slot, scene in zip(slots, fresh):
            self.pool_scenes[slot] = scene
        chosen = self.rng.integers(0, len(self.pool_scenes), size=batch)
        return [self.pool_scenes[i] for i in chosen], self.latents[chosen]


def flow_matching_loss(
    transformer: Flux2Transformer2DModel,
    latents: torch.Tensor,
    prompt_embeds: list[torch.Tensor],
    rng: np.random.Generator,
    pipeline_sigmas: torch.Tensor,
    pipeline_sigma_fraction: float,
) -> torch.Tensor:
    """MSE between the predicted and the true velocity noise - x0 at x_t = (1 - sigma) x0 + sigma noise.

    `latents` are (B, 32, 8, 8) normalised patchified latents, `prompt_embeds` B (32, 96) text features.
    """
    batch = latents.shape[0]
    image_ids = Flux2KleinPipeline._prepare_latent_ids(latents)
    x0 = Flux2KleinPipeline._pack_latents(latents)  # (B, 64, 32) at 128x128
    prompt_embeds = torch.stack(prompt_embeds)
    text_ids = Flux2KleinPipeline._prepare_text_ids(prompt_embeds)
    sigma = _draw_sigmas(batch, rng, pipeline_sigmas, pipeline_sigma_fraction)
    noise = torch.from_numpy(rng.standard_normal(x0.shape, dtype=np.float32))
    noisy = (1 - sigma.view(-1, 1, 1)) * x0 + sigma.view(-1, 1, 1) * noise
    velocity = transformer(
        hidden_states=noisy,
        timestep=sigma,
        guidance=None,
        encoder_hidden_states=prompt_embeds,
        txt_ids=text_ids,
        img_ids=image_ids,
        return_dict=False,
    )[0]
    return torch.nn.functional.mse_loss(velocity, noise - x0)


def sampling_sigmas(steps: int = model.NANO_STEPS, size: int = model.NANO_SIZE) -> torch.Tensor:
    """The sigmas `Flux2KleinPipeline` steps through at this size and step count (shifted by mu)."""
    scheduler = model.build_scheduler()
    image_seq_len = (size // 16) ** 2  # 8x VAE, then 2x2 patches
    mu = compute_empirical_mu(image_seq_len=image_seq_len, num_steps=steps)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    return scheduler.sigmas[:-1].float()


def prompt_embeddings(text_encoder: Any, tokenizer: Any) -> dict[str, torch.Tensor]:
    """Every grammar prompt's (32, 96) text features, computed once: the encoder is frozen."""
    prompts = [scene.prompt for scene in all_scenes()]
    with torch.no_grad():
        features = Flux2KleinPipeline._get_qwen3_prompt_embeds(
            text_encoder, tokenizer, prompts, dtype=torch.float32, max_sequence_length=model.NANO_MAX_SEQUENCE_LENGTH
        )
    return dict(zip(prompts, features))


def export(transformer: Flux2Transformer2DModel, parts: tuple[Any, ...], out: Path) -> None:
    """Write the pipeline to `out` via a temporary folder beside it, moved in entry by entry: no entry is half-written."""
    vae, text_encoder, tokenizer = parts
    pipeline = model.assemble_pipeline(
        copy.deepcopy(transformer), copy.deepcopy(vae), copy.deepcopy(text_encoder), tokenizer
    )
    with staged_folder(out) as staging:
        model.save_pipeline(pipeline, staging)


def _patchified_latents(vae: AutoencoderKLFlux2, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) pixels -> (B, 4C, H/16, W/16) posterior means, patchified as the pipeline does."""
    return Flux2KleinPipeline._patchify_latents(vae.encode(images).latent_dist.mode())


def _normalise(vae: AutoencoderKLFlux2, latents: torch.Tensor) -> torch.Tensor:
    mean = vae.bn.running_mean.view(1, -1, 1, 1)
    std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
    return (latents - mean) / std


def _draw_sigmas(batch: int, rng: np.random.Generator, pipeline_sigmas: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mostly the pipeline's own sigmas; the rest shifted-uniform like them, so other step counts work too."""
    mu = compute_empirical_mu(image_seq_len=(model.NANO_SIZE // 16) ** 2, num_steps=model.NANO_STEPS)
    uniform = rng.uniform(1e-3, 1.0, size=batch)
    shifted = math.exp(mu) / (math.exp(mu) + (1 / uniform - 1))
    exact = pipeline_sigmas.numpy()[rng.integers(0, len(pipeline_sigmas), size=batch)]
    return torch.from_numpy(np.where(rng.uniform(size=batch) < fraction, exact, shifted)).float()


def _crop(images: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    top, left = (int(v) for v in rng.integers(0, images.shape[-1] - size + 1, size=2))
    return images[:, :, top : top + size, left : left + size]


def scene_chances(scenes: list[Scene], count_weights: str) -> np.ndarray | None:
    """Each scene's probability under `count_weights` ("w1,w2,w3" by object count); None when all alike."""
    try:
        weights = [float(part) for part in count_weights.split(",")]
    except ValueError:
        weights = []
    if len(weights) != 3 or min(weights) < 0 or sum(weights) == 0:
        raise ValueError(f"count_weights must be three non-negative numbers for 1, 2 and 3 objects, like '1,2,3'; got {count_weights!r}")
    if len(set(weights)) == 1:
        return None
    chances = np.array([weights[scene.count - 1] for scene in scenes], dtype=np.float64)
    return chances / chances.sum()


def _pick(scenes: list[Scene], count: int, rng: np.random.Generator, chances: np.ndarray | None = None) -> list[Scene]:
    # Uniform draws keep rng.integers, so runs without count weights repeat the earlier runs' streams.
    indices = rng.integers(0, len(scenes), size=count) if chances is None else rng.choice(len(scenes), size=count, p=chances)
    return [scenes[i] for i in indices]


@torch.no_grad()
def _update_ema(ema: torch.nn.Module, current: torch.nn.Module, decay: float) -> None:
    for average, value in zip(ema.parameters(), current.parameters()):
        average.lerp_(value, 1 - decay)


def _set_lr(optimizer: torch.optim.Optimizer, peak: float, progress: float, warmup: float) -> None:
    """Linear warm-up, then cosine decay to a tenth of the peak over the run's progress."""
    if progress < warmup:
        scale = progress / warmup
    else:
        scale = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup)))
    for group in optimizer.param_groups:
        group["lr"] = peak * max(scale, 0.01)


class _Clock:
    """Counts steps against a step budget and a wall-clock budget, whichever ends first.

    `progress` drives the learning-rate schedule, so a run cut short by its time
    limit still decays its learning rate to the end.
    """

    def __init__(self, steps: int, minutes: float) -> None:
        self.steps, self.seconds, self.step = steps, minutes * 60, 0
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return round(time.monotonic() - self.start, 1)

    def progress(self) -> float:
        return min(1.0, max(self.step / self.steps, self.elapsed() / self.seconds))

    def tick(self) -> None:
        self.step += 1

    def done(self) -> bool:
        return self.step >= self.steps or self.elapsed() >= self.seconds


def config_json(config: TrainConfig) -> str:
    return json.dumps(asdict(config))
