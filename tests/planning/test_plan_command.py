"""`flux2-int8 plan` and `inspect` on a pipeline folder: header-only, no torch, one clear error for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli_helpers import run_cli
from flux2_int8.planning import parse_memory


@pytest.fixture(scope="module")
def klein_9b(tmp_path_factory):
    from flux2_int8.bench.header_only import write_header_only_int8_transformer, write_header_only_pipeline

    folder = tmp_path_factory.mktemp("k9")
    return write_header_only_pipeline(folder / "pipeline", "klein-9b"), write_header_only_int8_transformer(folder / "int8.safetensors", "klein-9b")


def test_memory_sizes_are_read_as_cards_are_sold():
    assert parse_memory("24GB") == parse_memory("24GiB") == parse_memory("24 G") == 24 << 30
    assert parse_memory("12000MB") == 12000 << 20 and parse_memory(1234) == 1234


def test_plan_imports_no_torch_and_answers_from_headers(klein_9b):
    folder, int8 = klein_9b
    script = (
        "import sys, json; from flux2_int8.cli import main; "
        f"code = main(['plan', '--base', {str(folder)!r}, '--transformer', {str(int8)!r}, '--text-encoder', 'int8', '--gpu-memory', '16GB', '--json']); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["choice"] == "model" and plan["peaks"]["none"] > 16 << 30 >= plan["peaks"]["model"]
    encoder = next(c for c in plan["components"] if c["name"] == "text_encoder")
    assert "INT8 at load" in encoder["source"]


def test_plan_text_says_what_fits_which_card(klein_9b):
    folder, int8 = klein_9b
    code, out, err = run_cli("plan", "--base", str(folder), "--transformer", str(int8), "--gpu-memory", "24GB")
    assert code == 0, err
    assert "27 of 36 layers" in out and "choice for 24.00 GiB: none" in out
    assert "fits: 24 GB" in out


def test_bad_plan_input_is_one_error_line(klein_9b, tmp_path):
    folder, int8 = klein_9b
    code, _, err = run_cli("plan", "--base", str(folder), "--gpu-memory", "lots")
    assert code == 2 and err.startswith("Error: GPU memory 'lots'") and err.count("\n") == 1
    code, _, err = run_cli("plan", "--base", str(tmp_path), "--transformer", str(int8))
    assert code == 2 and "model_index.json" in err
    code, _, err = run_cli("plan", "--base", "klein-9b")  # the tests run offline (HF_HUB_OFFLINE=1), nothing cached
    assert code == 2 and err.startswith("Error: planning 'black-forest-labs/FLUX.2-klein-9B'") and "local pipeline folder" in err


def test_inspect_on_a_pipeline_folder_prints_its_plan(klein_9b):
    folder, _ = klein_9b
    code, out, err = run_cli("inspect", str(folder), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["memory_plan"]["weight_bytes"] == sum(c["weight_bytes"] for c in summary["memory_plan"]["components"])
    code, out, _ = run_cli("inspect", str(folder))
    assert "memory plan for" in out and "peak per placement" in out


def test_a_hub_file_is_planned_from_its_header_alone(klein_9b, monkeypatch):
    """`owner/repo/file.safetensors`: huggingface_hub's range-request header reader, answered here from the local file."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import SafetensorsFileMetadata, TensorInfo

    from flux2_int8 import plan_memory
    from flux2_int8.formats.header import read_header

    folder, int8 = klein_9b
    asked = []

    def parse(self, repo_id, filename, revision=None, **kwargs):
        asked.append((repo_id, filename))
        header = read_header(int8)
        tensors = {name: TensorInfo(dtype=info.dtype, shape=list(info.shape), data_offsets=(0, 0)) for name, info in header.tensors.items()}
        return SafetensorsFileMetadata(metadata=header.metadata, tensors=tensors)

    monkeypatch.setattr(HfApi, "parse_safetensors_file_metadata", parse)
    remote = plan_memory(folder, "someone/klein-int8/klein-9b-int8.safetensors", "int8")
    assert asked == [("someone/klein-int8", "klein-9b-int8.safetensors")]
    assert remote.peaks == plan_memory(folder, int8, "int8").peaks
