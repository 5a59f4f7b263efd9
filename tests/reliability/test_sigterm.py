"""Issue 23, class 5: SIGTERM (`kill`, a scheduler's time limit, `docker stop`) behaves as Ctrl-C.

Each test sends a real SIGTERM to a real child process while a file is being written
(its temporary `.partial` on disk: `slow_writes.py` holds every write open as a slow
disk would), and asks: exit 143 (128 + SIGTERM), one `Error: terminated` line, no
`.partial` left anywhere, every earlier file byte-identical.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import TINY_GENERATE, TINY_QUANTIZE, Outcome, child_env, copy_tiny_base, leftovers, run_cli, snapshot

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parents[1]
SLOW = [sys.executable, str(HERE / "slow_writes.py")]
EVAL_TINY = ("--limit", "1", "--width", "64", "--height", "64", "--steps", "1", "--dtype", "float32", "--device", "cpu", "--metrics", "psnr")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return copy_tiny_base(tmp_path_factory.mktemp("sigterm") / "base")


def terminate_while_writing(command: list[str], where: Path, log: Path, timeout: float = 300) -> Outcome:
    """Start `command`, SIGTERM it once it stalls in a write with a temporary under `where`, collect what it said."""
    with log.open("wb") as sink:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sink, env=child_env())
        deadline = time.monotonic() + timeout
        while "stalled writing" not in log.read_text(errors="replace"):
            assert child.poll() is None, f"finished before it could be terminated: {log.read_text()}"
            assert time.monotonic() < deadline, "never started writing"
            time.sleep(0.1)
        assert leftovers(where), "the write under way left no temporary to clean up"  # the test really hits a write
        child.send_signal(signal.SIGTERM)
        stdout, _ = child.communicate(timeout=120)
    return Outcome(child.returncode, stdout.decode(errors="replace"), log.read_text(errors="replace"))


@pytest.mark.parametrize("layout", ["bfl", "comfy", "diffusers"])
def test_sigterm_while_quantize_writes_each_layout(tmp_path, base, layout):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.safetensors").write_bytes(b"an earlier result")
    before = snapshot(out)
    target = out / ("q" if layout == "diffusers" else "q.safetensors")
    command = [*SLOW, "cli", "quantize", "--base", str(base), "--out", str(target), "--format", layout, *TINY_QUANTIZE]
    outcome = terminate_while_writing(command, out, tmp_path / "stderr.txt")
    outcome.assert_one_error_line(143, "terminated")
    assert snapshot(out) == before
    assert not leftovers(tmp_path)


def test_sigterm_while_generate_writes_keeps_earlier_images_and_the_folder_is_still_ours(tmp_path, base):
    out = tmp_path / "out"
    command = [*SLOW, "cli", "generate", "--base", str(base), "--prompt", "a cube", "--num-images", "3", "--out", str(out), *TINY_GENERATE]
    outcome = terminate_while_writing(command, out, tmp_path / "stderr.txt")
    outcome.assert_one_error_line(143, "terminated")
    assert not leftovers(out) and not list(out.glob("*.png"))
    # The folder was marked when claimed, so the rerun goes into it without --overwrite.
    assert run_cli("generate", "--base", base, "--prompt", "a cube", "--out", out, *TINY_GENERATE).code == 0
    assert len(list(out.glob("*.png"))) == 1


def test_a_second_run_into_a_new_folder_being_filled_is_not_refused(tmp_path, base):
    """The first run marked the folder when it claimed it, so the second sees it as flux2-int8's."""
    out = tmp_path / "shared"
    first = [*SLOW, "cli", "generate", "--base", str(base), "--prompt", "a cube", "--out", str(out), *TINY_GENERATE]
    log = tmp_path / "stderr.txt"
    with log.open("wb") as sink:
        child = subprocess.Popen(first, stdout=subprocess.PIPE, stderr=sink, env=child_env())
        try:
            deadline = time.monotonic() + 300
            while "stalled writing" not in log.read_text(errors="replace"):
                assert child.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            second = run_cli("generate", "--base", base, "--prompt", "a sphere", "--out", out, *TINY_GENERATE)
            assert second.code == 0, second.stderr
        finally:
            child.send_signal(signal.SIGTERM)
            child.communicate(timeout=120)
    assert child.returncode == 143
    assert [p.name for p in out.glob("*.png")] == ["0001-a-sphere-seed0.png"] and not leftovers(out)


def test_sigterm_while_eval_writes(tmp_path, base):
    out = tmp_path / "e"
    command = [*SLOW, "cli", "eval", "--base", str(base), "--candidate", f"copy={base / 'transformer-bf16.safetensors'}", "--out", str(out), *EVAL_TINY]
    outcome = terminate_while_writing(command, out, tmp_path / "stderr.txt")
    outcome.assert_one_error_line(143, "terminated")
    assert not leftovers(tmp_path) and not list(out.rglob("*.png"))


def test_sigterm_while_make_tiny_writes(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    before = snapshot(folder)
    outcome = terminate_while_writing([*SLOW, "cli", "make-tiny", str(folder), "--overwrite"], tmp_path, tmp_path / "stderr.txt")
    outcome.assert_one_error_line(143, "terminated")
    assert snapshot(folder) == before
    assert not leftovers(tmp_path)


def test_sigterm_while_a_nano_script_writes(tmp_path):
    from flux2_int8.nano import nano_folder

    runs = [tmp_path / "run1", tmp_path / "run2"]
    for run in runs:
        subprocess.run(["cp", "-r", str(nano_folder()), str(run)], check=True)
    command = [*SLOW, str(REPOSITORY / "scripts" / "average_nano.py"), "--out", str(tmp_path / "soup"), *map(str, runs)]
    outcome = terminate_while_writing(command, tmp_path, tmp_path / "stderr.txt")
    outcome.assert_one_error_line(143, "terminated")
    assert not leftovers(tmp_path) and not (tmp_path / "soup").exists()


def test_sigterm_between_writes_is_the_same_line(tmp_path, base):
    """During calibration, with nothing being written: the same clean exit, nothing on the disk."""
    out = tmp_path / "out"
    out.mkdir()
    log = tmp_path / "stderr.txt"
    command = [sys.executable, "-m", "flux2_int8.cli", "quantize", "--base", str(base), "--out", str(out / "q.safetensors"), "--samples", "400", "--steps", "4", "--resolution", "64", "--device", "cpu", "--dtype", "float32"]
    with log.open("wb") as sink:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sink, env=child_env())
        deadline = time.monotonic() + 300
        while "1/400" not in log.read_text(errors="replace"):
            assert child.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        child.send_signal(signal.SIGTERM)
        stdout, _ = child.communicate(timeout=120)
    Outcome(child.returncode, stdout.decode(), log.read_text()).assert_one_error_line(143, "terminated")
    assert list(out.iterdir()) == []
