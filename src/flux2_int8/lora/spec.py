"""`--lora PATH_OR_REPO[:SCALE]`: where a LoRA is and how strongly to apply it (no torch here: the CLI parses it first)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import Flux2Int8Error
from ..limits import LORA_SCALE, RangeError


@dataclass(frozen=True)
class LoraSpec:
    """One `--lora PATH_OR_REPO[:SCALE]`: where the LoRA is and how strongly to apply it."""

    source: str
    scale: float = 1.0


def parse_lora_spec(text: str) -> LoraSpec:
    """`PATH_OR_REPO[:SCALE]` -> LoraSpec; a tail after the last ':' that is a number is the scale.

    A tail Python would read as a number (`nan`, `inf`, `1e999`, `1_0`) is meant as a
    scale, so it must be a plain finite decimal in `flux2_int8.limits.LORA_SCALE`'s
    range, or the spec is refused naming it: never an all-black picture from a NaN scale.
    """
    source, _, tail = text.rpartition(":")
    if source and _is_number(tail):
        try:
            return LoraSpec(source, LORA_SCALE.parse(tail, "scale"))
        except RangeError:
            raise Flux2Int8Error(f"--lora {text}: the scale {tail!r} is not {LORA_SCALE.describe()}") from None
    if not text:
        raise Flux2Int8Error("--lora needs a LoRA file or hub repository, optionally followed by :SCALE")
    return LoraSpec(text)


def lora_paths(specs: Iterable[str]) -> list[str]:
    """The path part of each `PATH_OR_REPO[:SCALE]` spec (and the whole text, should a file carry that name): inputs no output may replace."""
    paths: list[str] = []
    for text in specs:
        source, _, tail = text.rpartition(":")
        paths += [text, source] if source and tail else [text]
    return paths


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
