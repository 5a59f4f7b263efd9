"""The command line: make-tiny writes a loadable pipeline that inspect reads."""

from __future__ import annotations

from flux2_int8.cli import main


def test_make_tiny_writes_a_pipeline_and_its_bfl_file(tmp_path, capsys):
    assert main(["make-tiny", str(tmp_path / "tiny")]) == 0
    assert (tmp_path / "tiny" / "model_index.json").is_file()
    assert (tmp_path / "tiny" / "transformer-bf16.safetensors").is_file()
    assert main(["inspect", str(tmp_path / "tiny" / "transformer-bf16.safetensors")]) == 0
    assert "bfl-bf16" in capsys.readouterr().out


def test_help_builds_every_command_without_importing_torch():
    import subprocess
    import sys

    code = "import sys; from flux2_int8.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_public_api_resolves_lazily():
    import flux2_int8

    assert callable(flux2_int8.quantize) and callable(flux2_int8.load_transformer) and callable(flux2_int8.load_pipeline)
    assert "load_text_encoder" in dir(flux2_int8)


def test_version_and_usage_errors_are_one_line_exit_2():
    import subprocess
    import sys

    version = subprocess.run([sys.executable, "-m", "flux2_int8.cli", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == f"flux2-int8 {__import__('flux2_int8').__version__}"
    for argv in (["generate", "--steps", "x"], ["no-such-command"], ["inspect"]):
        result = subprocess.run([sys.executable, "-m", "flux2_int8.cli", *argv], capture_output=True, text=True)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
