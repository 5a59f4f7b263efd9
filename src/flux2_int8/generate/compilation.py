"""How a transformer is compiled: not at all, whole (`full`), or block by block (`regional`).

A klein transformer is 8+24 (9B) or 5+20 (4B) copies of two block classes. Regional
compilation (diffusers' `ModelMixin.compile_repeated_blocks`, the classes listed in
`Flux2Transformer2DModel._repeated_blocks`) compiles one graph per block class and reuses
it for every copy, so compiling costs about two blocks instead of the whole model, while
each block still gets Inductor's fusions (the activation quantization fused into the
producing norm or modulation, the rescale into the GEMM epilogue). What stays eager is the
glue between blocks (embedders, rotary tables, the final layer): a few small ops per step.
Each compiled block call costs Dynamo's guard checks and input gathering on the host
(about 4 ms per block on a busy 2-core CPU for the tiny INT8 model), which a GPU hides only
while a block's kernels take longer. So `on` still means `full` (the spelling's old
meaning) until a GPU measurement shows `regional` no slower per step
(docs/benchmarks.md, "Regional vs full compilation").
"""

from __future__ import annotations

import warnings
from typing import Literal

from torch import nn

from ..errors import ConfigError

CompileMode = Literal["off", "full", "regional"]
COMPILE_MODES: tuple[str, ...] = ("off", "full", "regional")
# Spellings accepted besides the modes themselves.
COMPILE_ALIASES: dict[str, str] = {"on": "full"}


def resolve_compile_mode(value: str | bool) -> str:
    """'off', 'full' or 'regional' from a user's choice ('on' is 'full').

    A bool is the old `compile=True/False` spelling: it still works, with a warning.
    """
    if isinstance(value, bool):
        warnings.warn("compile=True/False is deprecated: pass compile='full', 'regional' or 'off'", FutureWarning, stacklevel=3)
        return "full" if value else "off"
    mode = COMPILE_ALIASES.get(str(value).strip().lower(), str(value).strip().lower())
    if mode not in COMPILE_MODES:
        raise ConfigError(f"compile mode '{value}': expected one of {', '.join(COMPILE_MODES)} (or on, meaning full)")
    return mode


def compile_transformer(model: nn.Module, mode: str) -> None:
    """Compile `model` in place with `fullgraph=True` (a graph break is an error, never a silent slowdown).

    `full` compiles the model's own forward; `regional` each repeated block (`model._repeated_blocks`);
    `off` does nothing. The first call afterwards pays the compile.
    """
    mode = resolve_compile_mode(mode)
    if mode == "full":
        model.compile(fullgraph=True)
    elif mode == "regional":
        if not getattr(model, "_repeated_blocks", None) or not hasattr(model, "compile_repeated_blocks"):
            raise ConfigError(f"{type(model).__name__} lists no repeated blocks: compile it with 'full' instead of 'regional'")
        model.compile_repeated_blocks(fullgraph=True)
