"""Issue 23, class 2 and the numeric items of class 7: every numeric option of every command is checked at
parse time against one range (`flux2_int8.limits`), and the message gives the range.

All in-process through `flux2_int8.cli.main` (argument checking only; nothing loads), each
asserting exit 2, exactly one `Error:` line naming the option, and no traceback. The
Python API refuses the same values where they enter.
"""

from __future__ import annotations

import math

import pytest
from reliability_helpers import run_cli

# command prefix for each command; `{tmp}` is the test's folder
PREFIX = {
    "generate": ["generate", "--base", "tiny", "--prompt", "a cube", "--out", "{tmp}/o.png"],
    "quantize": ["quantize", "--base", "tiny", "--out", "{tmp}/q.safetensors"],
    "eval": ["eval", "--base", "tiny", "--candidate", "{tmp}/c.safetensors", "--out", "{tmp}/e"],
    "bench": ["bench", "--base", "tiny", "--out", "{tmp}/b"],
    "demo": ["demo", "--out", "{tmp}/d"],
    "make-tiny": ["make-tiny", "{tmp}/t"],
    "serve": ["serve", "--base", "tiny"],
    "plan": ["plan", "--base", "tiny"],
}
# (command, option, value, words the one line must hold: the option and its range)
BAD = [
    *[(command, "--threads", value, "from 1 to 1024") for command in ("generate", "quantize", "eval", "bench", "demo") for value in ("0", "-2")],
    ("generate", "--threads", "1.5", "from 1 to 1024"),
    ("generate", "--threads", "1_0", "from 1 to 1024"),
    ("generate", "--resolution", "100000", "from 64 to 2048"),
    ("generate", "--width", "4096", "from 64 to 2048"),
    ("generate", "--height", "72", "a multiple of 16"),
    ("quantize", "--resolution", "0", "from 64 to 2048"),
    ("eval", "--width", "-64", "from 64 to 2048"),
    ("bench", "--resolution", "100000", "from 64 to 2048"),
    ("demo", "--resolution", "8192", "from 64 to 2048"),
    ("generate", "--steps", "100000", "from 1 to 1000"),
    ("generate", "--steps", "0", "from 1 to 1000"),
    ("quantize", "--steps", "-1", "from 1 to 1000"),
    ("eval", "--steps", "1e3", "from 1 to 1000"),
    ("bench", "--steps", "5000", "from 1 to 1000"),
    ("demo", "--steps", "0", "from 1 to 1000"),
    ("bench", "--batch", "100000", "from 1 to 64"),
    ("bench", "--batch", "0", "from 1 to 64"),
    ("bench", "--repeats", "0", "from 1 to 1000"),
    ("bench", "--warmup", "-1", "from 0 to 100"),
    ("bench", "--time-budget", "nan", "finite number above 0"),
    ("bench", "--time-budget", "inf", "finite number above 0"),
    ("bench", "--time-budget", "-5", "finite number above 0"),
    ("generate", "--num-images", "0", "from 1 to 10000"),
    ("generate", "--num-images", "99999999", "from 1 to 10000"),
    ("generate", "--seed", "-1", "from 0 to 2**63-1"),
    ("generate", "--seed", str(2**63), "from 0 to 2**63-1"),
    ("quantize", "--seed", "-1", "from 0 to 2**63-1"),
    ("make-tiny", "--seed", "-1", "from 0 to 2**63-1"),
    ("quantize", "--samples", "0", "from 1 to 100000"),
    ("quantize", "--smoothquant", "nan", "above 0, at most 1"),
    ("generate", "--guidance", "nan", "from 0 to 100"),
    ("eval", "--guidance", "inf", "from 0 to 100"),
    ("eval", "--limit", "0", "from 1 to 1000000"),
    ("generate", "--workers", "0", "from 1 to 1024"),
    ("eval", "--cpus-per-worker", "nan", "from 0.01 to 1024"),
    ("quantize", "--cpus-per-worker", "0.00001", "from 0.01 to 1024"),
    ("generate", "--cpus-per-worker", "0", "from 0.01 to 1024"),
    ("generate", "--gpus-per-worker", "nan", "from 0 to 64"),
    ("eval", "--gpus-per-worker", "0.00001", "0 or a finite number from 0.01 to 64"),
    ("quantize", "--gpus-per-worker", "-1", "from 0 to 64"),
    ("generate", "--ray-timeout", "0", "above 0, at most 600"),
    ("eval", "--ray-timeout", "nan", "above 0, at most 600"),
    ("serve", "--threads", "0", "from 1 to 1024"),
    ("serve", "--port", "99999", "from 0 to 65535"),
    ("serve", "--batch-wait-ms", "nan", "from 0 to 60000 ms"),
    ("serve", "--request-timeout", "inf", "above 0, at most 86400 s"),
    ("serve", "--max-steps", "100000", "from 1 to 1000"),
    ("serve", "--max-batch", "0", "from 1 to 64"),
    ("serve", "--replicas", "0", "from 1 to 1024"),
    ("serve", "--cpus-per-replica", "nan", "from 0.01 to 1024"),
    ("plan", "--batch", "100000", "from 1 to 64"),
    ("plan", "--resolution", "100000", "from 64 to 2048"),
]


