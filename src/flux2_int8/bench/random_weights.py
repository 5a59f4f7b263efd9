"""Full-size klein models with random weights, built on meta and filled on the device.

Speed and memory do not depend on the values of the weights, only on their shapes
and dtypes, so benchmarks need no download. A 9B transformer in BF16 is 18 GB: it
is never materialised on the host. The skeleton is built on the meta device (no
memory), quantized layers are swapped in there, and each tensor is then created
directly on the target device. INT8 and FP8 layers are quantized one at a time on
the device from a float32 draw of that layer alone, so the transient float copy is
one layer (at most 36864 x 4096 x 4 bytes = 0.6 GB), never the model.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel
from torch import nn
from transformers import Qwen3Config, Qwen3ForCausalLM

from ..errors import ConfigError
from ..formats.keys import QKV_GROUPS
from ..int8.kernels import FP8_MAX
from ..int8.linear import Fp8Linear, Int8Linear
from ..loading.skeleton import build_empty_model
from ..int8.weights import quantize_weight, quantize_weight_fp8, weight_scale_per_channel
from ..quantization.recipe import Recipe, input_scale_from_amax
from ..variants import Architecture

FORMATS = ("bf16", "int8", "fp8")
_LAYER_CLASSES: dict[str, type[Int8Linear] | type[Fp8Linear]] = {"int8": Int8Linear, "fp8": Fp8Linear}
# Rows of standard-normal activation drawn to set a plausible static input_scale.
_ACTIVATION_SAMPLE_ROWS = 64

# The Qwen3 text encoders of klein, keyed by hidden size (joint_attention_dim / 3).
# Numbers from the published Qwen/Qwen3-4B and Qwen/Qwen3-8B config.json files.
_QWEN3_COMMON: dict[str, Any] = {
    "vocab_size": 151936,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 40960,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
}
_QWEN3_BY_HIDDEN: dict[int, dict[str, Any]] = {
    2560: {"hidden_size": 2560, "intermediate_size": 9728, "tie_word_embeddings": True},  # Qwen3-4B (klein 4B)
    4096: {"hidden_size": 4096, "intermediate_size": 12288, "tie_word_embeddings": False},  # Qwen3-8B (klein 9B)
}


def check_format(name: str) -> str:
    if name not in FORMATS:
        raise ConfigError(f"unknown weight format '{name}': expected one of {', '.join(FORMATS)}")
    return name


def empty_transformer(config: dict[str, Any], fmt: str, dtype: torch.dtype = torch.bfloat16, recipe: Recipe = Recipe(), activations: str = "static") -> Flux2Transformer2DModel:
    """The transformer skeleton on meta in `fmt`: the recipe's linears become Int8Linear/Fp8Linear
    (INT8 ones with static or dynamic activations).

    Costs no memory; `planned_bytes` of the result is what the device will hold.
    """
    model = build_empty_model(config)
    nn.Module.to(model, dtype)  # on meta: changes dtypes, allocates nothing (skips diffusers' cast warning)
    if check_format(fmt) == "bf16":
        return model
    for name in quantized_linear_names(model, recipe):
        original = model.get_submodule(name)
        options = {"activations": activations} if fmt == "int8" else {}
        layer = _LAYER_CLASSES[fmt](original.in_features, original.out_features, bias=original.bias is not None, device="meta", **options)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer)
    return model


def quantized_linear_names(model: nn.Module, recipe: Recipe = Recipe()) -> list[str]:
    """The `nn.Linear` modules the recipe quantizes (all block linears; not embedders, final layer, modulation)."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear) and not recipe.keeps(name)]


def random_transformer(
    config: dict[str, Any] | Architecture,
    fmt: str,
    device: torch.device | str,
    dtype: torch.dtype = torch.bfloat16,
    recipe: Recipe = Recipe(),
    seed: int = 0,
    activations: str = "static",
) -> Flux2Transformer2DModel:
    """A transformer of `config` (or an Architecture) with random weights in `fmt`, built on `device`."""
    if isinstance(config, Architecture):
        config = config.transformer_config()
    model = empty_transformer(config, fmt, dtype, recipe, activations)
    materialize_random_(model, device, dtype, seed)
    share_qkv_input_scales_(model)
    return model.eval().requires_grad_(False)


def share_qkv_input_scales_(model: nn.Module) -> None:
    """Give the q, k and v layers of each attention one `input_scale`, the largest of the three.

    The three read the same input, so calibration gives them one range (and BFL files store
    one scale for the fused q/k/v); independent random draws would not, and
    `fuse_qkv_projections` refuses layers whose input scales differ.
    """
    for module in model.modules():
        for separate, _ in QKV_GROUPS:
            layers = [getattr(module, name, None) for name in separate]
            if all(isinstance(layer, Int8Linear | Fp8Linear) and layer.input_scale is not None for layer in layers):
                shared = torch.stack([layer.input_scale for layer in layers]).amax()
                for layer in layers:
                    layer.input_scale = shared.clone()


