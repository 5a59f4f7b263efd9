"""Running the CLI as a user would (in this process, or as a child process for signals, mounts and
permissions) and checking what the issue asks of every failure: exit code, one `Error:` line, and
every file that was there before left byte-identical."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
# The tiny pipeline's smallest settings: a second per run on a CPU.
TINY_QUANTIZE = ("--samples", "1", "--steps", "1", "--resolution", "64", "--device", "cpu", "--dtype", "float32", "--quiet")
TINY_GENERATE = ("--steps", "1", "--width", "64", "--height", "64", "--device", "cpu", "--dtype", "float32")


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    def assert_one_error_line(self, code: int = 2, *fragments: str) -> str:
        """The run exited with `code` and said one `Error:` line (containing `fragments`), no traceback."""
        assert self.code == code, (self.code, self.stderr)
        assert "Traceback" not in self.stderr, self.stderr
        errors = [line for line in self.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, self.stderr
        for fragment in fragments:
            assert fragment in errors[0], errors[0]
        return errors[0]


def run_cli(*args: str) -> Outcome:
    """`flux2-int8 ARGS` in this process (fast: torch is imported once)."""
    from flux2_int8.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit:
            code = int(exit.code or 0)
    return Outcome(code, stdout.getvalue(), stderr.getvalue())


def run_script(name: str, *args: object) -> Outcome:
    """`python scripts/NAME ARGS` in this process (the script's own `main`)."""
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), SRC.parent / "scripts" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = module.main([str(a) for a in args])
        except SystemExit as exit:
            code = int(exit.code or 0)
    return Outcome(code, stdout.getvalue(), stderr.getvalue())


def cli_command(*args: str | bytes) -> list[str | bytes]:
    return [sys.executable, "-m", "flux2_int8.cli", *args]


def child_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("FLUX2_INT8_DEBUG", None)
    return env


def run_child(command: list, timeout: float = 600) -> Outcome:
    done = subprocess.run(command, capture_output=True, env=child_env(), timeout=timeout)
    return Outcome(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under `roots` (or the file itself) -> sha256 of its bytes."""
    digests = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def leftovers(folder: Path) -> list[Path]:
    """Temporaries a failed write could have left: `.partial`, `.old`, and our staging folders."""
    return [p for p in folder.rglob("*") if p.name.endswith((".partial", ".old")) or ".partial" in p.name]


def copy_tiny_base(target: Path) -> Path:
    from flux2_int8.tiny import tiny_pipeline_cache

    shutil.copytree(tiny_pipeline_cache(), target)
    return target


def _can(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def as_unprivileged() -> list[str]:
    """A prefix that runs a command without the power to ignore file permissions (root ignores chmod 000).

    Not root: nothing. Root: a new user namespace (`unshare -U`), where the process keeps
    its uid but loses CAP_DAC_OVERRIDE over the machine's files. Skips where neither works.
    """
    if os.geteuid() != 0:
        return []
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"flux2-int8-permission-probe-{os.getpid()}"
    probe.write_text("x")
    probe.chmod(0)
    try:
        if _can(["unshare", "-U", "cat", str(probe)]) or not _can(["unshare", "-U", "true"]):
            pytest.skip("cannot drop root's permission override here (no user namespaces)")
    finally:
        probe.unlink()
    return ["unshare", "-U"]


def in_small_tmpfs(folder: Path, size: str, command: list) -> list:
    """`command` run where `folder` is a fresh tmpfs of `size` (private mount namespace); every path left
    in the mount after the command is printed on stdout after a `--- left:` line. Skips where a tmpfs cannot be mounted."""
    if shutil.which("unshare") is None or not _can(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=4k tmpfs {folder}"]):
        pytest.skip("cannot mount a small tmpfs here (needs unprivileged user and mount namespaces)")
    quoted = " ".join(_quote(part) for part in command)
    script = f"mount -t tmpfs -o size={size} tmpfs {_quote(str(folder))} && {{ {quoted}; code=$?; echo '--- left:'; find {_quote(str(folder))} -mindepth 1; exit $code; }}"
    return ["unshare", "-rm", "sh", "-c", script]


def _quote(part: str | bytes) -> str:
    import shlex

    return shlex.quote(part if isinstance(part, str) else os.fsdecode(part))


def left_in_mount(outcome: Outcome) -> list[str]:
    """The paths `in_small_tmpfs` listed after its command ran."""
    return [line for line in outcome.stdout.split("--- left:", 1)[1].splitlines() if line.strip()]


def write_tiny_lora(path: Path, hidden: int = 32, rank: int = 2) -> Path:
    """A kohya LoRA on the tiny model's first image-attention projection (`hidden` other than 32: one that does not fit)."""
    import torch
    from safetensors.torch import save_file

    name = "lora_unet_double_blocks_0_img_attn_proj"
    generator = torch.Generator().manual_seed(0)
    tensors = {
        f"{name}.lora_down.weight": torch.randn(rank, hidden, generator=generator) * 0.1,
        f"{name}.lora_up.weight": torch.randn(hidden, rank, generator=generator) * 0.1,
        f"{name}.alpha": torch.tensor(float(rank)),
    }
    save_file(tensors, str(path), metadata={"ss_network_module": "networks.lora_flux", "ss_network_dim": str(rank), "ss_network_alpha": str(rank)})
    return path
