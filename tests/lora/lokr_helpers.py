"""LoKr files written as the tools that make FLUX.2 [klein] LoKrs write them, and the dense update each layer must get.

- ai-toolkit (the layout of the klein LoKrs people share): BFL module names, fused q/k/v,
  `diffusion_model.double_blocks.0.img_attn.qkv.lokr_w1` [a, b] and `lokr_w2` [c, d], both
  full matrices, and an `alpha` placeholder (1e10) that LyCORIS' rule ignores when both
  factors are full (scale 1).
- LyCORIS on a diffusers model (SimpleTuner's exports): `lycoris_transformer_blocks_0_attn_to_q.lokr_w1`
  full, `lokr_w2_a` [c, r] / `lokr_w2_b` [r, d], and `alpha`: the update is scaled by alpha / r.

Factor shapes follow LyCORIS' near-square `factorization(dim, -1)` (PEFT carries a copy).
`expected_lokr_updates` derives, without diffusers, what each diffusers layer must add:
scale * (w1 (x) w2), a BFL qkv's rows split into q, k and v. A dense update D is handed
to `reference_transformer` as the LoRA (A = D, B = I), which adds x @ D.T.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import Flux2Transformer2DModel
from lora_helpers import QKV, bfl_modules, diffusers_rows
from peft.tuners.lokr.layer import factorization
from safetensors.torch import save_file

AI_TOOLKIT_ALPHA = 1e10  # what ai-toolkit stores for full-matrix factors
FUSED_QKV = {"to_qkv": QKV["img_attn"], "to_added_qkv": QKV["txt_attn"]}  # diffusers' fused names


@dataclass
class DrawnLokr:
    """module -> (w1 [a, b], w2 [c, d] or its halves (w2_a [c, r], w2_b [r, d])); `rank` None when w2 is full."""

    factors: dict[str, tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]]
    alpha: float
    rank: int | None

    @property
    def scale(self) -> float:
        return 1.0 if self.rank is None else self.alpha / self.rank


def diffusers_modules(config: dict) -> dict[str, tuple[int, int]]:
    """The block linears of a diffusers FLUX.2 transformer (what LyCORIS wraps), with (in_features, out_features)."""
    with torch.device("meta"):
        model = Flux2Transformer2DModel.from_config(config)
    return {
        name: (module.in_features, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.startswith(("transformer_blocks.", "single_transformer_blocks."))
    }


def draw_lokr(modules: dict[str, tuple[int, int]], rank: int | None = None, alpha: float = 1.0, seed: int = 0, size: float = 1.0) -> DrawnLokr:
    """Random factors for `modules`; `rank` splits w2 into halves as LyCORIS does when its dim is small."""
    generator = torch.Generator().manual_seed(seed)
    factors = {}
    for module, (fan_in, fan_out) in modules.items():
        (a, c), (b, d) = factorization(fan_out), factorization(fan_in)
        w1 = torch.randn(a, b, generator=generator)
        if rank is None:
            w2 = torch.randn(c, d, generator=generator) * size / fan_in**0.5
        else:
            w2 = (torch.randn(c, rank, generator=generator) * size / fan_in**0.5, torch.randn(rank, d, generator=generator) / rank**0.5)
        factors[module] = (w1, w2)
    return DrawnLokr(factors, alpha, rank)


def dense_delta(lokr: DrawnLokr, module: str) -> torch.Tensor:
    """scale * (w1 (x) w2) in float64, written out from the definition (not torch.kron)."""
    w1, w2 = lokr.factors[module]
    w2 = w2 if isinstance(w2, torch.Tensor) else w2[0] @ w2[1]
    w1, w2 = w1.double(), w2.double()
    blocks = [[w1[i, j] * w2 for j in range(w1.shape[1])] for i in range(w1.shape[0])]
    return lokr.scale * torch.cat([torch.cat(row, dim=1) for row in blocks], dim=0)


def expected_lokr_updates(lokr: DrawnLokr, bfl_names: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """diffusers module -> (D, I, 1.0): the dense update as a full-rank LoRA, for `reference_transformer`."""
    updates = {}
    for module in lokr.factors:
        delta = dense_delta(lokr, module)
        for target, rows in (diffusers_rows(module, delta) if bfl_names else {module: delta}).items():
            updates[target] = (rows, torch.eye(rows.shape[0], dtype=torch.float64), 1.0)
    return updates


def write_ai_toolkit_lokr(path, lokr: DrawnLokr) -> None:
    """ai-toolkit keys: `diffusion_model.<bfl module>.lokr_w1` / `lokr_w2` / `alpha` (the placeholder)."""
    tensors = {}
    for module, (w1, w2) in lokr.factors.items():
        tensors[f"diffusion_model.{module}.lokr_w1"] = w1.contiguous()
        tensors[f"diffusion_model.{module}.lokr_w2"] = w2.contiguous()
        tensors[f"diffusion_model.{module}.alpha"] = torch.tensor(AI_TOOLKIT_ALPHA)
    save_file(tensors, str(path), metadata={"format": "pt", "software": "ai-toolkit"})


def write_lycoris_lokr(path, lokr: DrawnLokr) -> None:
    """LyCORIS keys: `lycoris_<diffusers module with _>.lokr_w1` / `lokr_w2_a` / `lokr_w2_b` / `alpha`."""
    tensors = {}
    for module, (w1, (w2_a, w2_b)) in lokr.factors.items():
        name = "lycoris_" + module.replace(".", "_")
        tensors[f"{name}.lokr_w1"] = w1.contiguous()
        tensors[f"{name}.lokr_w2_a"] = w2_a.contiguous()
        tensors[f"{name}.lokr_w2_b"] = w2_b.contiguous()
        tensors[f"{name}.alpha"] = torch.tensor(lokr.alpha)
    save_file(tensors, str(path), metadata={"format": "pt"})


def write_lokr(layout: str, tmp_path, config: dict, seed: int = 0, name: str = "lokr", size: float = 1.0):
    """Draw a LoKr for `config` and write it in `layout`; returns (file, the updates diffusers' layers must get)."""
    path = tmp_path / f"{name}.safetensors"
    if layout == "ai-toolkit":
        lokr = draw_lokr(bfl_modules(config), alpha=AI_TOOLKIT_ALPHA, seed=seed, size=size)
        write_ai_toolkit_lokr(path, lokr)
        return path, expected_lokr_updates(lokr, bfl_names=True)
    lokr = draw_lokr(diffusers_modules(config), rank=2, alpha=1.0, seed=seed, size=size)
    write_lycoris_lokr(path, lokr)
    return path, expected_lokr_updates(lokr, bfl_names=False)


def quantized_rows(transformer: torch.nn.Module, module: str) -> tuple[torch.nn.Module, slice]:
    """The quantized layer holding diffusers layer `module`'s rows, and which: its own, or its third of a fused q/k/v."""
    parent_name, _, child = module.rpartition(".")
    parent = transformer.get_submodule(parent_name)
    if hasattr(parent, child):
        return _base(getattr(parent, child)), slice(None)
    fused, parts = next((fused, parts) for fused, parts in FUSED_QKV.items() if child in parts)
    layer = _base(getattr(parent, fused))
    third = layer.out_features // 3
    return layer, slice(parts.index(child) * third, (parts.index(child) + 1) * third)


def _base(module: torch.nn.Module) -> torch.nn.Module:
    return module.get_base_layer() if hasattr(module, "get_base_layer") else module
