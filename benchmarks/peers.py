"""flux2-int8 against the INT8 libraries users pick instead, from the same BF16 weights, in one interleaved run.

    python benchmarks/peers.py [--device cpu] [--threads 1] [--rounds 3] [--json peers.json]
    python benchmarks/peers.py --quick                # tiny shapes: a smoke test (tests/bench)
    python benchmarks/peers.py --device cuda --tokens 4608 --json peers.json   # scripts/bench_gpu.sh proof

Three parts, each path timed in alternation with the others (round robin, `--rounds` times,
one call each per round) so load from other processes hits every path alike:

- **linear**: every distinct klein-9B block linear shape (K, N) at M = each of `--tokens`;
- **block**: one klein-9B-width double block + one single block as a transformer
  (`--image-side`^2 image tokens + `--text` text tokens; 1024 + 512 by default);
- **small models**: nano and tiny at their native sizes, BF16 vs flux2-int8 eager (each of `--int8-backends`) and dynamic.

Paths, each built from the same BF16 weights the way its library documents:

    bf16                  nn.Linear / the BF16 model (the baseline of every ratio)
    int_mm alone          torch._int_mm on pre-quantized operands: the INT8 GEMM ceiling (no quantize, no rescale)
    flux2-int8 eager      Int8Linear, static activations (scale calibrated on the input), default backend
    flux2-int8 dynamic    Int8Linear, per-token activation scales, eager
    flux2-int8 compiled   the static layer / model under torch.compile(fullgraph=True)
    sdnq                  sdnq_post_load_quant(weights_dtype="int8", use_quantized_matmul=True, minimum_allowed_numel=0)
    quanto                optimum.quanto quantize(weights=qint8, activations=qint8), one calibration pass, freeze
    torchao eager         quantize_(model, Int8DynamicActivationInt8WeightConfig())
    torchao compiled      the same under torch.compile(fullgraph=True)

Printed per path: the median of the per-round time ratios to bf16 with their min-max
(the spread), the median ms, the relative error ||y - ref|| / ||ref|| against a float64
product of the BF16 weights (first rows of the output), and the weight bytes the path
holds. A peer that is not installed is skipped, and the report says so. Geometric means
of the ratios over the linear shapes are printed per M. Speed targets live here, not in tests.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers import Flux2Transformer2DModel
from torch import nn

from flux2_int8.bench.microbench import klein_linear_shapes
from flux2_int8.bench.random_weights import quantized_linear_names, random_transformer
from flux2_int8.bench.report import environment
from flux2_int8.evaluate.metrics import relative_error
from flux2_int8.int8 import Int8Linear, quantize_activation, set_int8_backend
from flux2_int8.int8.backends import BACKENDS, CPU_HAS_VNNI
from flux2_int8.int8.weights import quantize_weight, weight_scale_per_channel
from flux2_int8.nano.model import NANO_TRANSFORMER_CONFIG
from flux2_int8.outputs import write_text_atomic
from flux2_int8.tiny import TINY_TRANSFORMER_CONFIG, random_transformer_inputs
from flux2_int8.variants import KLEIN_9B

SCHEMA = "flux2-int8-peers/1"
PEERS = {"sdnq": "sdnq", "quanto": "optimum.quanto", "torchao": "torchao"}
ERROR_ROWS = 64  # rows of the output compared with float64 (row-independent in every path)
SMALL_MODELS = {"nano": (NANO_TRANSFORMER_CONFIG, 8, 32), "tiny": (TINY_TRANSFORMER_CONFIG, 4, 16)}  # config, image side, text tokens


# ---------------------------------------------------------------- building the paths


def int8_from_bf16(model: nn.Module, calibrate: Callable[[nn.Module], object], activations: str = "static") -> nn.Module:
    """A copy of `model` whose nn.Linear layers are Int8Linear of the same BF16 weight.

    In a transformer these are the layers the quantization recipe converts (block linears;
    not embedders, modulation, final layer), as in a flux2-int8 checkpoint; elsewhere all.

    Per-channel weight scales; a static `input_scale` is max |x| / 127 over one calibration
    call (`calibrate(model)`), recorded by forward pre-hooks, as the calibration recipe does.
    """
    model = copy.deepcopy(model)
    names = quantized_linear_names(model) if isinstance(model, Flux2Transformer2DModel) else [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    amax: dict[str, float] = {}
    hooks = [model.get_submodule(name).register_forward_pre_hook(_recorder(amax, name)) for name in names]
    with torch.no_grad():
        calibrate(model)
    for hook in hooks:
        hook.remove()
    for name in names:
        linear = model.get_submodule(name)
        layer = Int8Linear(linear.in_features, linear.out_features, bias=linear.bias is not None, device=linear.weight.device, activations=activations)
        weight = linear.weight.detach().float()
        layer.weight_scale.copy_(weight_scale_per_channel(weight))
        layer.weight.data = quantize_weight(weight, layer.weight_scale)
        if layer.input_scale is not None:
            layer.input_scale.fill_(max(amax.get(name, 1.0), 1e-8) / 127)
        if linear.bias is not None:
            layer.bias.data = linear.bias.detach().clone()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer)
    return model


def _recorder(amax: dict[str, float], name: str) -> Callable[..., None]:
    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        amax[name] = max(amax.get(name, 0.0), float(inputs[0].detach().abs().amax()))

    return record


def peer_builders(calibrate: Callable[[nn.Module], object]) -> dict[str, Callable[[nn.Module], nn.Module]]:
    """Each installed peer's documented way to make an INT8 W8A8 model of a BF16 one."""

    def sdnq(model: nn.Module) -> nn.Module:
        from sdnq import sdnq_post_load_quant

        return sdnq_post_load_quant(copy.deepcopy(model), weights_dtype="int8", use_quantized_matmul=True, minimum_allowed_numel=0)

    def quanto(model: nn.Module) -> nn.Module:
        from optimum.quanto import Calibration, freeze, qint8, quantize

        model = copy.deepcopy(model)
        quantize(model, weights=qint8, activations=qint8)
        with torch.no_grad(), Calibration():
            calibrate(model)
        freeze(model)
        return model

    def torchao(model: nn.Module) -> nn.Module:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        model = copy.deepcopy(model)
        quantize_(model, Int8DynamicActivationInt8WeightConfig())
        return model

    return {"sdnq": sdnq, "quanto": quanto, "torchao eager": torchao}


