"""Issue 23, class 2 (text inputs) and the inspect-on-a-FIFO item: every text a command reads is a regular
file within the size and line bounds of `flux2_int8.textfiles`, refused by name otherwise, at once.

`/dev/zero` used to be read until memory ran out and a FIFO blocked forever; each case here
must end in one `Error:` line well within the test's timeout. FIFOs are made with
`os.mkfifo` (no writer ever opens them: a reader that opened one would hang, and the
in-process call would never return).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from reliability_helpers import run_cli

from flux2_int8 import textfiles


@pytest.fixture
def specials(tmp_path) -> dict[str, Path]:
    """A FIFO, a socket, a folder and /dev/zero, the inputs that are not regular files."""
    fifo = tmp_path / "prompts.fifo"
    os.mkfifo(fifo)
    sock = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    folder = tmp_path / "a-folder"
    folder.mkdir()
    yield {"fifo": fifo, "socket": sock, "folder": folder, "device": Path("/dev/zero")}
    server.close()


KIND_WORDS = {"fifo": "named pipe (FIFO)", "socket": "socket", "folder": "folder", "device": "character device"}


def _commands(path: Path, tmp_path: Path) -> dict[str, list]:
    return {
        "generate --prompts": ["generate", "--base", "tiny", "--prompts", path, "--out", tmp_path / "out"],
        "eval --suite": ["eval", "--base", "tiny", "--candidate", tmp_path / "c.safetensors", "--suite", path, "--metrics", "psnr", "--out", tmp_path / "e"],
        "quantize --prompts": ["quantize", "--base", "tiny", "--prompts", path, "--out", tmp_path / "q.safetensors"],
    }


@pytest.mark.parametrize("kind", KIND_WORDS)
@pytest.mark.parametrize("command", ["generate --prompts", "eval --suite", "quantize --prompts"])
def test_a_text_input_that_is_not_a_regular_file_is_refused_by_name_at_once(tmp_path, specials, kind, command):
    path = specials[kind]
    start = time.monotonic()
    outcome = run_cli(*_commands(path, tmp_path)[command])
    outcome.assert_one_error_line(2, str(path), KIND_WORDS[kind])
    assert time.monotonic() - start < 60
    assert not (tmp_path / "out").exists() and not (tmp_path / "e").exists() and not (tmp_path / "q.safetensors").exists()


@pytest.mark.parametrize("kind", ["fifo", "device", "socket"])
def test_inspect_names_what_is_not_a_regular_file(tmp_path, specials, kind):
    run_cli("inspect", specials[kind]).assert_one_error_line(2, str(specials[kind]), KIND_WORDS[kind], "not a regular file")


def test_inspect_of_a_fifo_named_like_a_checkpoint(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    run_cli("inspect", fifo).assert_one_error_line(2, "named pipe (FIFO), not a regular file")
    run_cli("generate", "--base", "tiny", "--transformer", fifo, "--prompt", "a cube", "--out", tmp_path / "o.png").assert_one_error_line(2, "named pipe")


def test_a_prompts_file_over_the_size_limit_is_refused_with_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(textfiles, "MAX_TEXT_BYTES", 1000)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cube\n" * 200)
    run_cli("generate", "--base", "tiny", "--prompts", prompts, "--out", tmp_path / "o").assert_one_error_line(2, str(prompts), "at most 1000 bytes")


def test_a_file_of_too_many_lines_is_refused_with_the_limit(tmp_path):
    suite = tmp_path / "s.jsonl"
    suite.write_text("\n" * (textfiles.MAX_TEXT_LINES + 1))
    run_cli("eval", "--base", "tiny", "--candidate", tmp_path / "c.safetensors", "--suite", suite, "--metrics", "psnr", "--out", tmp_path / "e").assert_one_error_line(
        2, str(suite), f"at most {textfiles.MAX_TEXT_LINES} are read"
    )


def test_a_symlink_to_a_prompts_file_is_still_read(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("a cube\n")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    assert textfiles.read_text_lines(link, "prompts file") == ["a cube"]


def test_a_json_config_that_is_a_device_is_refused_by_name(tmp_path):
    from flux2_int8.errors import CheckpointError
    from flux2_int8.formats.header import read_json_file

    with pytest.raises(CheckpointError, match="character device"):
        read_json_file(Path("/dev/zero"))


def test_the_reader_refuses_a_file_that_grows_past_the_limit_while_read(tmp_path, monkeypatch):
    """The size from `stat` is checked, and so are the bytes actually read (a file being appended to)."""
    path = tmp_path / "growing.txt"
    path.write_text("x" * 10)
    real_stat = os.stat

    class Small:
        def __init__(self, result):
            self._result = result

        def __getattr__(self, name):
            return 5 if name == "st_size" else getattr(self._result, name)

    monkeypatch.setattr(textfiles.os, "stat", lambda p: Small(real_stat(p)))
    with pytest.raises(textfiles.InputFileError, match="more than 8 bytes"):
        textfiles.read_bounded_bytes(path, "file", max_bytes=8)


def test_a_reference_image_that_is_a_fifo_is_refused_not_opened(tmp_path):
    fifo = tmp_path / "ref.png"
    os.mkfifo(fifo)
    run_cli("generate", "--base", "tiny", "--prompt", "a cube", "--image", fifo, "--out", tmp_path / "o.png").assert_one_error_line(2, f"reference image {fifo}", "named pipe")