def planned_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer (tied tensors once); works on meta."""
    seen: dict[int, int] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        seen[id(tensor)] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


def materialize_random_(model: nn.Module, device: torch.device | str, dtype: torch.dtype, seed: int = 0) -> nn.Module:
    """Replace every meta parameter of `model` with random values made on `device`, in place.

    Quantized layers get int8/fp8 weights with float32 scales, quantized there from
    a float32 draw of that layer alone; float weights are N(0, 1/fan_in) in `dtype`,
    norm scales are ones, biases small. Tied parameters stay tied. Buffers must be
    real already (build with `accelerate.init_empty_weights(include_buffers=False)`);
    they are moved to `device`.
    """
    device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    made: dict[int, nn.Parameter] = {}
    for name, module in model.named_modules():
        if isinstance(module, Int8Linear | Fp8Linear) and module.weight.is_meta:
            weight = _normal((module.out_features, module.in_features), torch.float32, device, generator)
            amax = random_activation_amax(module.in_features, device, generator)
            (fill_int8_linear_ if isinstance(module, Int8Linear) else fill_fp8_linear_)(module, weight, amax)
            del weight
        for key, param in list(module._parameters.items()):
            if param is not None and param.is_meta:
                if id(param) not in made:
                    made[id(param)] = nn.Parameter(_random_float(key, tuple(param.shape), dtype, device, generator), requires_grad=False)
                module._parameters[key] = made[id(param)]
        for key, buffer in module._buffers.items():
            if buffer is not None and buffer.is_meta:
                raise ValueError(f"buffer '{name}.{key}' is on meta: its values cannot be made up; build the model with real buffers")
    return model.to(device)


def random_activation_amax(in_features: int, device: torch.device | str, generator: torch.Generator) -> float:
    """max |x| of a standard-normal activation sample [64, K]: a plausible static range (about 4-5)."""
    return float(_normal((_ACTIVATION_SAMPLE_ROWS, in_features), torch.float32, device, generator, std=1.0).abs().amax())


def fill_int8_linear_(layer: Int8Linear, weight: torch.Tensor, activation_amax: float) -> None:
    """Quantize a float weight [N, K] into `layer` on its device: per-channel scales, static input scale."""
    weight_scale = weight_scale_per_channel(weight)
    layer.weight = nn.Parameter(quantize_weight(weight, weight_scale), requires_grad=False)
    layer.weight_scale = weight_scale
    if layer.input_scale is not None:  # dynamic layers compute theirs per token
        layer.input_scale = input_scale_from_amax(activation_amax).to(weight.device)


def fill_fp8_linear_(layer: Fp8Linear, weight: torch.Tensor, activation_amax: float) -> None:
    """BFL's FP8 layout from a float weight [N, K]: float8_e4m3fn weight, 0-d float32 scales.

    The weight scale is stored as [N] (one value repeated) because that is the shape
    `Fp8Linear` holds after loading a 0-d scale from a file.
    """
    fp8_weight, scale = quantize_weight_fp8(weight)
    layer.weight = nn.Parameter(fp8_weight, requires_grad=False)
    layer.weight_scale = scale.reshape(1).expand(layer.out_features).clone().float()
    layer.input_scale = torch.tensor(activation_amax / FP8_MAX, dtype=torch.float32, device=weight.device)


def _normal(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str, generator: torch.Generator, std: float | None = None) -> torch.Tensor:
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
    scale = std if std is not None else 1.0 / math.sqrt(fan_in)
    return torch.empty(shape, dtype=dtype, device=device).normal_(0.0, scale, generator=generator)


def _random_float(name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """Weights N(0, 1/fan_in); 1-D weights (norm scales) ones; biases and other vectors N(0, 0.02)."""
    if len(shape) >= 2:
        return _normal(shape, dtype, device, generator)
    if name == "weight":
        return torch.ones(shape, dtype=dtype, device=device)
    return _normal(shape, dtype, device, generator, std=0.02)


def qwen3_config_for(architecture: Architecture) -> Qwen3Config:
    """The Qwen3 text encoder config a klein architecture is fed by (3 hidden states concatenated)."""
    hidden = architecture.joint_attention_dim // 3
    if hidden not in _QWEN3_BY_HIDDEN:
        raise ConfigError(f"no published Qwen3 text encoder has hidden size {hidden} (joint_attention_dim {architecture.joint_attention_dim} / 3): expected one of {sorted(_QWEN3_BY_HIDDEN)}")
    return Qwen3Config(**_QWEN3_COMMON, **_QWEN3_BY_HIDDEN[hidden])


def random_text_encoder(config: Qwen3Config, device: torch.device | str, dtype: torch.dtype = torch.bfloat16, seed: int = 1) -> Qwen3ForCausalLM:
    """A Qwen3 causal LM with random weights made on `device` (its rotary buffers computed on the host)."""
    with init_empty_weights(include_buffers=False):
        model = Qwen3ForCausalLM(config)
    materialize_random_(model, device, dtype, seed)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.eval().requires_grad_(False)


def random_vae(device: torch.device | str, dtype: torch.dtype = torch.bfloat16, seed: int = 2, config: dict[str, Any] | None = None) -> AutoencoderKLFlux2:
    """The FLUX.2 VAE (diffusers' defaults are the published config) with random weights on `device`."""
    with init_empty_weights(include_buffers=False):
        vae = AutoencoderKLFlux2(**(config or {}))
    materialize_random_(vae, device, dtype, seed)
    return vae.eval().requires_grad_(False)
