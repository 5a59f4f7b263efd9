"""Recognising a LoRA file from its safetensors header: which tool wrote it, its rank, its layers.

Header only (names and shapes): when a file given as a transformer checkpoint is not one
(`formats` says "no FLUX.2 transformer tensors found" or "unknown tensor"), the loaders
ask this (`naming_loras`) so a user who passed a LoRA where a model goes is told what the
file is; `inspect` names LoRA files the same way. `formats/` sits below this package and
cannot ask it, hence the question is put where the error comes out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, UnsupportedFormatError
from ..variants import ARCHITECTURES

# The key that carries each layer's rank (its first dimension), per layout.
_RANK_SUFFIXES = (".lora_A.weight", ".lora_down.weight", ".lokr_w1_a", ".lokr_w2_a")
_LAYER_SUFFIX = re.compile(r"\.(lora_A|lora_B|lora_down|lora_up|lora_mid|alpha|lokr_w1|lokr_w1_a|lokr_w1_b|lokr_w2|lokr_w2_a|lokr_w2_b|lokr_t2|dora_scale)(\.weight|\.bias)?$")


@dataclass(frozen=True)
class LoraFileInfo:
    """What a LoRA file is: `format` (the tool's layout), its ranks, the layers it targets (as stored).

    `hidden_size` is the input width most of its layers take, which for a FLUX.2 LoRA is
    the transformer's hidden size: it tells the klein size the LoRA was made for.
    """

    format: str
    ranks: tuple[int, ...]
    modules: tuple[str, ...]
    hidden_size: int | None = None

    @property
    def layers(self) -> int:
        return len(self.modules)

    @property
    def fits(self) -> tuple[str, ...]:
        """The klein architectures of that hidden size (shapes cannot tell distilled from base)."""
        return tuple(a.name for a in ARCHITECTURES if a.hidden_size == self.hidden_size)

    def summary(self) -> dict[str, Any]:
        return {"kind": "lora", "format": self.format, "rank": self.rank, "layers": self.layers, "hidden_size": self.hidden_size, "fits": list(self.fits), "modules": list(self.modules)}

    def report(self, path: str | Path) -> str:
        fits = " or ".join(self.fits) if self.fits else "no klein size (another model?)"
        shown = ", ".join(self.modules[:4]) + (f", ... ({self.layers} in all)" if self.layers > 4 else "")
        return "\n".join([
            f"{path}",
            f"  kind:    LoRA ({self.format} format); apply it with generate --lora, not --transformer",
            f"  rank:    {self.rank}",
            f"  layers:  {shown}",
            f"  fits:    {fits} (hidden size {self.hidden_size})",
        ])  # fmt: skip

    @property
    def rank(self) -> str:
        """"16", or "4-32" when layers differ, or "full" for LoKr factors stored whole."""
        if not self.ranks:
            return "full"
        return str(self.ranks[0]) if len(self.ranks) == 1 else f"{self.ranks[0]}-{self.ranks[-1]}"

    def describe(self) -> str:
        return f"a LoRA ({self.format} format, rank {self.rank}, {self.layers} layers)"


def describe_lora_keys(shapes: Mapping[str, Sequence[int]]) -> LoraFileInfo | None:
    """The LoRA a header describes (tensor name -> shape), or None when it is not a LoRA."""
    keys = list(shapes)
    layer_keys = [key for key in keys if _LAYER_SUFFIX.search(key)]
    if not any(not key.endswith((".alpha", ".dora_scale")) for key in layer_keys):
        return None
    ranks = sorted({int(shapes[key][0]) for key in layer_keys if key.endswith(_RANK_SUFFIXES) and len(shapes[key]) >= 1})
    modules = sorted({_LAYER_SUFFIX.sub("", key) for key in layer_keys if not key.endswith((".alpha", ".dora_scale"))})
    widths = Counter(int(shapes[key][-1]) for key in layer_keys if key.endswith((".lora_A.weight", ".lora_down.weight")) and len(shapes[key]) == 2)
    hidden = widths.most_common(1)[0][0] if widths else None
    return LoraFileInfo(_format(keys), tuple(ranks), tuple(modules), hidden)


def _format(keys: list[str]) -> str:
    if any(".lokr_" in key for key in keys):
        return "LyCORIS LoKr" if any(key.startswith("lycoris_") for key in keys) else "LoKr"
    if any(".lora_down." in key for key in keys):
        return "kohya" if any(key.startswith("lora_unet_") for key in keys) else "lora_down/lora_up"
    if any(key.startswith("base_model.model.") for key in keys):
        return "PEFT"
    if any(key.startswith("diffusion_model.") for key in keys):
        return "ai-toolkit/BFL"
    return "diffusers"


def describe_lora_file(path: str | Path) -> LoraFileInfo | None:
    """`describe_lora_keys` over a file's header (None when it is not a LoRA)."""
    from ..formats.header import read_header

    header = read_header(path)
    return describe_lora_keys({key: info.shape for key, info in header.tensors.items()})


@contextmanager
def naming_loras(path: str | Path) -> Iterator[None]:
    """Around reading `path` as a transformer checkpoint: a refusal of a LoRA file says it is a LoRA."""
    try:
        yield
    except CheckpointError:
        try:
            lora = describe_lora_file(path) if Path(path).is_file() else None
        except CheckpointError:
            lora = None
        if lora is None:
            raise
        raise UnsupportedFormatError(path, f"this is {lora.describe()}, not a transformer checkpoint; load the base model and apply it with `flux2-int8 generate --lora {path}` or `pipe.load_lora_weights(...)`") from None
