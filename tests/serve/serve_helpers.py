"""Starting `flux2-int8 serve` as a user does (a subprocess on 127.0.0.1, any free port), and a LoRA for nano."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

API_KEY = "test-key-0123456789"
START_SECONDS = 180  # imports and nano's load on a busy 2-core machine


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    port: int
    stderr: Path

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def start_server(folder: Path, *flags: str) -> Server:
    """Start the server on 127.0.0.1 port 0 with `--json`, and wait for the line with its address."""
    stderr = folder / "server.stderr"
    env = {**os.environ, "FLUX2_INT8_API_KEY": ""}
    env.pop("FLUX2_INT8_API_KEY")
    process = subprocess.Popen(
        [sys.executable, "-m", "flux2_int8.cli", "serve", "--host", "127.0.0.1", "--port", "0", "--json", *flags],
        stdout=subprocess.PIPE, stderr=stderr.open("wb"), text=True, env=env,
    )
    deadline = time.monotonic() + START_SECONDS
    line = ""
    while time.monotonic() < deadline and process.poll() is None:
        line = process.stdout.readline()
        if line.startswith("{"):
            break
    if not line.startswith("{"):
        process.kill()
        raise AssertionError(f"the server did not start: {stderr.read_text()[-3000:]}")
    found = json.loads(line)
    return Server(process, found["url"], found["port"], stderr)


def write_nano_lora(path: Path, seed: int = 0, size: float = 3.0) -> Path:
    """A LoRA for nano's attention projections in diffusers' naming, strong enough to change a picture."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    hidden, rank = 64, 4
    tensors = {}
    for block in range(2):
        for name in ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj"):
            prefix = f"transformer.transformer_blocks.{block}.attn.{name}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, hidden, generator=generator) * size / hidden**0.5
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(hidden, rank, generator=generator) * size / rank**0.5
    save_file(tensors, str(path))
    return path