def installed_peers(wanted: list[str]) -> tuple[list[str], dict[str, str]]:
    """The wanted peers that import, and a reason for each one skipped."""
    found, skipped = [], {}
    for name in wanted:
        if name not in PEERS:
            skipped[name] = f"unknown peer (known: {', '.join(PEERS)})"
        elif importlib.util.find_spec(PEERS[name].split(".")[0]) is None or (name == "quanto" and importlib.util.find_spec("optimum.quanto") is None):
            skipped[name] = f"not installed (pip install 'flux2-int8[peers]')"
        else:
            found.append(name)
    return found, skipped


def build_paths(bf16: nn.Module, calibrate: Callable[[nn.Module], object], args: argparse.Namespace, peers: list[str], notes: dict[str, str], compile_here: bool) -> dict[str, nn.Module]:
    """Every path of one workload, all from `bf16`; a peer that fails to build is noted, not fatal.

    flux2-int8 runs once per `--int8-backends` entry (labelled with it unless it is the lone
    `auto`); compiled, `triton` is traced as `triton_prequant`, as `auto` does under compile.
    """
    paths: dict[str, nn.Module] = {"bf16": bf16}
    static = int8_from_bf16(bf16, calibrate)
    for backend in args.int8_backends:
        tag = "" if args.int8_backends == ["auto"] else f" ({backend})"
        paths[f"flux2-int8 eager{tag}"] = _with_backend(static, backend)
        if backend == args.int8_backends[0]:
            paths[f"flux2-int8 dynamic{tag}"] = _with_backend(int8_from_bf16(bf16, calibrate, "dynamic"), backend)
    for backend in args.int8_backends if compile_here else ():
        traced = {"triton": "triton_prequant"}.get(backend, backend)
        tag = "" if args.int8_backends == ["auto"] else f" ({traced})"
        paths[f"flux2-int8 compiled{tag}"] = compiled(_with_backend(static, traced))
    builders = peer_builders(calibrate)
    for name in [n for n in ("sdnq", "quanto", "torchao eager") if n.split()[0] in peers]:
        try:
            paths[name] = builders[name](bf16)
        except Exception as error:  # a peer's own failure is a finding to report, not a crash of the run
            notes[name] = f"failed to build: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    if "torchao eager" in paths and compile_here:
        paths["torchao compiled"] = compiled(copy.deepcopy(paths["torchao eager"]))
    return paths


