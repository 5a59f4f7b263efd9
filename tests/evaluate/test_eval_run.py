"""`evaluate` on the tiny model: BF16 reference, two INT8 recipes, every metric through tiny networks;
caching, stale cases, shards and their merge, conflicting settings."""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import replace

import numpy as np
import pytest
from eval_helpers import HAS_LPIPS, HAS_TORCHMETRICS, STEPS
from PIL import Image

from flux2_int8.errors import ConfigError
from flux2_int8.evaluate import Case, Layout, MetricOptions, Shard, Suite, evaluate, image_tensor, psnr
from flux2_int8.evaluate.runner import default_loader

CHEAP = MetricOptions(metrics=frozenset({"psnr", "fidelity"}))


class CountingLoader:
    """The real loader (`load_pipeline`), counting which models it loads."""

    def __init__(self):
        self.loaded: list[str | None] = []
        self.load = default_loader()

    def __call__(self, base, transformer, device, dtype):
        self.loaded.append(transformer)
        return self.load(base, transformer, device, dtype)


def _run(out, tiny_base, candidates, suite, sampling, options=CHEAP, **kwargs):
    loader = CountingLoader()
    result = evaluate(str(tiny_base), candidates, out, suite=suite, options=options, sampling=sampling, device="cpu", loader=loader, progress=False, **kwargs)
    return result, loader


@pytest.fixture(scope="module")
def candidates(int8_recipes) -> list[str]:
    return [f"{name}={path}" for name, path in int8_recipes.items()]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_base, candidates, tiny_suite, sampling, tiny_networks):
    out = tmp_path_factory.mktemp("full")
    result, loader = _run(out, tiny_base, candidates, tiny_suite, sampling, MetricOptions(networks=tiny_networks))
    return result, loader


def test_every_model_case_input_and_trajectory_is_written(full_run, tiny_suite):
    result, loader = full_run
    layout = Layout(result.out)
    assert len(loader.loaded) == 3  # the reference and the two candidates, each loaded once
    for case in tiny_suite.cases:
        for model in ("bf16", "int8", "int8mod"):
            assert layout.image(model, case).is_file()
        assert layout.trajectory(case).is_file()
        assert all(path.is_file() for path in layout.inputs(case))
        assert layout.fidelity("int8", case).is_file() and not layout.fidelity("bf16", case).exists()
    assert {path.name for path in result.out.iterdir()} >= {"metrics.json", "report.md", "report.html", "run.json"}


def test_metrics_json_has_every_metric_per_task_and_overall(full_run):
    document = json.loads((full_run[0].out / "metrics.json").read_text())
    assert set(document["summary"]) == {"overall", "t2i", "edit", "composition"}
    expected = {"clip_s", "clip_cosine", "psnr", "velocity_error", "velocity_error_per_step"}
    expected |= {"lpips"} if HAS_LPIPS else set()
    for subset in document["summary"].values():
        assert set(subset["bf16"]) == {"count", "clip_s", "clip_cosine"}
        # FID needs two images a set, KID four: t2i (2 cases) has an FID, the overall set (4) both.
        count = subset["int8"]["count"]
        sets = {key for key, least in (("fid", 2), ("kid_mean", 4), ("kid_std", 4)) if HAS_TORCHMETRICS and count >= least}
        for name in ("int8", "int8mod"):
            assert expected | sets <= set(subset[name])
            assert not ({"fid", "kid_mean"} - sets) & set(subset[name])
            assert len(subset[name]["velocity_error_per_step"]) == STEPS
            assert 0 < subset[name]["velocity_error"] < 0.5
    assert document["metric_models"]["clip"].startswith("tiny random CLIP")


def test_scores_agree_with_the_images_on_disk(full_run, tiny_suite):
    """PSNR recomputed from the PNGs, CLIP-S as the mean of 2.5 max(cos, 0), per-task means of per-case values."""
    result, _ = full_run
    document = result.document
    layout = Layout(result.out)
    by_task: dict[str, list[float]] = {}
    for row, case in zip(document["cases"], tiny_suite.cases):
        expected = psnr(image_tensor(Image.open(layout.image("int8", case))), image_tensor(Image.open(layout.image("bf16", case))))
        assert row["scores"]["int8"]["psnr"] == pytest.approx(expected)
        by_task.setdefault(case.task, []).append(expected)
    for task, values in by_task.items():
        assert document["summary"][task]["int8"]["psnr"] == pytest.approx(sum(values) / len(values))
    cosines = [row["scores"]["int8mod"]["clip_cosine"] for row in document["cases"]]
    assert document["summary"]["overall"]["int8mod"]["clip_s"] == pytest.approx(sum(2.5 * max(c, 0) for c in cosines) / len(cosines))


