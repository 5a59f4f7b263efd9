"""What to generate, checked before any model loads.

Loading a klein pipeline takes tens of seconds and gigabytes; a typo in an image
path or a width of 1000 should fail before that, with a message naming the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .. import limits
from ..errors import Flux2Int8Error
from ..jsonlines import BOM, parse_json_object
from ..textfiles import file_problem, read_text_lines

# Black Forest Labs documents up to 4 reference images for FLUX.2 [klein] 4B and 9B
# (docs.bfl.ai, "Reference Images per Model"). diffusers' Flux2KleinPipeline sets no
# limit, but each reference adds its full token count to every attention call.
MAX_REFERENCE_IMAGES = 4
MIN_SIDE = limits.MIN_SIDE
SIDE_MULTIPLE = limits.SIDE_MULTIPLE
MAX_SEED = limits.MAX_SEED + 1  # exclusive: torch.Generator.manual_seed takes 64-bit seeds; image k of a request uses seed + k
_JSONL_KEYS = ("prompt", "images", "seed")


class RequestError(Flux2Int8Error):
    """A generation input (prompt, reference image, size, steps, output path) is unusable."""


@dataclass(frozen=True)
class Request:
    """One prompt with its reference images (none: text-to-image; one: edit; several: composition)."""

    prompt: str
    images: tuple[Path, ...] = ()
    seed: int = 0
    source: str = "--prompt"  # where it came from, for error messages


@dataclass(frozen=True)
class Sampling:
    """Settings shared by every request of a run; None means the pipeline's default."""

    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    num_images: int = 1


def check_sampling(sampling: Sampling) -> None:
    """Refuse steps, image counts, guidance and sizes outside `flux2_int8.limits` (sizes: what klein supports)."""
    if sampling.steps is not None:
        limits.STEPS.check(sampling.steps, "steps")
    limits.NUM_IMAGES.check(sampling.num_images, "num-images")
    if sampling.guidance is not None:
        limits.GUIDANCE.check(sampling.guidance, "guidance")
    limits.check_side(sampling.width, "width")
    limits.check_side(sampling.height, "height")


def check_request(request: Request) -> None:
    """Refuse an empty prompt, too many references, and references that are missing, unreadable or too small."""
    if not request.prompt.strip():
        raise RequestError(f"{request.source}: the prompt is empty")
    if not is_utf8_text(request.prompt):
        raise RequestError(f"{request.source}: the prompt is not valid UTF-8 text (a byte the terminal's encoding could not decode); retype it or pass it in a UTF-8 --prompts file")
    if not 0 <= request.seed < MAX_SEED:
        raise RequestError(f"{request.source}: the seed must be an integer in [0, 2**63), got {request.seed}")
    if len(request.images) > MAX_REFERENCE_IMAGES:
        raise RequestError(
            f"{request.source}: {len(request.images)} reference images given; FLUX.2 [klein] accepts at most {MAX_REFERENCE_IMAGES}"
        )
    for path in request.images:
        load_reference(path).close()


def is_utf8_text(text: str) -> bool:
    """False for a string holding undecodable bytes (Python keeps them from argv as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load_reference(path: Path) -> Image.Image:
    """Open a reference image as RGB, refusing files that are missing, not regular files (a FIFO would block), not images, or under 64 px a side."""
    problem = file_problem(path)
    if problem is not None:
        raise RequestError(f"reference image {path}: {problem}")
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except FileNotFoundError:
        raise RequestError(f"reference image {path}: no such file") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as error:
        raise RequestError(f"reference image {path}: cannot be read as an image ({error})") from None
    if min(image.size) < MIN_SIDE:
        raise RequestError(f"reference image {path} is {image.width}x{image.height}; the model needs at least {MIN_SIDE} px a side")
    return image


def read_prompts_file(path: str | Path, default_seed: int = 0) -> list[Request]:
    """Requests from a prompts file: one prompt per line, or JSONL objects {prompt, images, seed}.

    Lines may mix the two forms; blank lines are skipped. Relative image paths are
    read from the prompts file's folder, so a prompts file travels with its images.
    """
    path = Path(path)
    lines = read_text_lines(path, "prompts file", error=RequestError)  # a BOM (Windows editors) is stripped per line below
    stripped = [line.strip().lstrip(BOM).strip() for line in lines]
    requests = [_parse_line(line, f"{path} line {number}", path.parent, default_seed) for number, line in enumerate(stripped, 1) if line]
    if not requests:
        raise RequestError(f"prompts file {path}: holds no prompts")
    return requests


def _parse_line(line: str, source: str, folder: Path, default_seed: int) -> Request:
    if not line.startswith("{"):
        return Request(line, seed=default_seed, source=source)
    entry = parse_json_object(line, source, RequestError, _JSONL_KEYS)
    prompt, images, seed = entry.get("prompt"), entry.get("images", []), entry.get("seed", default_seed)
    if not isinstance(prompt, str):
        raise RequestError(f"{source}: 'prompt' must be a string")
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise RequestError(f"{source}: 'images' must be a list of image paths")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < MAX_SEED:
        raise RequestError(f"{source}: 'seed' must be an integer in [0, 2**63)")
    return Request(prompt, tuple(folder / Path(i).expanduser() for i in images), seed, source)
