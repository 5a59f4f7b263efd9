"""What a server is started with, checked before anything heavy is imported.

Plain dataclasses: the `serve` command builds and checks them before it imports
torch or FastAPI, so a bad flag (a public address without a key, a zero queue)
costs a fraction of a second, not a model load.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Flux2Int8Error

API_KEY_ENV = "FLUX2_INT8_API_KEY"
# klein's documented maximum of reference images (generate.MAX_REFERENCE_IMAGES; a test keeps them equal).
MAX_REFERENCES = 4
LORA_SUFFIX = ".safetensors"


class ServeConfigError(Flux2Int8Error):
    """A server option that cannot work (an open address without a key, a limit of zero...)."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; everything past these is refused before any work.

    `max_pixels` bounds both the size asked for and each reference image (a PNG of
    a few KiB can declare a billion pixels: the header is read before the pixels).
    """

    max_pixels: int = 1024 * 1024
    max_steps: int = 50
    max_n: int = 4
    max_prompt_chars: int = 2000
    max_body_bytes: int = 32 * 2**20
    max_references: int = MAX_REFERENCES
    max_guidance: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_steps", "max_n", "max_prompt_chars", "max_body_bytes", "max_references"):
            if getattr(self, name) < 1:
                raise ServeConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_references > MAX_REFERENCES:
            raise ServeConfigError(f"--max-references {self.max_references}: FLUX.2 [klein] takes at most {MAX_REFERENCES} reference images")


@dataclass(frozen=True)
class ModelSpec:
    """What each server process (or Ray Serve replica) loads: the `load_pipeline` arguments, as plain values."""

    base: str = "nano"
    transformer: str | None = None
    text_encoder: str | None = None
    device: str | None = None
    dtype: str = "bfloat16"
    compile: str = "off"
    activations: str = "auto"
    lora_dir: str | None = None
    threads: int | None = None
    local_files_only: bool = False
    random_weights: bool = False  # benchmarks: the full-size variant `base` with random INT8 weights, no download

    def __post_init__(self) -> None:
        if self.random_weights:
            from ..variants import VARIANTS

            if str(self.base).strip().lower() not in VARIANTS:
                raise ServeConfigError(f"--random-weights builds a full-size klein variant ({', '.join(VARIANTS)}), not '{self.base}'")
            if self.transformer is not None or self.text_encoder is not None or self.lora_dir is not None:
                raise ServeConfigError("--random-weights makes every weight itself: it takes no --transformer, --text-encoder or --lora-dir")


@dataclass(frozen=True)
class ServeSettings:
    """How the server listens, batches and queues.

    `batch_wait_ms` is how long the oldest waiting request may wait for others to
    share its pipeline call; `max_queue` bounds the requests waiting (not those
    running); `request_timeout` is the seconds a request may spend, queue included,
    before it is answered 503 and its queued work dropped.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_batch: int = 4
    batch_wait_ms: float = 20.0
    max_queue: int = 16
    request_timeout: float = 300.0
    cors_origins: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ServeConfigError(f"--port {self.port}: expected 0 (any free port) to 65535")
        if self.max_batch < 1:
            raise ServeConfigError(f"--max-batch {self.max_batch}: give at least 1 (1 turns batching off)")
        if self.max_queue < 1:
            raise ServeConfigError(f"--max-queue {self.max_queue}: give at least 1")
        if not (math.isfinite(self.batch_wait_ms) and self.batch_wait_ms >= 0):
            raise ServeConfigError(f"--batch-wait-ms {self.batch_wait_ms}: expected a number of milliseconds >= 0")
        if not (math.isfinite(self.request_timeout) and self.request_timeout > 0):
            raise ServeConfigError(f"--request-timeout {self.request_timeout}: expected a number of seconds > 0")
        if self.api_key is not None and not self.api_key.strip():
            raise ServeConfigError("the API key is empty: give a non-empty --api-key (or unset the variable)")
        if self.api_key is None and not is_loopback(self.host):
            raise ServeConfigError(
                f"--host {self.host} accepts connections from other machines: give an API key "
                f"(--api-key or {API_KEY_ENV}) to serve there, or keep the default 127.0.0.1"
            )


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def lora_files(lora_dir: str | None) -> dict[str, Path]:
    """The LoRAs a request may name: `NAME.safetensors` files directly in `lora_dir`, by NAME.

    A request names a key of this table, never a path, so no request can reach a file
    outside the folder (no `..`, no absolute path, no symlink followed out of it).
    """
    if lora_dir is None:
        return {}
    folder = Path(lora_dir).expanduser()
    if not folder.is_dir():
        raise ServeConfigError(f"--lora-dir {folder}: no such folder")
    root = folder.resolve()
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix != LORA_SUFFIX or not path.is_file():
            continue
        if path.resolve().parent != root:
            raise ServeConfigError(f"--lora-dir {folder}: {path.name} links outside the folder; copy the file in instead")
        found[path.stem] = path
    if not found:
        raise ServeConfigError(f"--lora-dir {folder}: holds no {LORA_SUFFIX} files")
    return found
