"""LoRA files written in each tool's own layout, and an independent float64 reference.

A LoRA is drawn once in BFL's module layout (fused q/k/v `qkv`, single-block
`linear1`/`linear2`), which is how kohya and ai-toolkit train FLUX.2, then written:
- diffusers/PEFT: by diffusers' own `save_lora_weights`, with the PEFT config
  (rank, alpha) in the header as diffusers' training scripts store it;
- kohya: `lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight` / `lora_up` / `alpha`;
- ai-toolkit/BFL: `diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight` / `lora_B`.
`expected_updates` says, without diffusers, what each diffusers layer must receive
(q/k/v rows of a fused B, the alpha / rank scale), and `reference_transformer`
computes the INT8 model plus those branches in float64.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from diffusers import Flux2Transformer2DModel
from safetensors.torch import save_file
from torch import nn

QKV = {"img_attn": ("to_q", "to_k", "to_v"), "txt_attn": ("add_q_proj", "add_k_proj", "add_v_proj")}


@dataclass
class DrawnLora:
    """One LoRA in BFL module names: module -> (A [r, in], B [out, r]); alpha per module."""

    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    alpha: float
    rank: int


def bfl_modules(config: dict) -> dict[str, tuple[int, int]]:
    """The BFL linear modules a FLUX.2 LoRA trains, with (in_features, out_features)."""
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    mlp = int(hidden * config["mlp_ratio"])
    modules = {}
    for i in range(config["num_layers"]):
        for stream in ("img", "txt"):
            modules[f"double_blocks.{i}.{stream}_attn.qkv"] = (hidden, 3 * hidden)
            modules[f"double_blocks.{i}.{stream}_attn.proj"] = (hidden, hidden)
            modules[f"double_blocks.{i}.{stream}_mlp.0"] = (hidden, 2 * mlp)
            modules[f"double_blocks.{i}.{stream}_mlp.2"] = (mlp, hidden)
    for i in range(config["num_single_layers"]):
        modules[f"single_blocks.{i}.linear1"] = (hidden, 3 * hidden + 2 * mlp)
        modules[f"single_blocks.{i}.linear2"] = (hidden + mlp, hidden)
    return modules


def draw_lora(config: dict, rank: int = 4, alpha: float = 8.0, seed: int = 0, size: float = 1.0, hidden_override: int | None = None) -> DrawnLora:
    """Random factors for every trainable module (`hidden_override` draws one for another model size)."""
    generator = torch.Generator().manual_seed(seed)
    if hidden_override is not None:
        config = {**config, "num_attention_heads": hidden_override // config["attention_head_dim"]}
    factors = {}
    for module, (fan_in, fan_out) in bfl_modules(config).items():
        a = torch.randn(rank, fan_in, generator=generator) * size / fan_in**0.5
        b = torch.randn(fan_out, rank, generator=generator) * size
        factors[module] = (a, b)
    return DrawnLora(factors, alpha, rank)


def expected_updates(lora: DrawnLora, scale_with_alpha: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """diffusers module -> (A, B, scale), derived here from BFL names without diffusers' converter."""
    scale = lora.alpha / lora.rank if scale_with_alpha else 1.0
    updates = {}
    for module, (a, b) in lora.factors.items():
        for target, rows in diffusers_rows(module, b).items():
            updates[target] = (a, rows, scale)
    return updates


def diffusers_rows(module: str, rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The diffusers layers a BFL module's output rows go to: a fused qkv's thirds to q, k, v; the rest renamed."""
    parts = module.split(".")
    if parts[0] == "single_blocks":
        target = {"linear1": "attn.to_qkv_mlp_proj", "linear2": "attn.to_out"}[parts[2]]
        return {f"single_transformer_blocks.{parts[1]}.{target}": rows}
    block, kind = f"transformer_blocks.{parts[1]}", ".".join(parts[2:])
    if kind.endswith("attn.qkv"):
        return {f"{block}.attn.{name}": third for name, third in zip(QKV[parts[2]], rows.chunk(3))}
    target = {
        "img_attn.proj": "attn.to_out.0",
        "txt_attn.proj": "attn.to_add_out",
        "img_mlp.0": "ff.linear_in",
        "img_mlp.2": "ff.linear_out",
        "txt_mlp.0": "ff_context.linear_in",
        "txt_mlp.2": "ff_context.linear_out",
    }[kind]
    return {f"{block}.{target}": rows}


def merged_then_requantized(state: dict, updates: dict, lora_scale: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Independently: dequantize in float64, add scale * B @ A, re-quantize with the recipe's per-channel rule."""
    fused = {}
    for module, (a, b, scale) in updates.items():
        weight = state[f"{module}.weight"].double() * state[f"{module}.weight_scale"].double().reshape(-1, 1)
        merged = weight + lora_scale * scale * (b.double() @ a.double())
        amax = merged.abs().amax(dim=1)
        weight_scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax)).float()  # written out: independent of the package
        fused[module] = (torch.clamp(torch.round(merged.float() / weight_scale[:, None]), -127, 127).to(torch.int8), weight_scale)
    return fused


def write_ai_toolkit(path, lora: DrawnLora) -> None:
    """ai-toolkit / BFL keys: `diffusion_model.<bfl module>.lora_A.weight` (alpha folded in, as it saves)."""
    tensors = {}
    for module, (a, b) in lora.factors.items():
        tensors[f"diffusion_model.{module}.lora_A.weight"] = a.contiguous()
        tensors[f"diffusion_model.{module}.lora_B.weight"] = b.contiguous()
    save_file(tensors, str(path), metadata={"format": "pt", "software": "ai-toolkit"})


