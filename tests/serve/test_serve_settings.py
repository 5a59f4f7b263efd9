"""Options refused at start, before torch or FastAPI load; LoRAs only by name from the folder."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flux2_int8.cli import main
from flux2_int8.serve.settings import MAX_REFERENCES, Limits, ServeConfigError, ServeSettings, is_loopback, lora_files


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.5.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.4", False), ("example.org", False)])
def test_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_an_open_address_needs_a_key():
    with pytest.raises(ServeConfigError, match="API key"):
        ServeSettings(host="0.0.0.0")
    assert ServeSettings(host="0.0.0.0", api_key="k").host == "0.0.0.0"


@pytest.mark.parametrize("kwargs, flag", [({"max_batch": 0}, "--max-batch"), ({"max_queue": 0}, "--max-queue"), ({"port": 70000}, "--port"), ({"request_timeout": 0}, "--request-timeout"), ({"batch_wait_ms": float("nan")}, "--batch-wait-ms"), ({"api_key": " "}, "API key")])
def test_bad_settings_name_their_flag(kwargs, flag):
    with pytest.raises(ServeConfigError, match=flag):
        ServeSettings(**kwargs)


def test_limits():
    with pytest.raises(ServeConfigError, match="--max-n"):
        Limits(max_n=0)
    with pytest.raises(ServeConfigError, match="at most 4"):
        Limits(max_references=5)


def test_the_reference_limit_is_the_generate_one():
    from flux2_int8.generate import MAX_REFERENCE_IMAGES

    assert MAX_REFERENCES == MAX_REFERENCE_IMAGES


def test_loras_are_the_folders_own_files_by_name(tmp_path):
    folder = tmp_path / "loras"
    folder.mkdir()
    (folder / "a.safetensors").write_bytes(b"x")
    (folder / "b.txt").write_text("x")
    (folder / "sub").mkdir()
    (folder / "sub" / "c.safetensors").write_bytes(b"x")
    assert lora_files(str(folder)) == {"a": folder / "a.safetensors"}
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(b"x")
    (folder / "link.safetensors").symlink_to(outside)
    with pytest.raises(ServeConfigError, match="links outside"):
        lora_files(str(folder))
    with pytest.raises(ServeConfigError, match="no such folder"):
        lora_files(str(tmp_path / "none"))


@pytest.mark.parametrize("argv, message", [
    (["serve", "--host", "0.0.0.0"], "API key"),
    (["serve", "--max-queue", "0"], "--max-queue"),
    (["serve", "--lora-dir", "/nonexistent-loras"], "no such folder"),
    (["serve", "--port", "-1"], "--port"),
    (["serve", "--replicas", "2"], "--ray"),
    (["serve", "--ray", "nowhere"], "--ray"),
    (["serve", "--ray", "local", "--replicas", "0"], "--replicas"),
    (["serve", "--random-weights"], "--random-weights"),
    (["serve", "--random-weights", "--base", "klein-9b", "--transformer", "x.safetensors"], "--random-weights"),
])
def test_the_command_refuses_before_loading(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_usage_error_imports_no_torch():
    env = {**os.environ}
    env.pop("FLUX2_INT8_API_KEY", None)
    code = "import sys; from flux2_int8.cli import main; rc = main(['serve', '--host', '0.0.0.0']); assert 'torch' not in sys.modules and 'fastapi' not in sys.modules, sorted(m for m in ('torch', 'fastapi') if m in sys.modules); sys.exit(rc)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Error: --host 0.0.0.0")


def test_the_key_comes_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("FLUX2_INT8_API_KEY", "from-env")
    monkeypatch.setattr("flux2_int8.serve.settings.lora_files", lambda folder: {})
    seen = {}

    def fake_serve(spec, settings, quiet=False, as_json=False):
        seen["settings"] = settings

    monkeypatch.setattr("flux2_int8.serve.server.serve", fake_serve)
    assert main(["serve", "--host", "0.0.0.0"]) == 0
    assert seen["settings"].api_key == "from-env"
