"""Average the transformers of nano runs that continued from one start (a "model soup").

Runs resumed from the same weights with different seeds end near each other, and the
element-wise mean of their weights is a model of its own that is usually better than
either (Wortsman et al., 2022, "Model soups"). On nano, runs 12 and 13 each read 77.3 %
of 1152 training pictures right and their average 79.8 % (docs/nano.md), so the shipped
weights are such an average. Our own code because it is a dozen lines over safetensors.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, ConfigError
from ..outputs import claim_folder, input_files, staged_folder
from .model import pipeline_entries

TRANSFORMER_WEIGHTS = Path("transformer") / "diffusion_pytorch_model.safetensors"


def average_transformers(folders: Sequence[str | Path], out: str | Path, overwrite: bool = False) -> Path:
    """Write `out`: the first folder's pipeline with its transformer replaced by the mean over all folders.

    Each mean is taken in float32 and stored in the first folder's dtype; every folder
    must hold the same tensors with the same shapes (the same architecture). `out` is
    claimed first, like every output (`flux2_int8.outputs`): it may not hold an input
    and must be new, empty, made by flux2-int8, or `overwrite` given (then only the
    pipeline's own entries are replaced).
    """
    folders = [Path(folder).expanduser() for folder in folders]
    if len(folders) < 2:
        raise ConfigError(f"averaging needs two or more pipeline folders, got {len(folders)}")
    for folder in folders:
        pipeline_entries(folder)
    out = claim_folder(out, input_files(*folders), overwrite)
    states = [_transformer_state(folder) for folder in folders]
    first = states[0]
    for folder, state in zip(folders[1:], states[1:], strict=True):
        _check_same_tensors(folders[0], first, folder, state)
    mean = {name: (sum(state[name].float() for state in states) / len(states)).to(first[name].dtype) for name in first}
    return _write(folders[0], mean, out)


def _transformer_state(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / TRANSFORMER_WEIGHTS
    if not path.is_file():
        raise CheckpointError(path, "missing: expected a nano pipeline folder (as scripts/train_nano.py writes)")
    return load_file(path)


def _check_same_tensors(first_folder: Path, first: dict[str, torch.Tensor], folder: Path, state: dict[str, torch.Tensor]) -> None:
    path, first_path = folder / TRANSFORMER_WEIGHTS, first_folder / TRANSFORMER_WEIGHTS
    for name in sorted(first.keys() - state.keys()):
        raise CheckpointError(path, f"missing, but {first_path} has it: the transformers differ in architecture", name)
    for name in sorted(state.keys() - first.keys()):
        raise CheckpointError(path, f"not in {first_path}: the transformers differ in architecture", name)
    for name, tensor in first.items():
        if state[name].shape != tensor.shape:
            raise CheckpointError(path, f"shape {list(state[name].shape)}, expected {list(tensor.shape)} as in {first_path}", name)


def _write(template: Path, mean: dict[str, torch.Tensor], out: Path) -> Path:
    """The template's pipeline with the mean swapped in, built beside `out` and moved in entry by entry: no entry is half-written."""
    with staged_folder(out) as staging:
        for name in pipeline_entries(template):
            copy = shutil.copytree if (template / name).is_dir() else shutil.copy2
            copy(template / name, staging / name)
        save_file(mean, staging / TRANSFORMER_WEIGHTS, metadata={"format": "pt"})
    return out
