"""`bench --base nano` (the README's vocabulary): nano's pipeline, its 128 px and 32 tokens, in the dtype asked for."""

from __future__ import annotations

import json

from flux2_int8.cli import main
from flux2_int8.nano import NANO_MAX_SEQUENCE_LENGTH, NANO_SIZE


def test_bench_times_nano_in_bf16_and_int8_at_its_native_size(tmp_path, capsys):
    command = ["bench", "--base", "nano", "--formats", "bf16,int8", "--compile", "off", "--repeats", "1", "--warmup", "0", "--dtype", "float32", "--quiet", "--out", str(tmp_path)]
    assert main(command) == 0, capsys.readouterr().err
    document = json.loads((tmp_path / "bench-nano.json").read_text())
    settings = document["settings"]
    assert (settings["resolution"], settings["text_tokens"], settings["dtype"]) == (NANO_SIZE, NANO_MAX_SEQUENCE_LENGTH, "float32")
    assert [run["format"] for run in document["runs"]] == ["bf16", "int8"]
    assert "--dtype float32" in document["command"]
