"""One local Ray instance for the whole test session (2 CPUs, a small object store), and the tiny model's files.

Starting Ray costs seconds and each worker pool loads torch anew, so every Ray test
shares this instance; commands given `--ray local` use it (a Ray already running in
the process is taken as it is).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scale_out_helpers import SUITE


@pytest.fixture(scope="session")
def ray_session():
    ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'flux2-int8[ray]'")
    pytest.importorskip("ray.data")
    if not ray.is_initialized():
        ray.init(num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    from flux2_int8.tiny import tiny_pipeline_cache

    return tiny_pipeline_cache()


@pytest.fixture(scope="session")
def int8_candidate(tiny_base, tmp_path_factory) -> Path:
    """The tiny transformer as an INT8 BFL file."""
    from diffusers import Flux2Transformer2DModel

    from flux2_int8.testing.checkpoints import int8_state, write_bfl
    from flux2_int8.quantization.one_forward import one_forward_amax
    from flux2_int8.tiny import TINY_TRANSFORMER_CONFIG, random_transformer_inputs

    model = Flux2Transformer2DModel.from_pretrained(tiny_base / "transformer").float().eval()
    amax = one_forward_amax(model, random_transformer_inputs(TINY_TRANSFORMER_CONFIG))
    return write_bfl(tmp_path_factory.mktemp("candidate") / "int8.safetensors", int8_state(model, amax))


@pytest.fixture(scope="session")
def suite_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "tiny.jsonl"
    path.write_text("\n".join(json.dumps(record) for record in SUITE) + "\n")
    return path