@pytest.mark.parametrize(("command", "option", "value", "words"), BAD, ids=[f"{c} {o} {v}" for c, o, v, _ in BAD])
def test_a_number_out_of_range_is_one_usage_line_with_the_range(tmp_path, command, option, value, words):
    prefix = [part.format(tmp=tmp_path) for part in PREFIX[command]]
    outcome = run_cli(*prefix, option, value)
    line = outcome.assert_one_error_line(2, f"argument {option}", repr(value), words)
    assert line.count("Error:") == 1
    assert list(tmp_path.iterdir()) == []  # nothing made


@pytest.mark.parametrize("command", ["generate", "quantize", "eval", "bench", "demo"])
def test_nano_and_tiny_refuse_sides_past_their_limit_and_say_it(tmp_path, command):
    prefix = [part.format(tmp=tmp_path) for part in PREFIX[command]]
    if command in ("generate", "quantize", "eval"):
        prefix[prefix.index("tiny")] = "nano"
    if command == "bench":  # bench's built-in model is tiny (at most 1024)
        outcome = run_cli(*prefix, "--resolution", "1280")
        outcome.assert_one_error_line(2, "--resolution 1280", "from 64 to 1024", "tiny supports at most 1024 px")
        return
    outcome = run_cli(*prefix, "--resolution", "1024")
    outcome.assert_one_error_line(2, "--resolution 1024", "from 64 to 512", "nano supports at most 512 px")
    assert list(tmp_path.iterdir()) == []


def test_the_last_seed_of_a_prompt_must_fit_too(tmp_path):
    outcome = run_cli("generate", "--base", "tiny", "--prompt", "a cube", "--seed", str(2**63 - 1), "--num-images", "2", "--out", tmp_path / "o")
    outcome.assert_one_error_line(2, "--seed", "reaches seed 9223372036854775808", "2**63-1")
    assert not (tmp_path / "o").exists()


