"""What the demo produced: its tasks and their results, shared by the runner and the page."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Task:
    name: str
    prompt: str
    references: tuple[str, ...]  # file names in the demo folder (nano draws from text only: none)
    seed: int


@dataclass(frozen=True)
class TaskResult:
    task: Task
    bf16_file: str
    int8_file: str
    diff_file: str
    bf16_seconds: float
    int8_seconds: float
    psnr_db: float
    held_out: bool  # the prompt is one nano never trained on
    read_bf16: str  # what the scorer read in each picture
    read_int8: str


@dataclass(frozen=True)
class DemoResult:
    out: Path
    index: Path
    tasks: list[TaskResult]
    steps: int
    size: int
    device: str
    quantize_seconds: float
    total_seconds: float
    bf16_checkpoint_bytes: int
    int8_checkpoint_bytes: int