def test_candidate_pairs_count_every_case(full_run):
    pair = full_run[0].document["pairs"]["overall"][0]
    assert (pair["a"], pair["b"], pair["count"]) == ("int8", "int8mod", 4)
    assert sum(pair["closer"].values()) == 4
    assert math.isfinite(pair["psnr"])


def test_report_md_has_the_card_tables_per_task_and_the_pair_and_step_tables(full_run):
    report = (full_run[0].out / "report.md").read_text()
    for heading in ("## Overall (4 cases)", "## Text-to-image (2 cases)", "## Editing (1 case)", "## Composition (1 case)", "## Candidate vs candidate", "## Transformer fidelity per denoising step"):
        assert heading in report
    assert "| Metric | bf16 (reference) | int8 | int8mod |" in report
    for row in ("| CLIP-S (2.5·max(cos,0)) ↑ |", "| PSNR ↑ | — |", "| velocity rel. error ↓ | — |"):
        assert row in report
    if HAS_TORCHMETRICS:
        assert "| FID ↓ | — |" in report and "| KID ↓ | — |" in report and "rank <= 3" in report  # the small-sample note
    if HAS_LPIPS:
        assert "| LPIPS ↓ | — |" in report


def test_report_html_shows_prompts_and_links_every_image(full_run, tiny_suite):
    out = full_run[0].out
    page = (out / "report.html").read_text()
    for case in tiny_suite.cases:
        assert case.prompt in page and all(prompt in page for prompt in case.input_prompts)
    sources = re.findall(r"<img src='([^']+)'", page)
    assert len(sources) == 4 * 3 + 3 + 4 * 2  # three models per case, three generated inputs, a difference map per candidate and case
    assert all((out / source).is_file() for source in sources)


def _chart_values(page: str) -> dict[str, dict[tuple[str, str], float]]:
    """{chart kind: {(series, group or x position): value}} from the page's SVG bars and points."""
    charts = {}
    for kind, svg in re.findall(r"<svg class='chart' data-kind='([^']*)'(.*?)</svg>", page, re.S):
        bars = re.findall(r"<rect class='bar' data-series='([^']*)' data-group='([^']*)' data-value='([^']*)'", svg)
        points = re.findall(r"<circle class='point' data-series='([^']*)' data-value='([^']*)'", svg)
        values = {(series, group): float(value) for series, group, value in bars}
        for series in dict.fromkeys(name for name, _ in points):
            values.update({(series, str(k + 1)): float(v) for k, v in enumerate(v for name, v in points if name == series)})
        charts[kind] = values
    return charts


def test_report_charts_carry_every_number_of_metrics_json(full_run):
    out = full_run[0].out
    document = json.loads((out / "metrics.json").read_text())
    charts = _chart_values((out / "report.html").read_text())
    keys = {"clip_s", "psnr", "velocity_error"} | ({"lpips"} if HAS_LPIPS else set()) | ({"fid", "kid_mean"} if HAS_TORCHMETRICS else set())
    assert keys | {"velocity_per_step"} == set(charts)
    titles = {"overall": "Overall", "t2i": "Text-to-image", "edit": "Editing", "composition": "Composition"}
    for key in keys:
        models = ["bf16", "int8", "int8mod"] if key == "clip_s" else ["int8", "int8mod"]
        expected = {}
        for subset, entries in document["summary"].items():
            for model in models:
                value = entries[model].get(key)
                if isinstance(value, float) and math.isfinite(value):
                    expected[(f"{model} (reference)" if model == "bf16" else model, f"{titles[subset]} ({entries[model]['count']})")] = value
        assert charts[key] == pytest.approx(expected), key
    steps = {(model, str(k + 1)): v for model in ("int8", "int8mod") for k, v in enumerate(document["summary"]["overall"][model]["velocity_error_per_step"])}
    assert charts["velocity_per_step"] == pytest.approx(steps)


def test_difference_maps_are_the_amplified_pixel_differences(full_run):
    out = full_run[0].out
    for case in json.loads((out / "metrics.json").read_text())["cases"]:
        reference = np.asarray(Image.open(out / case["images"]["bf16"]).convert("RGB"), dtype=np.int32)
        assert set(case["differences"]) == {"int8", "int8mod"} and case["difference_gain"] in (1, 2, 4, 8, 16, 32, 64)
        for model, path in case["differences"].items():
            candidate = np.asarray(Image.open(out / case["images"][model]).convert("RGB"), dtype=np.int32)
            expected = np.clip(np.abs(candidate - reference) * case["difference_gain"], 0, 255)
            assert np.array_equal(np.asarray(Image.open(out / path)), expected)


