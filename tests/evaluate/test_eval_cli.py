"""`flux2-int8 eval` and `fetch-weights` from the command line: a whole offline run, and its errors."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess

import pytest
from eval_helpers import SIZE, STEPS

from flux2_int8.cli import main


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "tiny.jsonl"
    records = [
        {"id": "t2i-cube", "prompt": "A red cube on a blue table", "seed": 11},
        {"id": "edit-car", "task": "edit", "input_prompts": ["A red car in a garage"], "prompt": "Make the car yellow", "seed": 12},
        {"id": "composition-cat", "input_prompts": ["A cat", "A green sofa"], "prompt": "Put the cat on the sofa", "seed": 13},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def _eval_args(tiny_base, int8_recipes, suite_file, out, *extra):
    return [
        "eval", "--base", str(tiny_base),
        "--candidate", f"int8={int8_recipes['int8']}", "--candidate", f"int8mod={int8_recipes['int8mod']}",
        "--suite", str(suite_file), "--out", str(out),
        "--width", str(SIZE), "--height", str(SIZE), "--steps", str(STEPS), "--dtype", "float32", "--device", "cpu",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def cli_result(tmp_path_factory, tiny_base, int8_recipes, suite_file):
    """The evaluation folder of one CLI run, and what it printed."""
    out = tmp_path_factory.mktemp("cli") / "eval"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(_eval_args(tiny_base, int8_recipes, suite_file, out, "--metrics", "psnr,fidelity")) == 0
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def cli_run(cli_result):
    return cli_result[0]


def test_eval_prints_a_summary_row_per_task_and_candidate_with_the_numbers_of_metrics_json(cli_result):
    out, printed = cli_result
    document = json.loads((out / "metrics.json").read_text())
    lines = printed.splitlines()
    header = next(k for k, line in enumerate(lines) if line.startswith("Task (cases)"))
    assert lines[header].split() == ["Task", "(cases)", "Model", "PSNR", "vel.", "err"]
    rows = [line.split() for line in lines[header + 2 :] if line and not line.startswith(("json:", "markdown:", "html:"))]
    expected = []
    for subset, entries in document["summary"].items():
        for model in ("int8", "int8mod"):  # the reference has no PSNR or velocity error against itself: no row
            entry = entries[model]
            expected.append([subset, f"({entry['count']})", model, f"{entry['psnr']:.2f}", "dB", f"{entry['velocity_error']:.4f}"])
    assert rows == expected
    assert f"html: {out / 'report.html'}" in printed


def test_run_json_records_the_command_with_every_option(cli_run):
    (run,) = json.loads((cli_run / "run.json").read_text())["runs"]
    assert run["command"].startswith("flux2-int8 eval --base ") and "--metrics psnr,fidelity" in run["command"]
    assert "--candidate int8=" in run["command"] and "--width 64 --height 64" in run["command"]


def test_eval_writes_all_three_reports_with_every_section_offline(cli_run):
    metrics = json.loads((cli_run / "metrics.json").read_text())
    assert metrics["candidates"] == ["int8", "int8mod"] and metrics["metrics"] == ["fidelity", "psnr"]
    assert metrics["settings"]["steps"] == STEPS and metrics["settings"]["models"]["bf16"] is None
    report = (cli_run / "report.md").read_text()
    for heading in ("## Overall (3 cases)", "## Text-to-image", "## Editing", "## Composition", "## Candidate vs candidate", "## Transformer fidelity per denoising step", "## Metrics"):
        assert heading in report
    page = (cli_run / "report.html").read_text()
    assert page.count("<section class=case") == 3 and "Put the cat on the sofa" in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs headless Chromium (apt-get install chromium)")
def test_report_html_renders_in_headless_chromium(cli_run, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    command = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
        (cli_run / "report.html").as_uri(),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    with Image.open(shot) as image:
        assert image.size == (1200, 1600)
        assert len(image.convert("L").getcolors(1 << 16) or []) > 8  # text and pictures, not a blank page
        colours = dict((colour, count) for count, colour in image.convert("RGB").getcolors(1 << 20))
    # The charts are drawn: the two candidates' bar colours (charts.PALETTE) fill whole bars, thousands of pixels each.
    assert colours.get((0, 114, 178), 0) > 2000 and colours.get((230, 159, 0), 0) > 2000


def test_missing_metric_weights_fail_before_generating(tmp_path, tiny_base, int8_recipes, suite_file, capsys):
    out = tmp_path / "eval"
    empty = tmp_path / "weights"
    empty.mkdir()
    assert main(_eval_args(tiny_base, int8_recipes, suite_file, out, "--metrics", "clip,psnr", "--metrics-weights", str(empty))) == 2
    error = capsys.readouterr().err
    assert error.startswith("Error: metric weights missing (CLIP score needs the hub repository openai/clip-vit-large-patch14")
    assert f"fetch-weights {empty}" in error and "Traceback" not in error
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metrics", "psnr,ssim"], "unknown metric 'ssim'"),
        (["--shard", "2/2"], "the index must be in 0..n-1"),
        (["--shard", "half"], "expected i/n"),
        (["--width", "100"], "--width: '100' is not an integer from 64 to 2048 px, a multiple of 16"),
        (["--reference", "my model=x.safetensors"], "the name 'my model' must be a word"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, tiny_base, int8_recipes, suite_file, capsys, extra, message):
    assert main(_eval_args(tiny_base, int8_recipes, suite_file, tmp_path / "eval", *extra)) == 2
    error = capsys.readouterr().err
    assert error.startswith("Error: ") and message in error
    assert not (tmp_path / "eval").exists()


def test_fetch_weights_with_only_weightless_metrics_fetches_nothing(tmp_path, capsys):
    assert main(["fetch-weights", str(tmp_path / "w"), "--metrics", "psnr"]) == 0
    assert "--metrics-weights" in capsys.readouterr().out