class Compiled(nn.Module):
    """`model` run through one shared `torch.compile(fullgraph=True, dynamic=True)` function.

    Dynamo inlines nn.Modules and treats their parameters as inputs, so every layer of the same
    kind (and, with dynamic shapes, of any size) reuses one graph: one compile per path kind
    instead of one per shape, which keeps the run's length in minutes.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return _run_compiled(self.model, *args, **kwargs)


def _run(model: nn.Module, *args: Any, **kwargs: Any) -> Any:
    return model(*args, **kwargs)


_run_compiled = torch.compile(_run, fullgraph=True, dynamic=True)


def compiled(model: nn.Module) -> nn.Module:
    return Compiled(model)


def _with_backend(model: nn.Module, backend: str) -> nn.Module:
    model = copy.deepcopy(model)
    set_int8_backend(model, backend)
    return model


def weight_bytes(module: nn.Module) -> int:
    """Bytes of every parameter and buffer, looking inside tensor subclasses (torchao, quanto)."""
    seen: set[int] = set()
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += _tensor_bytes(tensor)
    return total


def _tensor_bytes(tensor: torch.Tensor) -> int:
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is not None and type(tensor) not in (torch.Tensor, nn.Parameter):
        names, _ = tensor.__tensor_flatten__()
        return sum(_tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


# ---------------------------------------------------------------- timing


def interleaved(calls: dict[str, Callable[[], torch.Tensor]], device: torch.device, rounds: int, notes: dict[str, str]) -> tuple[dict[str, list[float]], dict[str, torch.Tensor]]:
    """Seconds per call of each path over `rounds` round-robin rounds, and each path's first output.

    The first call of each is the warm-up (compilation happens there; when it takes over a
    second its time is kept in `notes`). A path that raises is dropped and noted.
    """
    samples: dict[str, list[float]] = {}
    outputs: dict[str, torch.Tensor] = {}
    for name, call in list(calls.items()):
        try:
            seconds, outputs[name] = _timed(call, device)
        except Exception as error:
            notes[name] = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
            del calls[name]
            continue
        samples[name] = [seconds]  # the first call, dropped below
    for _ in range(rounds):
        for name, call in calls.items():
            samples[name].append(_timed(call, device)[0])
    for name, values in samples.items():
        first, values[:] = values[0], values[1:]
        if first > 1.0 and first > 2 * statistics.median(values):  # a compile, or a peer's own one-time work
            notes[f"{name} first call"] = f"{first:.1f} s"
    return samples, outputs


def _timed(call: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    began = time.perf_counter()
    output = call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - began, output


def summarize(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per path: median seconds and the median, min and max of its per-round ratio to bf16."""
    base = samples["bf16"]
    rows = {}
    for name, values in samples.items():
        ratios = [value / reference for value, reference in zip(values, base)]
        rows[name] = {"median_s": statistics.median(values), "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}
    return rows


# ---------------------------------------------------------------- the three parts


def linear_part(args: argparse.Namespace, device: torch.device, peers: list[str], notes: dict[str, str], save: Callable[[], None], rows: list[dict[str, Any]]) -> None:
    configs = {"klein-9b": KLEIN_9B.transformer_config()} if not args.quick else {"tiny": dict(TINY_TRANSFORMER_CONFIG)}
    shapes = klein_linear_shapes(configs)[args.first_shape :][: args.max_shapes or None]
    for index, shape in enumerate(shapes):
        k, n = shape.in_features, shape.out_features
        generator = torch.Generator(device=device).manual_seed(index)
        weight = torch.randn(n, k, device=device, generator=generator) / k**0.5
        bf16 = nn.Sequential(nn.Linear(k, n, bias=False, device=device, dtype=torch.bfloat16))
        bf16[0].weight.data = weight.to(torch.bfloat16)
        del weight
        bf16.requires_grad_(False)
        for m in args.tokens:
            if out_of_time(args, notes, f"linear K={k} N={n} M={m}"):
                continue
            x = torch.randn(m, k, device=device, generator=generator).to(torch.bfloat16)
            rows.append(_measure(bf16, (x,), args, device, peers, notes, {"part": "linear", "k": k, "n": n, "m": m, "layers": list(shape.layers)}))
            _print_row(rows[-1])
            save()


def out_of_time(args: argparse.Namespace, notes: dict[str, str], what: str) -> bool:
    """Whether `--time-budget` is spent; a skipped workload is noted in the report."""
    if args.time_budget and time.monotonic() - args.started > args.time_budget:
        notes[what] = f"skipped: --time-budget {args.time_budget:.0f} s spent"
        print(f"skipped {what}: --time-budget spent", flush=True)
        return True
    return False


def _measure(bf16: nn.Module, inputs: tuple[torch.Tensor, ...] | dict[str, Any], args: argparse.Namespace, device: torch.device, peers: list[str], notes: dict[str, str], row: dict[str, Any]) -> dict[str, Any]:
    """Build every path of one workload, check each against float64, time them interleaved."""
    is_linear = isinstance(inputs, tuple)
    call_with = (lambda model: lambda: model(*inputs)) if is_linear else (lambda model: lambda: model(**inputs, return_dict=False)[0])
    local_notes: dict[str, str] = {}
    with torch.no_grad():
        paths = build_paths(bf16, lambda model: call_with(model)(), args, peers, local_notes, args.compile == "all" or (args.compile == "block" and not is_linear))
        calls = {name: call_with(model) for name, model in paths.items()}
        if is_linear and (device.type == "cuda" or CPU_HAS_VNNI):
            calls["int_mm alone"] = _int_mm_alone(static_layer(paths), inputs[0])
        samples, outputs = interleaved(calls, device, args.rounds, local_notes)
        reference = _float64_reference(bf16, inputs) if is_linear else outputs["bf16"].double()
        rows = ERROR_ROWS if is_linear else None
        errors = {name: relative_error(output[:rows], reference) for name, output in outputs.items() if name != "int_mm alone"}
        del outputs
    row["paths"] = summarize(samples)
    for name, summary in row["paths"].items():
        summary["relative_error"] = errors.get(name)
        summary["weight_bytes"] = weight_bytes(paths[name]) if name in paths else None
    row["notes"] = local_notes
    for name, note in local_notes.items():
        notes[f"{_workload(row)}: {name}"] = note
    return row


def static_layer(paths: dict[str, nn.Module]) -> Int8Linear:
    """The static Int8Linear of a linear workload (the first flux2-int8 eager path)."""
    return next(model for name, model in paths.items() if name.startswith("flux2-int8 eager"))[0]


def _int_mm_alone(layer: Int8Linear, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    quantized = quantize_activation(x, layer.input_scale)
    if quantized.shape[0] <= 16 and x.device.type == "cuda":
        quantized = torch.nn.functional.pad(quantized, (0, 0, 0, 17 - quantized.shape[0]))
    weight = layer.weight.t()
    return lambda: torch._int_mm(quantized, weight)


def _float64_reference(bf16: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The first rows of x @ W.T in float64, from the BF16 weight and input (the blocks compare with the BF16 model)."""
    return inputs[0][:ERROR_ROWS].double() @ bf16[0].weight.double().t()


def block_part(args: argparse.Namespace, device: torch.device, peers: list[str], notes: dict[str, str]) -> dict[str, Any] | None:
    base = KLEIN_9B.transformer_config() if not args.quick else dict(TINY_TRANSFORMER_CONFIG)
    config = {**base, "num_layers": args.double, "num_single_layers": args.single}
    if out_of_time(args, notes, "block"):
        return None
    bf16 = random_transformer(config, "bf16", device)
    inputs = _model_inputs(config, args.image_side, args.text, device)
    row = _measure(bf16, inputs, args, device, peers, notes, {"part": "block", "name": f"{'klein-9b' if not args.quick else 'tiny'} {args.double} double + {args.single} single", "image_tokens": args.image_side**2, "text_tokens": args.text})
    _print_row(row)
    return row


def small_models_part(args: argparse.Namespace, device: torch.device, notes: dict[str, str]) -> list[dict[str, Any]]:
    """nano and tiny: BF16 vs flux2-int8 eager only (overhead-bound; the peers target big layers)."""
    rows = []
    for name in args.models:
        config, side, text = SMALL_MODELS[name]
        bf16 = random_transformer(dict(config), "bf16", device)
        inputs = _model_inputs(dict(config), side, text, device)
        if out_of_time(args, notes, f"model {name}"):
            continue
        quiet = argparse.Namespace(**{**vars(args), "compile": "none", "rounds": args.rounds * 10})
        row = _measure(bf16, inputs, quiet, device, [], notes, {"part": "model", "name": name, "image_tokens": side**2, "text_tokens": text})
        _print_row(row)
        rows.append(row)
    return rows


def _model_inputs(config: dict[str, Any], side: int, text: int, device: torch.device) -> dict[str, Any]:
    inputs = random_transformer_inputs(config, image_side=side, text_tokens=text)
    return {key: (value.to(torch.bfloat16) if value.is_floating_point() else value).to(device) for key, value in inputs.items()}


# ---------------------------------------------------------------- report


def _workload(row: dict[str, Any]) -> str:
    if row["part"] == "linear":
        return f"K={row['k']} N={row['n']} M={row['m']}"
    return f"{row['name']} ({row['image_tokens']} + {row['text_tokens']} tokens)"


def _print_row(row: dict[str, Any]) -> None:
    print(f"\n{row['part']} {_workload(row)}", flush=True)
    for name, path in row["paths"].items():
        error = "-" if path["relative_error"] is None else f"{path['relative_error']:.2e}"
        size = "-" if path["weight_bytes"] is None else f"{path['weight_bytes'] / 2**20:.1f} MiB"
        print(f"  {name:22} {path['ratio']:6.3f}x bf16 ({path['ratio_min']:.3f}-{path['ratio_max']:.3f})  {path['median_s'] * 1e3:9.2f} ms  err {error:>9}  weights {size}", flush=True)
    for name, note in row["notes"].items():
        print(f"  note: {name}: {note}", flush=True)


def geometric_means(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per M, per path: the geometric mean of the ratio to bf16 over the linear shapes that have it."""
    means: dict[str, dict[str, float]] = {}
    for m in sorted({row["m"] for row in rows}):
        at_m = [row for row in rows if row["m"] == m]
        names = {name for row in at_m for name in row["paths"]}
        means[str(m)] = {name: math.exp(statistics.fmean(math.log(row["paths"][name]["ratio"]) for row in at_m if name in row["paths"])) for name in sorted(names)}
    return means


def targets(document: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """The issue's targets, checked on this run: (target, measured, met)."""
    found: list[tuple[str, str, bool | None]] = []
    for m, means in document["geometric_means"].items():
        eager, compiled, sdnq = means.get("flux2-int8 eager"), means.get("flux2-int8 compiled"), means.get("sdnq")  # the default (auto) paths
        if eager and compiled:
            found.append((f"M={m}: flux2-int8 eager <= 1.15x compiled", f"{eager:.3f} / {compiled:.3f} = {eager / compiled:.3f}", eager / compiled <= 1.15))
        if eager and sdnq:
            found.append((f"M={m}: flux2-int8 eager <= sdnq", f"{eager:.3f} vs {sdnq:.3f}", eager <= sdnq))
    block = (document.get("block") or {}).get("paths", {})
    if "flux2-int8 eager" in block:
        ratio = block["flux2-int8 eager"]["ratio"]
        found.append(("block: flux2-int8 eager <= 0.70x bf16", f"{ratio:.3f}", ratio <= 0.70))
    for row in document.get("models", []):
        if "flux2-int8 eager" not in row["paths"]:
            continue
        ratio = row["paths"]["flux2-int8 eager"]["ratio"]
        found.append((f"{row['name']}: flux2-int8 eager <= 1.0x bf16", f"{ratio:.3f}", ratio <= 1.0))
    return found


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU (default 1, as the issue measured)")
    parser.add_argument("--tokens", default="512,4096", help="comma-separated M of the linear part (default 512,4096)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each path once per round)")
    parser.add_argument("--peers", default="sdnq,quanto,torchao", help="comma-separated peers to include, or 'none'")
    parser.add_argument("--parts", default="linear,block,models", help="comma-separated: linear, block, models")
    parser.add_argument("--models", default="nano,tiny", help="small models of the models part")
    parser.add_argument("--image-side", type=int, default=32, help="block part: image tokens per side (32 -> 1024)")
    parser.add_argument("--text", type=int, default=512, help="block part: text tokens")
    parser.add_argument("--max-shapes", type=int, default=0, help="only the first N linear shapes (0: all)")
    parser.add_argument("--first-shape", type=int, default=0, help="start at this linear shape (0-based, in (K, N) order)")
    parser.add_argument("--compile", choices=("all", "block", "none"), help="where the compiled paths run (block: only in the block part; default all, none with --quick)")
    parser.add_argument("--int8-backends", default="auto", help="comma-separated Int8Linear backends to time (default auto; e.g. int_mm,triton on CUDA)")
    parser.add_argument("--double", type=int, default=1, help="block part: double blocks")
    parser.add_argument("--single", type=int, default=1, help="block part: single blocks")
    parser.add_argument("--time-budget", type=float, default=0.0, help="seconds; workloads that start later are skipped and noted (0: no limit)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, one round, no compiled paths: a smoke test")
    parser.add_argument("--json", help="also write every figure here")
    args = parser.parse_args(argv)
    args.tokens = [int(value) for value in args.tokens.split(",")]
    args.parts = args.parts.split(",")
    args.models = [name for name in args.models.split(",") if name]
    args.int8_backends = [name for name in args.int8_backends.split(",") if name]
    args.compile = args.compile or ("none" if args.quick else "all")
    args.started = time.monotonic()
    if unknown := set(args.int8_backends) - {"auto", *BACKENDS}:
        parser.error(f"--int8-backends: unknown {', '.join(sorted(unknown))} (expected auto or {', '.join(BACKENDS)})")
    if unknown := set(args.parts) - {"linear", "block", "models"}:
        parser.error(f"--parts: unknown {', '.join(sorted(unknown))}")
    if unknown := set(args.models) - set(SMALL_MODELS):
        parser.error(f"--models: unknown {', '.join(sorted(unknown))} (expected nano, tiny)")
    if args.quick:
        args.tokens, args.rounds, args.image_side, args.text, args.models = [16], 1, 4, 8, ["tiny"]
        args.compile = args.compile or "none"
        args.max_shapes = args.max_shapes or 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    device = torch.device(args.device)
    # Every path kind shares one compiled function (`Compiled`), its weights' sizes symbolic too.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    torch._dynamo.config.force_parameter_static_shapes = False
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    wanted = [] if args.peers == "none" else [name for name in args.peers.split(",") if name]
    peers, skipped = installed_peers(wanted)
    env = environment(device)
    print(f"torch {torch.__version__}, {env['device_name']}, {torch.get_num_threads()} threads, Int8Linear auto: {env['int8_auto']}, rounds {args.rounds}")
    for name, why in skipped.items():
        print(f"skipped peer {name}: {why}")
    command = " ".join(["python", "benchmarks/peers.py", *(argv if argv is not None else sys.argv[1:])])
    document: dict[str, Any] = {"schema": SCHEMA, "command": command, "environment": env, "settings": vars(args), "status": "running",
                                "peers": peers, "skipped_peers": skipped, "notes": {}, "linear": [], "block": None, "models": []}

    def save() -> None:
        document["geometric_means"] = geometric_means(document["linear"])
        document["targets"] = [{"target": t, "measured": m, "met": ok} for t, m, ok in targets(document)]
        if args.json:
            write_text_atomic(Path(args.json), json.dumps(document, indent=1) + "\n")

    if "linear" in args.parts:
        linear_part(args, device, peers, document["notes"], save, document["linear"])
    if "block" in args.parts:
        document["block"] = block_part(args, device, peers, document["notes"])
        save()
    if "models" in args.parts:
        document["models"] = small_models_part(args, device, document["notes"])
    document["status"] = "complete"
    save()
    _print_summary(document)
    return 0


def _print_summary(document: dict[str, Any]) -> None:
    for m, means in document["geometric_means"].items():
        print(f"\ngeometric mean over the linear shapes at M={m}: " + ", ".join(f"{name} {ratio:.3f}" for name, ratio in means.items()))
    print()
    for entry in document["targets"]:
        print(f"target {entry['target']}: {entry['measured']} -> {'met' if entry['met'] else 'NOT met'}")
    for name, why in document["skipped_peers"].items():
        print(f"skipped peer {name}: {why}")


if __name__ == "__main__":
    sys.exit(main())