def test_run_json_and_the_report_header_record_versions_device_command_and_date(full_run):
    import diffusers
    import torch
    import transformers

    out = full_run[0].out
    (run,) = json.loads((out / "run.json").read_text())["runs"][:1]
    assert run["versions"]["torch"] == torch.__version__ and run["versions"]["diffusers"] == diffusers.__version__
    assert run["versions"]["transformers"] == transformers.__version__ and run["versions"]["flux2_int8"]
    assert run["device_type"] == "cpu" and run["device_name"] and run["command"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run["date_utc"])
    header = re.search(r"<div class=run>(.*?)</div></div>", (out / "report.html").read_text(), re.S).group(1)
    for text in (f"torch {torch.__version__}", f"diffusers {diffusers.__version__}", f"transformers {transformers.__version__}", "on cpu", "Command:", run["date_utc"][:10]):
        assert html.escape(text) in header, text


def test_a_rerun_loads_nothing_and_scores_the_same(full_run, tiny_base, candidates, tiny_suite, sampling, tiny_networks):
    first = full_run[0]
    again, loader = _run(first.out, tiny_base, candidates, tiny_suite, sampling, MetricOptions(networks=tiny_networks))
    assert loader.loaded == []
    assert again.document["summary"] == first.document["summary"]


def test_an_edited_case_is_made_again_and_nothing_else(tmp_path, tiny_base, int8_recipes, sampling):
    suite = Suite("two", (Case("a", "A red cube", 1), Case("b", "A blue cube", 2)))
    _run(tmp_path, tiny_base, [f"int8={int8_recipes['int8']}"], suite, sampling)
    layout = Layout(tmp_path)
    untouched = layout.image("int8", suite.cases[0]).stat().st_mtime_ns
    edited = Suite("two", (suite.cases[0], replace(suite.cases[1], prompt="A green cube")))
    result, loader = _run(tmp_path, tiny_base, [f"int8={int8_recipes['int8']}"], edited, sampling)
    assert len(loader.loaded) == 2
    assert layout.image("int8", suite.cases[0]).stat().st_mtime_ns == untouched
    assert Image.open(layout.image("int8", edited.cases[1])).text["prompt"] == "A green cube"
    assert result.document["cases"][1]["prompt"] == "A green cube"


def test_shards_merge_into_the_same_images_as_one_run_and_merging_is_idempotent(tmp_path, full_run, tiny_base, int8_recipes, tiny_suite, sampling):
    candidate = [f"int8={int8_recipes['int8']}"]
    for index in (0, 1):
        shard, _ = _run(tmp_path / f"shard{index}", tiny_base, candidate, tiny_suite, sampling, shard=Shard(index, 2))
        assert shard.document is None and not (tmp_path / f"shard{index}" / "report.md").exists()
    sources = [tmp_path / "shard0", tmp_path / "shard1"]
    merged, loader = _run(tmp_path / "merged", tiny_base, candidate, tiny_suite, sampling, merge=sources)
    assert loader.loaded == [] and merged.merged.copied > 0 and merged.merged.conflicts == 0
    assert len(json.loads((merged.out / "run.json").read_text())["runs"]) == 3  # each shard's run, and the merge's
    single, full = Layout(full_run[0].out), Layout(merged.out)
    for case in tiny_suite.cases:
        for model in ("bf16", "int8"):
            assert full.image(model, case).read_bytes() == single.image(model, case).read_bytes()
    again, _ = _run(tmp_path / "merged", tiny_base, candidate, tiny_suite, sampling, merge=sources)
    assert again.merged.copied == 0 and again.merged.present == merged.merged.copied
    assert len(json.loads((merged.out / "run.json").read_text())["runs"]) == 4  # merging again adds its own run, not the shards' twice
    assert again.document["summary"] == merged.document["summary"]


def test_a_folder_refuses_other_settings_and_a_renamed_checkpoint(full_run, tiny_base, int8_recipes, tiny_suite, sampling):
    out = full_run[0].out
    with pytest.raises(ConfigError, match="was made with width = 64, this run asks for 128"):
        _run(out, tiny_base, [f"int8={int8_recipes['int8']}"], tiny_suite, replace(sampling, width=128))
    with pytest.raises(ConfigError, match="model 'int8' was made from .*int8.safetensors.*pick another name"):
        _run(out, tiny_base, [f"int8={int8_recipes['int8mod']}"], tiny_suite, sampling)


def test_bad_models_are_refused_before_anything_is_written(tmp_path, tiny_base, int8_recipes, tiny_suite, sampling):
    with pytest.raises(ConfigError, match="two models are named 'int8'"):
        _run(tmp_path, tiny_base, [f"int8={int8_recipes['int8']}", f"int8={int8_recipes['int8mod']}"], tiny_suite, sampling)
    with pytest.raises(Exception, match="missing.safetensors: no such file or folder"):
        _run(tmp_path / "out", tiny_base, [f"int8={tmp_path / 'missing.safetensors'}"], tiny_suite, sampling)
    assert not (tmp_path / "out").exists()
