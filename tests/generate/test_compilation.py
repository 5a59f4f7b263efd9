"""Regional compilation: one graph per block class, reused by every block, with every INT8 backend."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from flux2_int8.bench.random_weights import random_transformer
from flux2_int8.commands import generate as generate_command
from flux2_int8.generate.compilation import compile_transformer, resolve_compile_mode
from flux2_int8.int8.backends import BACKENDS
from flux2_int8.int8.linear import set_int8_backend
from flux2_int8.tiny import TINY_TRANSFORMER_CONFIG, random_transformer_inputs

BLOCK_CLASSES = 2  # Flux2TransformerBlock, Flux2SingleTransformerBlock


@pytest.fixture(scope="module")
def inputs():
    return dict(random_transformer_inputs(dict(TINY_TRANSFORMER_CONFIG)), return_dict=False)


@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
def test_regional_compile_has_no_graph_break_and_one_graph_per_block_class(inputs, backend):
    """fullgraph=True turns any graph break into an error; the counter sees every graph Dynamo makes.
    The tiny model has 2 double and 2 single blocks: 2 graphs means each is reused by the second copy."""
    torch._dynamo.reset()
    model = random_transformer(dict(TINY_TRANSFORMER_CONFIG), "int8", "cpu", torch.float32)
    set_int8_backend(model, backend)
    with torch.no_grad():
        eager = model(**inputs)[0]
        counter = CompileCounter()
        model.compile_repeated_blocks(fullgraph=True, backend=counter)  # what compile_transformer(..., "regional") calls
        compiled = model(**inputs)[0]
        model(**inputs)
    assert counter.frame_count == BLOCK_CLASSES
    torch.testing.assert_close(compiled, eager, rtol=0, atol=0)  # the counter's backend runs the captured graph as is


@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
def test_full_compile_has_no_graph_break(inputs, backend):
    torch._dynamo.reset()
    model = random_transformer(dict(TINY_TRANSFORMER_CONFIG), "int8", "cpu", torch.float32)
    set_int8_backend(model, backend)
    with torch.no_grad():
        explanation = torch._dynamo.explain(model)(**inputs)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


def test_regional_compile_with_inductor_matches_eager(inputs):
    torch._dynamo.reset()
    model = random_transformer(dict(TINY_TRANSFORMER_CONFIG), "int8", "cpu", torch.float32)
    with torch.no_grad():
        eager = model(**inputs)[0]
        compile_transformer(model, "regional")
        compiled = model(**inputs)[0]
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


def test_compile_choices_and_their_spellings():
    assert [resolve_compile_mode(value) for value in ("off", "FULL", "regional", "on")] == ["off", "full", "regional", "full"]
    with pytest.warns(FutureWarning):
        assert resolve_compile_mode(False) == "off"


def test_generate_compile_flag_takes_a_choice_and_its_bare_spelling_still_works(capsys):
    from flux2_int8.cli import build_parser

    parser = build_parser()
    base = ["generate", "--base", "klein-4b", "--prompt", "p"]
    assert parser.parse_args(base).compile == "off"
    assert generate_command._compile_choice(parser.parse_args([*base, "--compile", "regional"]).compile) == "regional"
    assert capsys.readouterr().err == ""
    assert generate_command._compile_choice(parser.parse_args([*base, "--compile"]).compile) == "on"
    assert "--compile without a value is deprecated" in capsys.readouterr().err
