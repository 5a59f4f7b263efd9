"""One vocabulary across commands: the shared options exist, with the same meaning, wherever they apply."""

from __future__ import annotations

import argparse

import pytest

from flux2_int8.cli import build_parser

LOADS_A_MODEL = ("generate", "eval", "quantize", "bench", "demo")
# `serve` loads a model too, but takes no size options: width and height are per request there.
SERVES = ("serve",)
TAKES_A_BASE = ("generate", "eval", "quantize", "bench", "serve")
DOWNLOADS = ("generate", "eval", "quantize", "bench", "serve")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_command_has_quiet_and_json(command):
    found = options(subcommands()[command])
    assert {"--quiet", "--json"} <= found.keys(), command


@pytest.mark.parametrize("flag, commands", [
    ("--device", LOADS_A_MODEL + SERVES),
    ("--threads", LOADS_A_MODEL + SERVES),
    ("--resolution", LOADS_A_MODEL),
    ("--width", LOADS_A_MODEL),
    ("--height", LOADS_A_MODEL),
    ("--local-files-only", DOWNLOADS),
    ("--quiet", tuple(subcommands())),
    ("--json", LOADS_A_MODEL + SERVES),
    ("--dtype", LOADS_A_MODEL + SERVES),
    ("--activations", ("generate", "eval", "quantize", "serve")),
])

def test_a_shared_option_means_the_same_everywhere(flag, commands):
    parsers = subcommands()
    actions = {command: options(parsers[command]).get(flag) for command in commands}
    assert all(actions.values()), f"{flag} missing from {[c for c, a in actions.items() if a is None]}"
    kinds = {(type(a).__name__, a.type, a.default if flag != "--resolution" else None) for a in actions.values()}
    assert len(kinds) == 1, f"{flag}: {kinds}"


@pytest.mark.parametrize("command", TAKES_A_BASE)
@pytest.mark.parametrize("built_in", ["tiny", "nano"])
def test_base_is_spelled_base_and_takes_the_built_in_models(command, built_in):
    base = options(subcommands()[command])["--base"]
    assert built_in in (base.help or "") and (not base.choices or built_in in base.choices)


REQUIRED = {"generate": ["--prompt", "x"], "eval": ["--candidate", "c.safetensors", "--out", "e"], "quantize": ["--out", "q.safetensors"], "bench": ["--out", "b"], "demo": [], "serve": []}


@pytest.mark.parametrize("command", LOADS_A_MODEL + SERVES)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_every_command_that_loads_a_model_parses_base_nano_and_dtype(command, dtype):
    base = ["--base", "nano"] if command in TAKES_A_BASE else []
    args = subcommands()[command].parse_args([*base, "--dtype", dtype, *REQUIRED[command]])
    assert args.dtype == dtype
    assert getattr(args, "base", getattr(args, "variant", "nano")) == "nano"


@pytest.mark.parametrize("command", ("generate", "eval", "quantize", "serve"))
def test_activations_auto_is_accepted_where_activations_are(command):
    args = subcommands()[command].parse_args(["--base", "nano", "--activations", "auto", *REQUIRED[command]])
    assert args.activations == "auto"


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_help_names_no_deprecated_spelling(command):
    text = subcommands()[command].format_help()
    assert "--variant" not in text and "--size" not in text, command


def test_device_accepts_auto_cpu_cuda_and_cuda_n_only():
    parser = subcommands()["generate"]
    device = options(parser)["--device"]
    assert device.default == "auto"
    for good in ("auto", "cpu", "cuda", "cuda:1"):
        assert device.type(good) == good
    with pytest.raises(argparse.ArgumentTypeError):
        device.type("gpu0")


def test_old_spellings_still_parse():
    parsers = subcommands()
    assert parsers["make-tiny"].parse_args(["d", "--base"]).undistilled is True
    assert parsers["demo"].parse_args(["--size", "64"]).resolution == 64
    assert parsers["bench"].parse_args(["--variant", "tiny", "--out", "o"]).variant == "tiny"


@pytest.mark.parametrize("command", ("generate", "eval", "bench"))
def test_compile_takes_the_same_modes_where_images_are_made(command):
    action = options(subcommands()[command])["--compile"]
    for mode in ("off", "full", "regional"):
        assert mode in (action.choices or ()) or mode in (action.help or ""), (command, mode)