def test_a_prompts_file_seed_near_the_top_counts_its_images(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a cube", "seed": %d}\n' % (2**63 - 2))
    outcome = run_cli("generate", "--base", "tiny", "--prompts", prompts, "--num-images", "3", "--out", tmp_path / "o")
    outcome.assert_one_error_line(2, f"{prompts} line 1", "reaches seed")


def test_the_top_seed_itself_is_accepted_by_the_parser():
    from flux2_int8.commands.options import SEED

    assert SEED(str(2**63 - 1)) == 2**63 - 1
    assert SEED("0") == 0


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda limits: limits.STEPS.check(100000, "steps"), "from 1 to 1000"),
        (lambda limits: limits.THREADS.check(0, "threads"), "from 1 to 1024"),
        (lambda limits: limits.SEED.check(-1, "seed"), "2**63-1"),
        (lambda limits: limits.SEED.check(True, "seed"), "2**63-1"),
        (lambda limits: limits.TIME_BUDGET.check(math.nan, "time budget"), "finite"),
        (lambda limits: limits.CPUS_PER_WORKER.check(math.inf, "cpus"), "finite"),
        (lambda limits: limits.check_side(4096, "width", "nano"), "at most 512"),
        (lambda limits: limits.check_side(1000, "width"), "multiple of 16"),
        (lambda limits: limits.check_gpus_per_worker(0.001), "0 (CPU workers)"),
    ],
)
def test_the_limits_refuse_with_a_flux2_int8_error_that_is_also_a_value_error(call, words):
    from flux2_int8 import Flux2Int8Error, limits

    with pytest.raises(Flux2Int8Error, match=words.replace("*", r"\*").replace("(", r"\(").replace(")", r"\)")) as raised:
        call(limits)
    assert isinstance(raised.value, ValueError)


def test_the_api_refuses_what_the_cli_refuses(tmp_path):
    """quantize, the eval settings and the Ray options check their numbers where they enter the library."""
    from flux2_int8 import Flux2Int8Error, quantize
    from flux2_int8.evaluate import RunSettings
    from flux2_int8.scale_out.cluster import ClusterOptions

    with pytest.raises(Flux2Int8Error, match="seed"):
        quantize("tiny", tmp_path / "q.safetensors", seed=-1)
    with pytest.raises(Flux2Int8Error, match="steps"):
        quantize("tiny", tmp_path / "q.safetensors", steps=100000)
    with pytest.raises(Flux2Int8Error, match="samples"):
        quantize("tiny", tmp_path / "q.safetensors", samples=0)
    with pytest.raises(Flux2Int8Error, match="at most 512"):
        RunSettings("nano", width=4096, height=4096)
    with pytest.raises(Flux2Int8Error, match="--guidance"):
        RunSettings("tiny", width=64, height=64, guidance=math.nan)
    for options in ({"cpus_per_worker": math.nan}, {"gpus_per_worker": math.nan}, {"workers": 0}, {"timeout": 0.0}):
        with pytest.raises(Flux2Int8Error):
            ClusterOptions(**options)
    assert list(tmp_path.iterdir()) == []


def test_generate_image_refuses_bad_numbers_before_running_the_pipeline():
    from flux2_int8 import Flux2Int8Error
    from flux2_int8.generate import generate_image

    class Pipeline:  # any call past the checks would fail loudly
        transformer = type("T", (), {"config": {}})()
        config = {"is_distilled": True}

        def __call__(self, **kwargs):
            raise AssertionError("the pipeline ran")

    for kwargs in ({"steps": 100000}, {"steps": 4, "seed": -1}, {"steps": 4, "width": 100000}, {"steps": 4, "guidance": math.nan}):
        arguments = {"seed": 0, "guidance": 1.0, **kwargs}
        with pytest.raises(Flux2Int8Error):
            generate_image(Pipeline(), "a cube", [], **arguments)


@pytest.mark.parametrize("tokens", ["0", "1,100000000", "1_6", "nan"])
def test_bench_check_tokens_are_bounded_too(tmp_path, tokens):
    run_cli("bench", "--base", "tiny", "--check", "--check-tokens", tokens, "--out", tmp_path / "b").assert_one_error_line(2, "--check-tokens", "from 1 to 65536")
    assert not (tmp_path / "b").exists()


def test_a_nano_edit_cannot_take_a_reference_past_nanos_limit(tmp_path):
    """Without --width/--height an edit takes its reference's size; on nano that size is bounded too."""
    from PIL import Image

    reference = tmp_path / "big.png"
    Image.new("RGB", (1024, 1024), "white").save(reference)
    out = tmp_path / "o.png"
    outcome = run_cli("generate", "--base", "nano", "--prompt", "a red circle", "--image", reference, "--device", "cpu", "--out", out, "--quiet")
    outcome.assert_one_error_line(2, "1024x1024", "nano makes at most 512 px")
    assert not out.exists()
