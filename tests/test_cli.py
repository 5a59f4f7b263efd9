"""The command line: make-tiny writes a loadable pipeline that inspect reads."""

from __future__ import annotations

from flux2_int8.cli import main


def test_make_tiny_writes_a_pipeline_and_its_bfl_file(tmp_path, capsys):
    assert main(["make-tiny", str(tmp_path / "tiny")]) == 0
    assert (tmp_path / "tiny" / "model_index.json").is_file()
    assert (tmp_path / "tiny" / "transformer-bf16.safetensors").is_file()
    assert main(["inspect", str(tmp_path / "tiny" / "transformer-bf16.safetensors")]) == 0
    assert "bfl-bf16" in capsys.readouterr().out
