"""Issue 23, class 3: a `--ray` address that is malformed, refuses, or never answers is one `Error:` line
naming it, within `--ray-timeout`; Ctrl-C ends the wait at once.

Malformed addresses are refused at parse time (in this process). The others need a real
child with Ray: a port nobody listens on (refused at once by the TCP probe), and a port
that accepts connections but never speaks (a listening socket nobody serves: Ray's own
client would retry it for minutes), which must end at the timeout, or at Ctrl-C.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time

import pytest
from reliability_helpers import child_env, cli_command, run_cli

pytest.importorskip("ray")


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("a cube\n")
    return path


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections (the kernel's backlog) and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server
    server.close()


@pytest.fixture
def silent_port(silent_server):
    return silent_server.getsockname()[1]


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("localhost:99999", "port 99999 is not a TCP port (1 to 65535)"),
        ("127.0.0.1:0", "port 0 is not a TCP port"),
        ("ray://head:70000", "port 70000"),
        ("localhost", "expected local, auto, ray://HOST:PORT or HOST:PORT"),
        ("http://head:6379", "expected local, auto"),
        ("head:port", "expected local, auto"),
    ],
)
@pytest.mark.parametrize("command", ["generate", "eval", "quantize"])
def test_a_malformed_address_is_refused_at_parse_time(tmp_path, prompts, command, address, words):
    arguments = {
        "generate": ["generate", "--base", "tiny", "--prompts", prompts, "--out", tmp_path / "o"],
        "eval": ["eval", "--base", "tiny", "--candidate", tmp_path / "c.safetensors", "--out", tmp_path / "e"],
        "quantize": ["quantize", "--base", "tiny", "--out", tmp_path / "q.safetensors"],
    }[command]
    run_cli(*arguments, "--ray", address).assert_one_error_line(2, "argument --ray", words)


def test_the_probe_names_an_address_nobody_listens_on():
    from flux2_int8.scale_out.cluster import ScaleOutError, probe

    with pytest.raises(ScaleOutError, match=r"--ray 127\.0\.0\.1:1: cannot connect"):
        probe("127.0.0.1:1", 2.0)
    probe("local", 0.1)  # local and auto are Ray's to find: not probed


def test_the_probe_tells_another_server_from_a_ray_head():
    """A server that answers, but not with HTTP/2 (here an ssh-like banner), is not a Ray head; a gRPC SETTINGS frame is."""
    from flux2_int8.scale_out.cluster import ScaleOutError, probe

    def serve(server: socket.socket, reply: bytes) -> None:
        connection, _ = server.accept()
        connection.recv(64)
        connection.sendall(reply)
        connection.close()

    for reply, refused in ((b"SSH-2.0-OpenSSH_9.6\r\n", True), (b"\x00\x00\x00\x04\x00\x00\x00\x00\x00", False)):
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            thread = threading.Thread(target=serve, args=(server, reply), daemon=True)
            thread.start()
            address = f"127.0.0.1:{server.getsockname()[1]}"
            if refused:
                with pytest.raises(ScaleOutError, match="not as a Ray head"):
                    probe(address, 5.0)
            else:
                probe(address, 5.0)
            thread.join(5)


def test_ray_timeout_goes_with_ray(tmp_path, prompts):
    run_cli("generate", "--base", "tiny", "--prompts", prompts, "--out", tmp_path / "o", "--ray-timeout", "5").assert_one_error_line(2, "--ray-timeout", "--ray ADDRESS")


def test_a_refused_address_is_one_line_at_once(tmp_path, prompts):
    """In this process: the TCP probe refuses before `ray.init` is ever called."""
    start = time.monotonic()
    outcome = run_cli("generate", "--base", "tiny", "--prompts", prompts, "--out", tmp_path / "o", "--ray", "127.0.0.1:1")
    outcome.assert_one_error_line(2, "--ray 127.0.0.1:1", "cannot connect")
    assert time.monotonic() - start < 60
    assert not (tmp_path / "o").exists()


def test_an_address_that_never_answers_ends_at_the_timeout(tmp_path, prompts, silent_port):
    """In this process: the probe gives up after --ray-timeout, before `ray.init` (which would retry for minutes)."""
    start = time.monotonic()
    outcome = run_cli("generate", "--base", "tiny", "--prompts", prompts, "--out", tmp_path / "o", "--ray", f"127.0.0.1:{silent_port}", "--ray-timeout", "3")
    outcome.assert_one_error_line(2, f"--ray 127.0.0.1:{silent_port}", "within 3 s")
    assert time.monotonic() - start < 30
    assert not (tmp_path / "o").exists()


def test_ctrl_c_ends_the_wait_for_an_address_that_never_answers(tmp_path, prompts, silent_server):
    port = silent_server.getsockname()[1]
    command = cli_command("generate", "--base", "tiny", "--prompts", str(prompts), "--out", str(tmp_path / "o"), "--ray", f"127.0.0.1:{port}", "--ray-timeout", "300")
    child = subprocess.Popen(command, env=child_env(), stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        silent_server.settimeout(240)
        connection, _ = silent_server.accept()  # the child connected: it now waits for an answer that never comes
        time.sleep(0.5)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        stderr = child.communicate(timeout=60)[1]
        assert time.monotonic() - sent < 30
        connection.close()
    finally:
        child.kill()
    assert child.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.startswith("Error:")] == [line for line in stderr.splitlines() if "interrupted" in line and line.startswith("Error:")]
