"""Issue 23: the shipped nano scripts answer a bad argument as the CLI does: one `Error:` line, exit 2, before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from reliability_helpers import run_script


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    from flux2_int8.nano import nano_folder

    root = tmp_path_factory.mktemp("nano-args")
    (root / "a-file").write_text("not a folder")
    (root / "a-folder").mkdir()
    (root / "not-a-pipeline").mkdir()
    (root / "not-a-pipeline" / "x.txt").write_text("x")
    shutil.copytree(nano_folder(), root / "run")
    return {"root": root, "file": root / "a-file", "folder": root / "a-folder", "not-a-pipeline": root / "not-a-pipeline", "run": root / "run"}


TRAIN_MISTAKES = [
    (("--resume", "{root}/nowhere"), "no such folder"),
    (("--resume", "{file}"), "is a file"),
    (("--resume", "{not-a-pipeline}"), "model_index.json"),
    (("--log", "{folder}"), "is a folder"),
    (("--vae-batch", "0"), "--vae-batch 0"),
    (("--transformer-batch", "-4"), "--transformer-batch -4"),
    (("--transformer-steps", "0"), "--transformer-steps"),
    (("--vae-lr", "nan"), "--vae-lr nan"),
    (("--transformer-lr", "-1e-3"), "--transformer-lr"),
    (("--vae-minutes", "inf"), "--vae-minutes inf"),
    (("--ema-decay", "1.5"), "--ema-decay"),
    (("--latent-pool", "0"), "--latent-pool"),
    (("--log-every", "0"), "--log-every"),
    (("--vae-crop", "12"), "--vae-crop"),
    (("--seed", "-1"), "--seed -1"),
    (("--threads", "0"), "--threads 0"),
    (("--vae-batch", "two"), "invalid int value"),
    (("--count-weights", "1,2"), "count"),
]


@pytest.mark.parametrize(("extra", "fragment"), TRAIN_MISTAKES, ids=[" ".join(extra) for extra, _ in TRAIN_MISTAKES])
def test_train_nano_refuses_a_bad_argument_in_one_line_before_training(places, extra, fragment):
    out = places["root"] / "out"
    given = [part.format(**{k: str(v) for k, v in places.items()}) for part in extra]
    run_script("train_nano.py", "--out", out, *given).assert_one_error_line(2, fragment)
    assert not out.exists()


@pytest.mark.parametrize(
    ("folders", "fragment"),
    [(("{run}", "{root}/nowhere"), "no such folder"), (("{run}", "{file}"), "is a file"), (("{run}", "{not-a-pipeline}"), "model_index.json"), (("{run}",), "two or more")],
)
def test_average_nano_refuses_a_bad_folder_in_one_line(places, folders, fragment):
    out = places["root"] / "soup"
    given = [part.format(**{k: str(v) for k, v in places.items()}) for part in folders]
    run_script("average_nano.py", "--out", out, *given).assert_one_error_line(2, fragment)
    assert not out.exists()
