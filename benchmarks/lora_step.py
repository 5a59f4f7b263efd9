"""CPU: one transformer step, INT8 vs INT8 + rank-16 LoRA unfused vs fused, side by side.

    python benchmarks/lora_step.py [--variant klein-4b --double 1 --single 2 --side 16 --text 64 --rank 16 --repeats 3]

klein's real layer shapes (hidden size, MLP width of `--variant`) with fewer blocks, random
INT8 weights, and a LoRA on every quantized block linear, loaded through diffusers'
`add_adapter` path (PEFT + our INT8 LoRA layers). One step is one transformer forward
over `--side`^2 image tokens and `--text` text tokens. Unfused runs the INT8 layer plus two
thin GEMMs per layer in the compute dtype; fused has merged and re-quantized the weights,
so it should cost what plain INT8 costs. Prints the median of each and the ratios.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from flux2_int8.bench.random_weights import random_transformer
from flux2_int8.int8 import Int8Linear
from flux2_int8.int8.backends import CPU_HAS_VNNI
from flux2_int8.lora import register_peft_layers
from flux2_int8.tiny import random_transformer_inputs
from flux2_int8.variants import get_variant


def interleaved_medians(functions: dict[str, object], repeats: int) -> dict[str, float]:
    """Median seconds of each, run in alternation so other load on the machine hits all alike."""
    for function in functions.values():
        function()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="klein-4b")
    parser.add_argument("--double", type=int, default=1, help="double-stream blocks (klein 4B has 5)")
    parser.add_argument("--single", type=int, default=2, help="single-stream blocks (klein 4B has 20)")
    parser.add_argument("--side", type=int, default=16, help="image tokens per side (16 -> 256 tokens, a 256x256 image)")
    parser.add_argument("--text", type=int, default=64, help="text tokens")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from peft import LoraConfig

    dtype = getattr(torch, args.dtype)
    config = {**get_variant(args.variant).architecture.transformer_config(), "num_layers": args.double, "num_single_layers": args.single}
    register_peft_layers()
    original = random_transformer(config, "int8", "cpu", dtype=dtype)
    targets = [name for name, module in original.named_modules() if isinstance(module, Int8Linear)]
    # Three copies made alike, so no model is favoured by where its tensors happen to lie.
    plain, unfused = copy.deepcopy(original), copy.deepcopy(original)
    del original
    unfused.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules=targets, init_lora_weights="gaussian"), adapter_name="style")
    for module in unfused.modules():  # adapters in the compute dtype, as `load_loras` casts them
        if hasattr(module, "lora_A"):
            module.lora_A.to(dtype)
            module.lora_B.to(dtype)
    fused = copy.deepcopy(unfused)
    fused.fuse_lora(adapter_names=["style"])
    inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in random_transformer_inputs(config, image_side=args.side, text_tokens=args.text).items()}

    def step(model):  # type: ignore[no-untyped-def]
        return lambda: model(**inputs, return_dict=False)

    with torch.no_grad():
        medians = interleaved_medians({"int8": step(plain), "unfused": step(unfused), "fused": step(fused)}, args.repeats)
    base = medians["int8"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, VNNI: {CPU_HAS_VNNI}, {args.dtype}")
    print(f"{args.variant} shapes, {args.double} double + {args.single} single blocks, {args.side**2} image + {args.text} text tokens, LoRA rank {args.rank} on {len(targets)} layers")
    print(f"INT8:                  {base * 1e3:8.1f} ms/step")
    print(f"INT8 + LoRA unfused:   {medians['unfused'] * 1e3:8.1f} ms/step  ratio to INT8 {medians['unfused'] / base:.3f}")
    print(f"INT8 + LoRA fused:     {medians['fused'] * 1e3:8.1f} ms/step  ratio to INT8 {medians['fused'] / base:.3f}")


if __name__ == "__main__":
    main()
