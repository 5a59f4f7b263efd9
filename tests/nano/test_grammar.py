"""The grammar, its held-out split and the tokenizer nano reads it with."""

from __future__ import annotations

from flux2_int8.nano.grammar import COLOURS, COUNT_WORDS, SHAPES, all_scenes, grammar_words, parse_prompt, split_scenes
from flux2_int8.nano.model import NANO_MAX_SEQUENCE_LENGTH, build_tokenizer


def test_scenes_cover_the_grammar_without_invisible_objects() -> None:
    scenes = all_scenes()
    assert len(scenes) == 4 * 6 * 3 * 5 == len(set(scenes))
    assert all(scene.colour != scene.background for scene in scenes)


def test_a_fixed_fifth_is_held_out_and_training_still_sees_every_word() -> None:
    training, held_out = split_scenes()
    assert (training, held_out) == split_scenes()
    assert len(held_out) == 72 and not set(training) & set(held_out)
    assert {s.colour for s in training} == {s.background for s in training} == set(COLOURS)
    assert {s.shape for s in training} == set(SHAPES) and {s.count_word for s in training} == {"a", "one", "two", "three"}


def test_prompts_parse_back_to_their_scene() -> None:
    for scene in all_scenes():
        assert parse_prompt(scene.prompt) == scene
    assert parse_prompt("two red circles on a blue background").count == 2
    assert parse_prompt("a purple circle on a blue background") is None
    assert parse_prompt("a photo of a cat") is None


def test_tokenizer_keeps_every_grammar_word_whole_and_prompts_fit() -> None:
    tokenizer = build_tokenizer()
    newline = len(tokenizer("\n")["input_ids"])
    for word in grammar_words():
        if word in COUNT_WORDS:  # a prompt's first word, which the chat template puts after a newline
            assert len(tokenizer("\n" + word)["input_ids"]) == newline + 1, word
        else:
            assert len(tokenizer(" " + word)["input_ids"]) == 1, word
    longest = max((scene.prompt for scene in all_scenes()), key=len)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": longest}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert len(tokenizer(text)["input_ids"]) <= NANO_MAX_SEQUENCE_LENGTH
