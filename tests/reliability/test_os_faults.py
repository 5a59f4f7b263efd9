"""Item 4 of issue 14: permissions, a full disk, Ctrl-C and damaged cache entries end in one `Error:` line
(exit 2, 130 for Ctrl-C), with no temporary left and every earlier file intact.

The disk-full cases run the CLI in a private mount namespace over a tiny tmpfs and skip
where one cannot be mounted; the permission cases drop root's override with a user
namespace (skipped where there is none); Ctrl-C is a real SIGINT sent to a child process.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image
from reliability_helpers import (
    TINY_GENERATE,
    TINY_QUANTIZE,
    Outcome,
    as_unprivileged,
    child_env,
    cli_command,
    copy_tiny_base,
    in_small_tmpfs,
    left_in_mount,
    leftovers,
    run_child,
    run_cli,
    snapshot,
)

EVAL_TINY = ("--limit", "1", "--width", "64", "--height", "64", "--steps", "1", "--dtype", "float32", "--device", "cpu")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return copy_tiny_base(tmp_path_factory.mktemp("reliability") / "base")


# --- permissions -------------------------------------------------------------------------------


def test_an_unreadable_checkpoint_is_one_line(tmp_path, base):
    prefix = as_unprivileged()
    checkpoint = tmp_path / "q.safetensors"
    checkpoint.write_bytes((base / "transformer-bf16.safetensors").read_bytes())
    checkpoint.chmod(0)
    run_child([*prefix, *cli_command("inspect", str(checkpoint))]).assert_one_error_line(2, str(checkpoint), "Permission denied")


def test_an_unreadable_base_component_is_one_line(tmp_path, base):
    prefix = as_unprivileged()
    unreadable = copy_tiny_base(tmp_path / "base")
    (unreadable / "vae" / "diffusion_pytorch_model.safetensors").chmod(0)
    outcome = run_child([*prefix, *cli_command("generate", "--base", str(unreadable), "--prompt", "a cube", "--out", str(tmp_path / "out"), *TINY_GENERATE)])
    outcome.assert_one_error_line(2, "ermission denied")
    assert not list((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True


def test_an_unwritable_out_folder_is_refused_before_any_work(tmp_path, base):
    prefix = as_unprivileged()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    outcome = run_child([*prefix, *cli_command("quantize", "--base", str(base), "--out", str(locked / "q.safetensors"), *TINY_QUANTIZE)])
    outcome.assert_one_error_line(2, str(locked), "not writable")


# --- a full disk -------------------------------------------------------------------------------


def test_disk_full_during_quantize(tmp_path, base):
    mount = tmp_path / "disk"
    mount.mkdir()
    outcome = run_child(in_small_tmpfs(mount, "64k", cli_command("quantize", "--base", str(base), "--out", str(mount / "q.safetensors"), *TINY_QUANTIZE)))
    outcome.assert_one_error_line(2, "no space left", "q.safetensors")
    assert left_in_mount(outcome) == []


def test_disk_full_during_generate_keeps_earlier_images(tmp_path, base):
    mount = tmp_path / "disk"
    mount.mkdir()
    out = mount / "images"
    script = [*cli_command("generate", "--base", str(base), "--prompt", "a cube", "--out", str(out), "--num-images", "8", *TINY_GENERATE)]
    outcome = run_child(in_small_tmpfs(mount, "48k", script))
    outcome.assert_one_error_line(2, "no space left")
    left = left_in_mount(outcome)
    assert not [p for p in left if ".partial" in p], left
    assert any(p.endswith(".png") for p in left), left  # the images written before the disk filled are kept


def test_disk_full_during_eval(tmp_path, base):
    mount = tmp_path / "disk"
    mount.mkdir()
    script = cli_command("eval", "--base", str(base), "--candidate", f"bf16copy={base / 'transformer-bf16.safetensors'}", "--out", str(mount / "e"), "--metrics", "psnr,fidelity", *EVAL_TINY)
    outcome = run_child(in_small_tmpfs(mount, "16k", script))
    outcome.assert_one_error_line(2, "no space left")
    assert not [p for p in left_in_mount(outcome) if ".partial" in p]


# --- Ctrl-C ------------------------------------------------------------------------------------


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_when(command: list[str], ready, tmp_path: Path, timeout: float = 300) -> Outcome:
    """Start `command`, send SIGINT once `ready(stderr_so_far)` holds, and collect what it said."""
    stderr_file = tmp_path / "stderr.txt"
    with stderr_file.open("wb") as sink:
        # A shell that starts pytest in the background hands it SIGINT ignored, and children
        # inherit that; a user's Ctrl-C reaches a process with the default action.
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sink, env=child_env(), preexec_fn=_default_sigint)
        deadline = time.monotonic() + timeout
        while not ready(stderr_file.read_text(errors="replace")):
            assert child.poll() is None, f"finished before it could be interrupted: {stderr_file.read_text()}"
            assert time.monotonic() < deadline, "never got ready"
            time.sleep(0.2)
        child.send_signal(signal.SIGINT)
        stdout, _ = child.communicate(timeout=120)
    return Outcome(child.returncode, stdout.decode(errors="replace"), stderr_file.read_text(errors="replace"))


def test_ctrl_c_during_quantize_exits_130_and_leaves_no_file(tmp_path, base):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.safetensors").write_bytes(b"an earlier result")
    before = snapshot(out)
    command = cli_command("quantize", "--base", str(base), "--out", str(out / "q.safetensors"), "--samples", "400", "--steps", "4", "--resolution", "64", "--device", "cpu", "--dtype", "float32")
    outcome = interrupt_when(command, lambda stderr: "calibrating" in stderr and "1/400" in stderr, tmp_path)
    outcome.assert_one_error_line(130, "interrupted")
    assert snapshot(out) == before
    assert not leftovers(tmp_path)


def test_ctrl_c_during_generate_keeps_earlier_images_whole(tmp_path, base):
    out = tmp_path / "out"
    assert run_cli("generate", "--base", base, "--prompt", "first", "--out", out, *TINY_GENERATE).code == 0
    before = snapshot(out)
    command = cli_command("generate", "--base", str(base), "--prompt", "second", "--seed", "1", "--num-images", "200", "--out", str(out), *TINY_GENERATE)
    outcome = interrupt_when(command, lambda _stderr: len(list(out.glob("*.png"))) >= 2, tmp_path)
    outcome.assert_one_error_line(130, "interrupted")
    after = snapshot(out)
    assert {k: after[k] for k in before} == before
    assert not leftovers(out)
    for path in out.glob("*.png"):
        with Image.open(path) as image:
            image.load()  # every file there is a whole PNG


# --- damaged cache entries in an evaluation folder ---------------------------------------------


def test_a_damaged_fidelity_record_names_the_file_to_delete(tmp_path, base):
    out = tmp_path / "e"
    command = ("eval", "--base", base, "--candidate", f"copy={base / 'transformer-bf16.safetensors'}", "--out", out, "--metrics", "psnr,fidelity", *EVAL_TINY)
    assert run_cli(*command).code == 0
    record = next((out / "fidelity").rglob("*.json"))
    for damage in ("{not json", '{"velocity_relative_error": "high"}', "[" * 100_000, json.dumps([1, 2])):
        record.write_text(damage)
        run_cli(*command).assert_one_error_line(2, str(record), "delete this file")
    record.unlink()
    assert run_cli(*command).code == 0  # deleted: recorded again
    assert json.loads(record.read_text())["velocity_relative_error"]


def test_a_damaged_run_file_names_the_folder(tmp_path, base):
    out = tmp_path / "e"
    out.mkdir()
    (out / "run.json").write_text("{")
    run_cli("eval", "--base", base, "--candidate", str(base / "transformer-bf16.safetensors"), "--out", out, "--metrics", "psnr", *EVAL_TINY).assert_one_error_line(2, "run.json")
