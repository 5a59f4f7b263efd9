"""One transformer step, INT8 vs INT8 + rank-16 LoRA (or LoKr) unfused vs fused, side by side.

    python benchmarks/lora_step.py [--variant klein-4b --double 1 --single 2 --side 16 --text 64 --rank 16 --repeats 3]
    python benchmarks/lora_step.py --device cuda --variant klein-9b --side 64 --text 512 --compile off,full --json lora.json

klein's real layer shapes (hidden size, MLP width of `--variant`) with fewer blocks, random
INT8 weights, and a LoRA on every quantized block linear, loaded through diffusers'
`add_adapter` path (PEFT + our INT8 LoRA layers). One step is one transformer forward
over `--side`^2 image tokens and `--text` text tokens. Unfused runs the INT8 layer plus two
thin GEMMs per layer in the compute dtype (a LoKr, `--adapter lokr`: w1 @ (x @ w2.T));
fused has merged and re-quantized the weights,
so it should cost what plain INT8 costs. Prints the median of each and the ratios; with
`--json` also writes them (schema flux2-int8-lora-step/1), which `scripts/bench_gpu.sh proof`
does and `scripts/record_gpu_results.py` renders.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from flux2_int8.bench.random_weights import random_transformer
from flux2_int8.bench.report import environment
from flux2_int8.bench.timing import interleaved_medians
from flux2_int8.int8 import Int8Linear
from flux2_int8.lora import register_peft_layers
from flux2_int8.outputs import write_text_atomic
from flux2_int8.tiny import random_transformer_inputs
from flux2_int8.variants import get_variant

SCHEMA = "flux2-int8-lora-step/1"
MODELS = ("int8", "unfused", "fused")


def build_models(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> tuple[dict[str, torch.nn.Module], dict[str, Any], int]:
    """Plain INT8, INT8 + unfused LoRA, INT8 + fused LoRA: three copies of one random model."""
    from peft import LoKrConfig, LoraConfig

    config = {**get_variant(args.variant).architecture.transformer_config(), "num_layers": args.double, "num_single_layers": args.single}
    register_peft_layers()
    original = random_transformer(config, "int8", device, dtype=dtype)
    targets = [name for name, module in original.named_modules() if isinstance(module, Int8Linear)]
    # Copies made alike, so no model is favoured by where its tensors happen to lie.
    plain, unfused = copy.deepcopy(original), copy.deepcopy(original)
    del original
    if args.adapter == "lora":
        adapter = LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules=targets, init_lora_weights="gaussian")
    else:  # full w1, low-rank w2, as LyCORIS makes them by default
        adapter = LoKrConfig(r=args.rank, alpha=args.rank, target_modules=targets, init_weights=False)
    unfused.add_adapter(adapter, adapter_name="style")
    for module in unfused.modules():  # adapters in the compute dtype, as `load_loras` casts them
        for name in ("lora_A", "lora_B", "lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b"):
            if hasattr(module, name):
                getattr(module, name).to(device=device, dtype=dtype)
    fused = copy.deepcopy(unfused)
    fused.fuse_lora(adapter_names=["style"])
    inputs = random_transformer_inputs(config, image_side=args.side, text_tokens=args.text)
    inputs = {k: (v.to(dtype) if v.is_floating_point() else v).to(device) for k, v in inputs.items()}
    return {"int8": plain, "unfused": unfused, "fused": fused}, inputs, len(targets)


def measure(models: dict[str, torch.nn.Module], inputs: dict[str, Any], device: torch.device, mode: str, repeats: int) -> dict[str, float]:
    """Median step seconds of each model, eager (`off`) or compiled whole (`full`)."""
    def step(model: torch.nn.Module) -> Callable[[], object]:
        run = model if mode == "off" else torch.compile(model, fullgraph=True)
        return lambda: run(**inputs, return_dict=False)

    with torch.no_grad():
        return interleaved_medians({name: step(model) for name, model in models.items()}, device, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="klein-4b")
    parser.add_argument("--double", type=int, default=1, help="double-stream blocks (klein 4B has 5)")
    parser.add_argument("--single", type=int, default=2, help="single-stream blocks (klein 4B has 20)")
    parser.add_argument("--side", type=int, default=16, help="image tokens per side (16 -> 256 tokens, a 256x256 image)")
    parser.add_argument("--text", type=int, default=64, help="text tokens")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--adapter", choices=("lora", "lokr"), default="lora", help="a LoRA (B A) or a LoKr (w1 kron w2) of --rank")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", default="off", help="comma-separated: off (eager) and/or full (torch.compile, fullgraph)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this JSON file (after each compile mode)")
    args = parser.parse_args(argv)
    modes = args.compile.split(",")
    if not set(modes) <= {"off", "full"}:
        parser.error(f"--compile {args.compile}: expected off, full or off,full")
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    models, inputs, layers = build_models(args, device, dtype)
    env = environment(device)
    print(f"torch {torch.__version__}, {env['device_name']}, {torch.get_num_threads()} threads, Int8Linear auto: {env['int8_auto']}, {args.dtype}")
    print(f"{args.variant} shapes, {args.double} double + {args.single} single blocks, {args.side**2} image + {args.text} text tokens, {args.adapter} rank {args.rank} on {layers} layers")
    document: dict[str, Any] = {"schema": SCHEMA, "command": " ".join(["python", "benchmarks/lora_step.py", *(argv if argv is not None else sys.argv[1:])]),
                                "environment": env, "settings": {**vars(args), "layers": layers}, "status": "running", "steps": {}}
    for mode in modes:
        medians = measure(models, inputs, device, mode, args.repeats)
        document["steps"][mode] = {name: {"s": seconds, "ratio_to_int8": seconds / medians["int8"]} for name, seconds in medians.items()}
        print(f"compile {mode}:")
        kind = "LoRA" if args.adapter == "lora" else "LoKr"
        for name, label in zip(MODELS, ("INT8", f"INT8 + {kind} unfused", f"INT8 + {kind} fused")):
            print(f"  {label + ':':22}{medians[name] * 1e3:9.2f} ms/step  ratio to INT8 {medians[name] / medians['int8']:.3f}")
        document["status"] = "complete" if mode == modes[-1] else "running"
        if args.json:
            write_text_atomic(Path(args.json), json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