def write_kohya(path, lora: DrawnLora) -> None:
    """kohya sd-scripts keys: `lora_unet_<bfl module with _>.lora_down.weight` / `lora_up.weight` / `alpha`."""
    tensors = {}
    for module, (a, b) in lora.factors.items():
        name = "lora_unet_" + module.replace(".", "_")
        tensors[f"{name}.lora_down.weight"] = a.contiguous()
        tensors[f"{name}.lora_up.weight"] = b.contiguous()
        tensors[f"{name}.alpha"] = torch.tensor(lora.alpha)
    save_file(tensors, str(path), metadata={"ss_network_module": "networks.lora_flux", "ss_network_dim": str(lora.rank), "ss_network_alpha": str(lora.alpha)})


def write_diffusers(folder, lora: DrawnLora, weight_name: str = "pytorch_lora_weights.safetensors"):
    """diffusers' own writer, with the PEFT config (rank, alpha) its training scripts store."""
    from diffusers import Flux2KleinPipeline
    from peft import LoraConfig

    updates = expected_updates(lora, scale_with_alpha=True)
    layers = {}
    for module, (a, b, _) in updates.items():
        layers[f"{module}.lora_A.weight"] = a.clone()  # diffusers trains one A per layer, never shared
        layers[f"{module}.lora_B.weight"] = b.contiguous()
    config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, target_modules=sorted(updates), init_lora_weights="gaussian").to_dict()
    config = json.loads(json.dumps(config, default=lambda value: sorted(value) if isinstance(value, set) else str(value)))
    Flux2KleinPipeline.save_lora_weights(folder, transformer_lora_layers=layers, weight_name=weight_name, transformer_lora_adapter_metadata=config)
    return folder / weight_name


WRITERS = {"diffusers": (write_diffusers, True), "kohya": (write_kohya, True), "ai-toolkit": (write_ai_toolkit, False)}


def write_lora(layout: str, tmp_path, lora: DrawnLora, name: str = "lora"):
    """Write `lora` in `layout`; returns (file, the scale convention its tool applies)."""
    writer, scale_with_alpha = WRITERS[layout]
    if layout == "diffusers":
        folder = tmp_path / name
        folder.mkdir()
        return writer(folder, lora), scale_with_alpha
    path = tmp_path / f"{name}.safetensors"
    writer(path, lora)
    return path, scale_with_alpha


class ReferenceLinear(nn.Module):
    """float64 W8A8 by dequantizing (input rounded to its step), plus float64 LoRA branches on the raw input."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, step: float | None, fp8_input: bool = False):
        super().__init__()
        self.weight, self.bias, self.step, self.fp8_input = weight.double(), None if bias is None else bias.double(), step, fp8_input
        self.branches: list[tuple[torch.Tensor, torch.Tensor, float]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        quantized = x
        if self.step is not None and self.fp8_input:
            # Rounded to float8 from float32, as the FP8 layer defines it: a float64 x / step cast to
            # float8 rounds differently from float32 right at float8's (coarse) rounding boundaries.
            quantized = torch.clamp(x.float() / torch.tensor(self.step, dtype=torch.float32), -448, 448).to(torch.float8_e4m3fn).double() * self.step
        elif self.step is not None:
            quantized = torch.clamp(torch.round(x / self.step), -128, 127) * self.step
        y = quantized @ self.weight.t()
        if self.bias is not None:
            y = y + self.bias
        for a, b, scale in self.branches:
            y = y + scale * ((x @ a.double().t()) @ b.double().t())
        return y


def reference_transformer(config: dict, state: dict[str, torch.Tensor], adapters: list[tuple[dict, float]]) -> nn.Module:
    """The quantized state dict as float64 `ReferenceLinear`s, each adapter's updates added as branches times its weight."""
    model = Flux2Transformer2DModel.from_config(config).double().eval()
    model.load_state_dict({k: v.double() for k, v in state.items() if not k.endswith(("_scale",)) and v.dtype not in (torch.int8, torch.float8_e4m3fn)}, strict=False)
    for key, tensor in state.items():
        if tensor.dtype not in (torch.int8, torch.float8_e4m3fn):
            continue
        module_name = key[: -len(".weight")]
        weight = tensor.double() * state[f"{module_name}.weight_scale"].double().reshape(-1, 1)
        step = state.get(f"{module_name}.input_scale")
        original = model.get_submodule(module_name)
        layer = ReferenceLinear(weight, original.bias, None if step is None else float(step), fp8_input=tensor.dtype == torch.float8_e4m3fn)
        parent, _, child = module_name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer)
    for updates, weight in adapters:
        for module_name, (a, b, scale) in updates.items():
            layer = model.get_submodule(module_name)
            if not isinstance(layer, ReferenceLinear):  # a layer the checkpoint keeps in float
                parent, _, child = module_name.rpartition(".")
                layer = ReferenceLinear(layer.weight.detach(), layer.bias, None)
                setattr(model.get_submodule(parent), child, layer)
            layer.branches.append((a, b, scale * weight))
    return model


def run(model: nn.Module, inputs: dict, dtype: torch.dtype) -> torch.Tensor:
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    with torch.no_grad():
        return model(**cast, return_dict=False)[0]
