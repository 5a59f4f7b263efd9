"""Prompts files, output paths and atomic PNG writes, without a model."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from flux2_int8.generate import RequestError, Sampling, check_sampling, png_metadata, read_prompts_file, write_png
from flux2_int8.generate.output import output_path


def test_prompts_file_mixes_plain_and_jsonl_lines_and_reads_images_next_to_it(tmp_path):
    prompts = tmp_path / "batch" / "prompts.jsonl"
    prompts.parent.mkdir()
    prompts.write_text(
        "A cat on a sofa\n\n"
        + json.dumps({"prompt": "Make it night", "images": "refs/a.png", "seed": 9}) + "\n"
        + json.dumps({"prompt": "Combine", "images": ["refs/a.png", str(tmp_path / "b.png")]}) + "\n"
    )
    requests = read_prompts_file(prompts, default_seed=4)
    assert [(r.prompt, r.seed) for r in requests] == [("A cat on a sofa", 4), ("Make it night", 9), ("Combine", 4)]
    assert requests[1].images == (prompts.parent / "refs" / "a.png",)
    assert requests[2].images == (prompts.parent / "refs" / "a.png", tmp_path / "b.png")
    assert requests[2].source == f"{prompts} line 4"


@pytest.mark.parametrize(
    "line, expected",
    [
        ('{"prompt": 3}', "'prompt' must be a string"),
        ('{"prompt": "x", "images": [1]}', "'images' must be a list of image paths"),
        ('{"prompt": "x", "seed": "1"}', "'seed' must be an integer"),
        ('{"prompt": "x", "seed": true}', "'seed' must be an integer"),
        ('{}', "'prompt' must be a string"),
    ],
)
def test_bad_jsonl_lines_name_the_line(tmp_path, line, expected):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(f"fine prompt\n{line}\n")
    with pytest.raises(RequestError, match=f"p.jsonl line 2: ({expected})"):
        read_prompts_file(prompts)


def test_empty_and_undecodable_prompts_files_are_refused(tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(RequestError, match="holds no prompts"):
        read_prompts_file(tmp_path / "empty.txt")
    with pytest.raises(RequestError, match="cannot be read as UTF-8"):
        read_prompts_file(tmp_path / "binary.txt")


def test_sampling_accepts_defaults_and_valid_sizes():
    check_sampling(Sampling())
    check_sampling(Sampling(steps=1, guidance=0.0, width=64, height=1024, num_images=3))


def test_output_paths(tmp_path):
    assert output_path(tmp_path / "x.png", 1, 1, "p", 0) == tmp_path / "x.png"
    assert output_path(tmp_path / "x.PNG", 2, 3, "p", 0) == tmp_path / "x-002.png"
    assert output_path(tmp_path, 12, 20, "A red cube, on: a table!", 5) == tmp_path / "0012-a-red-cube-on-a-table-seed5.png"
    assert output_path(tmp_path, 1, 1, "日本", 0) == tmp_path / "0001-image-seed0.png"


def test_png_keeps_unicode_metadata(tmp_path):
    metadata = png_metadata("ein Würfel, 立方体", 1, 4, 1.0, (64, 64), "klein-4b", None, ())
    path = write_png(tmp_path / "u.png", Image.new("RGB", (64, 64)), metadata)
    assert Image.open(path).text["prompt"] == "ein Würfel, 立方体"


def test_failed_png_write_leaves_no_file(tmp_path, monkeypatch):
    (tmp_path / "keep.png").write_bytes(b"previous")

    def broken_save(self, handle, *args, **kwargs):
        handle.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_png(tmp_path / "new.png", Image.new("RGB", (64, 64)), {})
    with pytest.raises(OSError):
        write_png(tmp_path / "keep.png", Image.new("RGB", (64, 64)), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]
    assert (tmp_path / "keep.png").read_bytes() == b"previous"
