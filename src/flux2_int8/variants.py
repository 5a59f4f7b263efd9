"""The four FLUX.2 [klein] variants: architecture, hub ids and sampling defaults.

Distilled and base models of one size share an architecture, so shapes alone tell
the size, never whether a file is distilled; that comes from the name the user
gives (or the file's metadata).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# FLUX.2 [klein]'s scheduler settings. The pipeline computes `mu` per image size and
# passes it in, which the scheduler only accepts (and uses) with dynamic shifting on.
KLEIN_SCHEDULER_CONFIG: dict[str, Any] = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "invert_sigmas": False,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "shift_terminal": None,
    "stochastic_sampling": False,
    "time_shift_type": "exponential",
    "use_beta_sigmas": False,
    "use_dynamic_shifting": True,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}


@dataclass(frozen=True)
class Architecture:
    """The numbers that decide every tensor shape of a klein transformer."""

    name: str
    num_layers: int
    num_single_layers: int
    num_attention_heads: int
    joint_attention_dim: int
    attention_head_dim: int = 128
    in_channels: int = 128
    mlp_ratio: float = 3.0
    timestep_guidance_channels: int = 256

    @property
    def hidden_size(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    def transformer_config(self) -> dict[str, Any]:
        """The diffusers `Flux2Transformer2DModel` config of this architecture."""
        return {
            "_class_name": "Flux2Transformer2DModel",
            "patch_size": 1,
            "in_channels": self.in_channels,
            "out_channels": None,
            "num_layers": self.num_layers,
            "num_single_layers": self.num_single_layers,
            "attention_head_dim": self.attention_head_dim,
            "num_attention_heads": self.num_attention_heads,
            "joint_attention_dim": self.joint_attention_dim,
            "timestep_guidance_channels": self.timestep_guidance_channels,
            "mlp_ratio": self.mlp_ratio,
            "axes_dims_rope": (32, 32, 32, 32),
            "rope_theta": 2000,
            "eps": 1e-6,
            "guidance_embeds": False,
        }


KLEIN_4B = Architecture("klein-4b", num_layers=5, num_single_layers=20, num_attention_heads=24, joint_attention_dim=7680)
KLEIN_9B = Architecture("klein-9b", num_layers=8, num_single_layers=24, num_attention_heads=32, joint_attention_dim=12288)
ARCHITECTURES: tuple[Architecture, ...] = (KLEIN_4B, KLEIN_9B)


@dataclass(frozen=True)
class Variant:
    """A published klein model: its architecture, where it lives, how it samples."""

    name: str
    architecture: Architecture
    hub_id: str
    distilled: bool

    @property
    def default_steps(self) -> int:
        return 4 if self.distilled else 50

    @property
    def default_guidance(self) -> float:
        """Distilled models ignore guidance; base models use CFG at 4.0."""
        return 1.0 if self.distilled else 4.0


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("klein-4b", KLEIN_4B, "black-forest-labs/FLUX.2-klein-4B", distilled=True),
        Variant("klein-9b", KLEIN_9B, "black-forest-labs/FLUX.2-klein-9B", distilled=True),
        Variant("klein-base-4b", KLEIN_4B, "black-forest-labs/FLUX.2-klein-base-4B", distilled=False),
        Variant("klein-base-9b", KLEIN_9B, "black-forest-labs/FLUX.2-klein-base-9B", distilled=False),
    )
}


def get_variant(name: str) -> Variant:
    """Look a variant up by name, case-insensitively; a clear error lists the valid names."""
    from .errors import ConfigError

    key = name.strip().lower()
    if key not in VARIANTS:
        raise ConfigError(f"unknown variant '{name}': expected one of {', '.join(VARIANTS)}")
    return VARIANTS[key]


def architecture_of(config: dict[str, Any]) -> Architecture | None:
    """The published architecture a transformer config matches, or None for anything else."""
    for arch in ARCHITECTURES:
        reference = arch.transformer_config()
        if all(config.get(k) == reference[k] for k in ("num_layers", "num_single_layers", "num_attention_heads", "attention_head_dim", "joint_attention_dim", "in_channels")):
            return arch
    return None
