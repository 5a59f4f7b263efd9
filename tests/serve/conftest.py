"""The package's shared server (nano, an API key, a LoRA folder, small limits) and an openai client for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_helpers import API_KEY, start_server, write_nano_lora


@pytest.fixture(scope="package")
def lora_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    write_nano_lora(folder / "style.safetensors")
    (folder / "notes.txt").write_text("not a LoRA")
    return folder


@pytest.fixture(scope="package")
def server(tmp_path_factory, lora_dir):
    """The package's shared server: nano, an API key, a LoRA folder, small body and pixel limits."""
    running = start_server(tmp_path_factory.mktemp("server"), "--api-key", API_KEY, "--lora-dir", str(lora_dir), "--max-body-mb", "1", "--max-pixels", str(256 * 256), "--max-batch", "4", "--batch-wait-ms", "50", "--request-timeout", "120")
    yield running
    assert running.stop() == 0, running.stderr.read_text()[-3000:]


@pytest.fixture(scope="package")
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(api_key=API_KEY, base_url=f"{server.url}/v1", max_retries=0, timeout=120)
