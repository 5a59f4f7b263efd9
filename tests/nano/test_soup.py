"""Averaging nano transformers (`nano.soup`, `scripts/average_nano.py`): the mean, the folder, the refusals."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from flux2_int8.errors import CheckpointError, ConfigError
from flux2_int8.nano import nano_folder
from flux2_int8.nano.soup import TRANSFORMER_WEIGHTS, average_transformers

REPOSITORY = Path(__file__).resolve().parents[2]


def _copy_with_transformer(tmp_path: Path, name: str, change) -> Path:
    folder = tmp_path / name
    shutil.copytree(nano_folder(), folder)
    state = load_file(folder / TRANSFORMER_WEIGHTS)
    save_file(change(state), folder / TRANSFORMER_WEIGHTS)
    return folder


def test_the_average_is_the_element_wise_mean_in_the_first_folders_dtype(tmp_path):
    generator = torch.Generator().manual_seed(0)
    a = _copy_with_transformer(tmp_path, "a", lambda state: state)
    b = _copy_with_transformer(tmp_path, "b", lambda state: {k: (v.float() + torch.randn(v.shape, generator=generator)).to(v.dtype) for k, v in state.items()})
    out = average_transformers([a, b], tmp_path / "soup")
    first, second, mean = (load_file(folder / TRANSFORMER_WEIGHTS) for folder in (a, b, out))
    assert mean.keys() == first.keys()
    for name, tensor in mean.items():
        assert tensor.dtype == first[name].dtype
        assert torch.equal(tensor, ((first[name].float() + second[name].float()) / 2).to(tensor.dtype)), name
    assert not torch.equal(mean["x_embedder.weight"], first["x_embedder.weight"])
    # Everything but the transformer's weights is the first folder's.
    assert (out / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == (a / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert (out / "transformer" / "config.json").read_text() == (a / "transformer" / "config.json").read_text()


def test_a_folder_of_another_architecture_is_refused_by_name_and_nothing_is_written(tmp_path):
    a = _copy_with_transformer(tmp_path, "a", lambda state: state)
    fewer = _copy_with_transformer(tmp_path, "fewer", lambda state: {k: v for k, v in state.items() if not k.startswith("single_transformer_blocks.5.")})
    with pytest.raises(CheckpointError, match=r"fewer/transformer/diffusion_pytorch_model.safetensors: tensor 'single_transformer_blocks\.5\..*': missing"):
        average_transformers([a, fewer], tmp_path / "soup")
    wider = _copy_with_transformer(tmp_path, "wider", lambda state: {**state, "x_embedder.weight": torch.zeros(65, state["x_embedder.weight"].shape[1], dtype=torch.bfloat16)})
    with pytest.raises(CheckpointError, match=r"tensor 'x_embedder.weight': shape \[65, "):
        average_transformers([a, wider], tmp_path / "soup")
    with pytest.raises(ConfigError, match="two or more"):
        average_transformers([a], tmp_path / "soup")
    assert not (tmp_path / "soup").exists() and not list(tmp_path.glob("*.partial"))


def test_the_script_writes_the_soup_or_says_what_is_wrong(tmp_path):
    a = _copy_with_transformer(tmp_path, "a", lambda state: state)
    script = [sys.executable, str(REPOSITORY / "scripts" / "average_nano.py"), "--out", str(tmp_path / "soup")]
    done = subprocess.run([*script, str(a), str(a)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "soup" / TRANSFORMER_WEIGHTS).read_bytes() != b""
    missing = subprocess.run([*script, str(a), str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 2 and "nowhere: no such folder" in missing.stderr
    assert "Traceback" not in missing.stderr
