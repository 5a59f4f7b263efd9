"""What a result was made with: package versions, the device, the command and the date.

Reports (eval's run.json and report.html, bench's JSON and pages) print these in their
header, so a number can always be traced to the software and hardware behind it.
"""

from __future__ import annotations

import importlib.metadata
import platform
import secrets
import shlex
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from .version import __version__

# Shown in report headers, in this order; triton only where it is installed.
PACKAGES = ("torch", "diffusers", "transformers", "triton")


def package_version(name: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """flux2-int8, torch, diffusers, transformers, triton (None: not installed) and Python."""
    import torch

    found: dict[str, str | None] = {"flux2_int8": __version__}
    for name in PACKAGES:
        found[name] = torch.__version__ if name == "torch" else package_version(name)
    found["python"] = platform.python_version()
    return found


def device_description(device: Any) -> dict[str, str | None]:
    """The device type, its name (the GPU's, or the CPU's), and the CUDA version on a GPU."""
    import torch

    device = torch.device(device)
    on_cuda = device.type == "cuda"
    return {
        "device_type": device.type,
        "device_name": torch.cuda.get_device_name(device) if on_cuda else cpu_name(),
        "cuda": torch.version.cuda if on_cuda else None,
    }


def cpu_name() -> str:
    """The CPU's model name ('AMD EPYC 9654', from /proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as typed (`argv`, default this process's), shell-quoted so it can be pasted back."""
    return shlex.join(list(sys.argv if argv is None else argv))


def provenance(device: Any, command: str | None = None) -> dict[str, Any]:
    """One record: date, command, device and versions (eval's run.json keeps one per run; `id` tells two runs of one second apart)."""
    return {"id": secrets.token_hex(6), "date_utc": utc_now(), "command": command or command_line(), **device_description(device), "versions": versions()}


def versions_line(found: dict[str, str | None]) -> str:
    """'flux2-int8 0.4.0, torch 2.14.1, ...' from `versions()`, leaving out what is not installed."""
    names = {"flux2_int8": "flux2-int8", "python": "Python"}
    return ", ".join(f"{names.get(name, name)} {version}" for name, version in found.items() if version)
