"""Output paths and PNG files: checked before the model loads, written whole or not at all.

Each PNG carries the settings that made it in its text chunks (prompt, seed, steps,
guidance, size, base, checkpoint, text encoder, reference names), so an image found later can be
made again; `PIL.Image.open(path).text` reads them back.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ..version import __version__
from ..formats.write import check_folder_writable
from ..outputs import claim_file, claim_folder, mark_folder, temporary_beside
from .requests import RequestError

_SLUG_LENGTH = 40


def is_file_target(out: str | Path) -> bool:
    """`--out x.png` names a file; anything else names a folder."""
    return Path(out).suffix.lower() == ".png"


def output_path(out: str | Path, index: int, total: int, prompt: str, seed: int) -> Path:
    """Where image `index` (1-based) of `total` goes.

    A `.png` target is used as is for one image, and numbered (`x-001.png`) for several;
    a folder gets `0001-<prompt words>-seed<seed>.png`.
    """
    out = Path(out).expanduser()
    if is_file_target(out):
        return out if total == 1 else out.with_name(f"{out.stem}-{index:03d}.png")
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:_SLUG_LENGTH].strip("-") or "image"
    return out / f"{index:04d}-{slug}-seed{seed}.png"


def check_writable(out: str | Path, planned: Sequence[Path] = (), inputs: Sequence[Path] = (), overwrite: bool = False) -> None:
    """Refuse, without creating anything, an output that cannot be written or would replace something.

    `planned` are the image paths the run will write: none may be one of `inputs`
    (`--image a.png --out a.png`). A folder target must be new, empty, made by
    flux2-int8, or `overwrite` given (docs/reliability.md).
    """
    out = Path(out).expanduser()
    if is_file_target(out) and out.is_dir():
        raise RequestError(f"cannot write {out}: it is a folder")
    if not is_file_target(out):
        claim_folder(out, overwrite=overwrite)
    for path in planned:  # in a folder claimed above every image name is ours; a lone .png target must be
        claim_file(path, inputs, overwrite=overwrite or not is_file_target(out), owned=is_generated_png)
    folder = out.parent if is_file_target(out) else out
    check_folder_writable(folder, f"cannot write to {folder}", RequestError)


def is_generated_png(path: Path) -> bool:
    """A PNG this package wrote (its `software` text chunk), which a rerun may replace."""
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and str(getattr(image, "text", {}).get("software", "")).startswith("flux2-int8")
    except (OSError, ValueError, SyntaxError):
        return False


def writing_images(out: str | Path) -> AbstractContextManager:
    """Around the image writes: a new or empty folder target is claimed (made and marked ours) before the first image.

    Marking at the claim, not at the end, lets a run killed midway be rerun into its own
    folder, and makes a second run into the same new folder see it as flux2-int8's.
    """
    if not is_file_target(out):
        mark_folder(out)
    return nullcontext()


def png_metadata(
    prompt: str,
    seed: int,
    steps: int,
    guidance: float,
    size: tuple[int, int],
    base: str,
    checkpoint: str | None,
    references: tuple[Path, ...],
    text_encoder: str | None = None,
    loras: Sequence[str] = (),
    fused_loras: bool = False,
) -> dict[str, str]:
    """The text chunks of one generated PNG (reference images by file name; LoRAs as given, when any)."""
    lora_chunks = {"loras": json.dumps(list(loras)), "lora_mode": "fused" if fused_loras else "unfused"} if loras else {}
    return {
        "prompt": prompt,
        "seed": str(seed),
        "steps": str(steps),
        "guidance": str(guidance),
        "width": str(size[0]),
        "height": str(size[1]),
        "base": base,
        "checkpoint": checkpoint or "the base's transformer",
        "text_encoder": text_encoder or "the base's text encoder",
        "references": json.dumps([path.name for path in references]),
        **lora_chunks,
        "software": f"flux2-int8 {__version__}",
    }


class NonFiniteImageError(RequestError):
    """The pipeline produced NaN or infinite pixels: never written as a success."""


def check_finite_image(pixels: Any, prompt: str, seed: int) -> None:
    """Refuse a decoded image (array or tensor of floats) holding NaN or inf, naming the prompt and seed.

    diffusers turns NaN pixels into black when it makes a PIL image, so an image that
    went wrong (a broken LoRA, an overflow in float16) would be saved as a black
    picture with exit 0. Every image the package writes (generate, eval, demo) passes here first.
    """
    import numpy as np

    values = pixels.detach().float().cpu().numpy() if hasattr(pixels, "detach") else np.asarray(pixels, dtype=np.float32)
    bad = int(values.size - np.isfinite(values).sum())
    if bad:
        shown = prompt if len(prompt) <= 60 else prompt[:57] + "..."
        raise NonFiniteImageError(
            f"the image for prompt {shown!r}, seed {seed} came out with {bad} non-finite (NaN/inf) values; nothing was written for it "
            "(a LoRA or checkpoint with extreme values, or float16 overflow: try --dtype bfloat16)"
        )


def write_png(path: Path, image: Image.Image, metadata: dict[str, str]) -> Path:
    """Write a PNG through a temporary file in the same folder, then rename: never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    for key, value in metadata.items():
        info.add_text(key, value)  # falls back to UTF-8 iTXt for non-Latin-1 prompts
    temporary = temporary_beside(path)  # unique, created here: the clean-up never removes someone else's file
    try:
        with temporary.open("wb") as handle:
            image.save(handle, format="PNG", pnginfo=info)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
