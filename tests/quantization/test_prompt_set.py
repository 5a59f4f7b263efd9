"""The shipped prompt set, user prompt files, and the seeded, task-balanced draw."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from flux2_int8.quantization.prompts import PromptFileError, draw_samples, load_prompts, reference_records

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_calibration_prompts.py"


def test_shipped_set_is_768_distinct_prompts_256_per_task_with_resolvable_references():
    prompts = load_prompts()
    records = list(prompts.records.values())
    assert Counter(r.task for r in records) == {"t2i": 256, "edit": 256, "composition": 256}
    assert len({r.prompt for r in records}) == 768
    for record in records:
        assert all(prompts.records[ref].task == "t2i" for ref in record.references)
    assert {r.references for r in records if r.task == "composition"} and all(len(set(r.references)) == 2 for r in records if r.task == "composition")


def test_shipped_set_is_exactly_what_the_generator_script_writes():
    spec = importlib.util.spec_from_file_location("make_calibration_prompts", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generated = [json.dumps(record, ensure_ascii=False) for record in module.build_records()]
    shipped = [r for r in (Path(__file__).resolve().parents[2] / "src/flux2_int8/quantization/data/calibration_prompts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert generated == shipped


def test_draw_is_seeded_balanced_and_without_repeats():
    prompts = load_prompts()
    three = draw_samples(prompts, 3, seed=0)
    assert [r.task for r in three] == ["t2i", "edit", "composition"]
    many = draw_samples(prompts, 256, seed=0)
    assert len({r.id for r in many}) == 256
    assert Counter(r.task for r in many) == {"t2i": 86, "edit": 85, "composition": 85}
    assert [r.id for r in many] == [r.id for r in draw_samples(prompts, 256, seed=0)]
    assert [r.id for r in many] != [r.id for r in draw_samples(prompts, 256, seed=1)]
    assert {r.id for r in reference_records(prompts, three)} == set(three[1].references + three[2].references)


def test_user_file_with_ids_references_and_image_files(tmp_path):
    Image.new("RGB", (64, 64)).save(tmp_path / "room.png")
    lines = [
        {"id": "cat", "prompt": "a cat"},
        {"prompt": "make the cat blue", "references": ["cat"]},
        {"prompt": "put the cat in the room", "references": ["cat"], "images": ["room.png"], "task": "composition"},
    ]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    prompts = load_prompts(tmp_path / "p.jsonl")
    assert [r.task for r in prompts.records.values()] == ["t2i", "edit", "composition"]
    assert prompts.records["line-3"].images == (tmp_path / "room.png",)
    with pytest.raises(PromptFileError, match="--samples 4: must be between 1 and the 3 prompts"):
        draw_samples(prompts, 4, 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"prompt": "a"}\nnot json\n', "line 2: not valid JSON"),
        ('{"text": "a"}\n', 'line 1: "prompt" must be a non-empty string'),
        ('["a"]\n', "line 1: expected a JSON object"),
        ('{"prompt": "a", "references": ["nope"]}\n', "references 'nope', which is not in the file"),
        ('{"id": "e", "prompt": "a", "references": ["e"]}\n', "references 'e', which is not a text-to-image prompt"),
        ('{"id": "a", "prompt": "a"}\n{"id": "a", "prompt": "b"}\n', "line 2: id 'a' is used twice"),
        ('{"prompt": "a", "task": "edit"}\n', "task 'edit' does not fit 0 reference image"),
        ('{"prompt": "a", "images": ["missing.png"]}\n', "missing.png' does not exist"),
        ('{"prompt": "a", "references": "b"}\n', '"references" must be a list of strings'),
        ("\n\n", "no prompts found"),
    ],
)
def test_bad_prompt_files_name_the_line_and_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(PromptFileError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_prompts(path)


def test_missing_prompt_file_is_a_clear_error(tmp_path):
    with pytest.raises(PromptFileError, match="nope.jsonl: no such file"):
        load_prompts(tmp_path / "nope.jsonl")
