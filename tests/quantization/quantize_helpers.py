"""Helpers of the quantize tests: the CLI in-process, the shared run, model outputs on captured inputs."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from cli_helpers import run_cli

# 3 samples (one t2i, one edit, one composition), 2 of the 4 steps, 64x64: about a second.
TINY_ARGS = ("--samples", "3", "--steps", "2", "--resolution", "64", "--device", "cpu", "--quiet")


def quantize_json(out: Path, *extra: str) -> dict:
    """Run `flux2-int8 quantize --json` on the tiny pipeline (float32 calibration) and parse its report."""
    from flux2_int8.tiny import tiny_pipeline_cache

    code, stdout, stderr = run_cli("quantize", "--base", str(tiny_pipeline_cache()), "--out", str(out), *TINY_ARGS, "--dtype", "float32", "--json", *extra)
    assert code == 0, stderr
    return json.loads(stdout)


def transformer_output(model, inputs: list[dict]) -> torch.Tensor:
    """The model's outputs on every captured input, concatenated (float64 inputs for a float64 model)."""
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    outputs = []
    with torch.no_grad():
        for kwargs in inputs:
            cast = {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in kwargs.items()}
            outputs.append(model(**cast)[0].double())
    return torch.cat(outputs)
