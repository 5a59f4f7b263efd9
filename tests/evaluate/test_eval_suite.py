"""Suites: the shipped 48 cases, custom JSONL files and their errors, PartiPrompts TSV files."""

from __future__ import annotations

import json

import pytest

from flux2_int8.evaluate import SuiteError, convert_parti_prompts, load_suite

PUBLISHED = {
    "t2i": "Turner",
    "edit": "Change the car color to yellow and make the garage look like a futuristic space hangar",
    "composition": "The statue is being reclaimed by the jungle, with vines and flowers growing over its features",
}


def test_shipped_suite_has_16_cases_per_task_with_fixed_unique_seeds():
    suite = load_suite()
    assert [len(suite.by_task(task)) for task in ("t2i", "edit", "composition")] == [16, 16, 16]
    assert len({case.id for case in suite.cases}) == 48
    assert len({case.seed for case in suite.cases}) == 48
    assert all(len(case.input_prompts) == 1 for case in suite.by_task("edit"))
    assert all(len(case.input_prompts) == 2 for case in suite.by_task("composition"))


def test_shipped_suite_holds_the_three_published_examples():
    suite = load_suite()
    for task, text in PUBLISHED.items():
        assert any(text in case.prompt for case in suite.by_task(task)), task
    car = next(case for case in suite.cases if "garage look like" in case.prompt)
    assert car.input_prompts == ("A red sports car parked in a garage",)
    statue = next(case for case in suite.cases if "reclaimed by the jungle" in case.prompt)
    assert "bronze statue of a Greek philosopher" in statue.input_prompts[0] and "rainforest canopy" in statue.input_prompts[1]


def test_limit_keeps_the_first_cases_of_each_task():
    suite = load_suite(limit=2)
    assert [case.id[:4] for case in suite.cases] == ["t2i-", "t2i-", "edit", "edit", "comp", "comp"]
    with pytest.raises(SuiteError, match="at least 1"):
        load_suite(limit=0)


def _write(path, records):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def test_custom_jsonl_with_image_inputs_relative_to_the_file(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "room.png").write_bytes(b"")
    path = _write(tmp_path / "suite.jsonl", [{"id": "a", "prompt": "A cube", "seed": 3}, "", {"id": "b", "prompt": "Add a cat", "input_images": ["photos/room.png"]}])
    suite = load_suite(path)
    assert [(c.id, c.task, c.seed) for c in suite.cases] == [("a", "t2i", 3), ("b", "edit", 0)]
    assert suite.cases[1].input_images == (tmp_path / "photos" / "room.png",)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("{not json", "line 1: not valid JSON"),
        ('["a list"]', "expected a JSON object"),
        ({"id": "a", "prompt": "x", "size": 3}, "unknown key 'size'"),
        ({"id": "a/b", "prompt": "x"}, "'id' must be a word"),
        ({"id": "a", "prompt": " "}, "'prompt' must be a non-empty string"),
        ({"id": "a", "prompt": "x", "seed": -1}, "'seed' must be an integer"),
        ({"id": "a", "prompt": "x", "task": "edit"}, "'task' is 'edit' but the case has 0 input"),
        ({"id": "a", "prompt": "x", "input_prompts": ["p"] * 5}, "at most 4 reference images"),
        ({"id": "a", "prompt": "x", "input_prompts": [3]}, "'input_prompts' must be a list of non-empty strings"),
        ({"id": "a", "prompt": "x", "input_images": ["missing.png"]}, "missing.png: no such file"),
    ],
)
def test_bad_case_names_the_line_and_the_problem(tmp_path, record, message):
    path = _write(tmp_path / "bad.jsonl", [record])
    with pytest.raises(SuiteError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        load_suite(path)
    assert str(path) in str(error.value)


def test_duplicate_ids_are_refused(tmp_path):
    path = _write(tmp_path / "dup.jsonl", [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}])
    with pytest.raises(SuiteError, match="line 2: id 'a' was already used at .* line 1"):
        load_suite(path)


def test_missing_and_empty_suite_files(tmp_path):
    with pytest.raises(SuiteError, match="no such file"):
        load_suite(tmp_path / "nope.jsonl")
    with pytest.raises(SuiteError, match="holds no cases"):
        load_suite(_write(tmp_path / "empty.jsonl", [""]))


PARTI = "Prompt\tCategory\tChallenge\tNote\nA cat on a mat\tAnimals\tSimple Detail\t\nA city at night\tWorld Knowledge\tPerspective\t\nA dog\tAnimals\tBasic\t\n"


def test_partiprompts_tsv_reads_as_t2i_cases_seeded_by_row(tmp_path):
    tsv = tmp_path / "PartiPrompts.tsv"
    tsv.write_text(PARTI)
    suite = load_suite(tsv)
    assert [(c.id, c.task, c.seed, c.note) for c in suite.cases] == [
        ("parti-0001", "t2i", 1, "Animals / Simple Detail"),
        ("parti-0002", "t2i", 2, "World Knowledge / Perspective"),
        ("parti-0003", "t2i", 3, "Animals / Basic"),
    ]


def test_partiprompts_converts_to_a_jsonl_suite_keeping_ids_and_seeds(tmp_path):
    tsv, jsonl = tmp_path / "PartiPrompts.tsv", tmp_path / "animals.jsonl"
    tsv.write_text(PARTI)
    assert convert_parti_prompts(tsv, jsonl, categories=["animals"]) == 2
    converted = load_suite(jsonl)
    assert [(c.id, c.seed, c.prompt) for c in converted.cases] == [("parti-0001", 1, "A cat on a mat"), ("parti-0003", 3, "A dog")]


def test_a_tsv_that_is_not_partiprompts_is_refused(tmp_path):
    tsv = tmp_path / "other.tsv"
    tsv.write_text("a\tb\n1\t2\n")
    with pytest.raises(SuiteError, match="not a PartiPrompts TSV"):
        load_suite(tsv)


def test_digest_changes_with_content_not_with_note():
    from flux2_int8.evaluate import Case

    case = Case("a", "A cube", 1)
    assert case.digest == Case("a", "A cube", 1, note="other").digest
    assert case.digest != Case("a", "A red cube", 1).digest
    assert case.digest != Case("a", "A cube", 2).digest
