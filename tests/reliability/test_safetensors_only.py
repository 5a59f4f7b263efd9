"""Item 3 of issue 14: a base component stored only as a pickle is refused by name and never unpickled."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from reliability_helpers import TINY_GENERATE, TINY_QUANTIZE, copy_tiny_base, run_cli


class _Planted:
    """Unpickling this creates the file it names: proof that something unpickled it."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture(params=["vae", "text_encoder", "transformer"])
def pickled_base(request, tmp_path) -> tuple[Path, str, Path]:
    """The tiny base with one component's safetensors replaced by a booby-trapped `.bin` pickle."""
    base = copy_tiny_base(tmp_path / "base")
    folder = base / request.param
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    trap = tmp_path / "unpickled"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Planted(trap)))
    return base, request.param, trap


def test_generate_refuses_a_pickle_only_component_by_name(pickled_base, tmp_path):
    base, component, trap = pickled_base
    outcome = run_cli("generate", "--base", base, "--prompt", "a cube", "--out", tmp_path / "out", *TINY_GENERATE)
    outcome.assert_one_error_line(2, f"'{component}'", "pickle", "safe_serialization=True")
    assert not trap.exists()
    assert not (tmp_path / "out").exists()


def test_quantize_refuses_a_pickle_only_component(pickled_base, tmp_path):
    base, component, trap = pickled_base
    run_cli("quantize", "--base", base, "--out", tmp_path / "q.safetensors", *TINY_QUANTIZE).assert_one_error_line(2, f"'{component}'", "pickle")
    assert not trap.exists()


def test_a_component_given_as_a_checkpoint_may_be_a_pickle_in_the_base(tmp_path):
    """The base's own transformer weights are not read when --transformer replaces them."""
    base = copy_tiny_base(tmp_path / "base")
    (base / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    (base / "transformer" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(_Planted(tmp_path / "unpickled")))
    checkpoint = base / "transformer-bf16.safetensors"
    outcome = run_cli("generate", "--base", base, "--transformer", checkpoint, "--prompt", "a cube", "--out", tmp_path / "out", *TINY_GENERATE)
    assert outcome.code == 0, outcome.stderr
    assert not (tmp_path / "unpickled").exists()
