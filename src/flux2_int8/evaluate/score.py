"""Scoring a generated folder: per case, then per task and overall, then candidate against candidate.

CLIP scores every model (the reference too) against the case's prompt on its own; LPIPS
and PSNR compare each candidate's image with the reference model's image of the same
case; FID and KID compare a candidate's image set with the reference set; the velocity
error comes from the fidelity records written during generation. Images are read one
case at a time, so memory does not grow with the suite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import Flux2Int8Error
from ..nano.grammar import parse_prompt
from ..nano.score import read_image, score_reading
from .layout import Layout, read_fidelity
from .metrics import MetricModels, clip_s, image_tensor, psnr, set_scores, small_sample_note
from .suite import Case, Suite

OVERALL = "overall"
ACCURACY_KEYS = ("accuracy", "accuracy_background", "accuracy_colour", "accuracy_count", "accuracy_shape")
PER_CASE_MEANS = ("clip_cosine", "clip_s", "lpips", "psnr", "velocity_error", *ACCURACY_KEYS)


def missing_files(layout: Layout, cases: Sequence[Case], models: Sequence[str], fidelity: bool) -> list[Path]:
    """Files scoring needs that the folder lacks (an unfinished shard, an interrupted run)."""
    missing = [layout.image(model, case) for case in cases for model in models if not layout.image(model, case).is_file()]
    if fidelity:
        missing += [layout.fidelity(model, case) for case in cases for model in models[1:] if not layout.fidelity(model, case).is_file()]
    return missing


def score(layout: Layout, suite: Suite, reference: str, candidates: Sequence[str], metrics: set[str], networks: MetricModels) -> dict[str, Any]:
    """The metrics document (metrics.json) of a complete folder."""
    models = [reference, *candidates]
    missing = missing_files(layout, suite.cases, models, "fidelity" in metrics)
    if missing:
        raise Flux2Int8Error(f"{layout.root}: {len(missing)} file(s) to score are missing (first: {missing[0]}); run the generation for every shard, or --merge the shard folders, first")
    features: dict[str, dict[str, torch.Tensor]] = {model: {} for model in models}
    cases = [_score_case(layout, case, reference, candidates, metrics, networks, features) for case in suite.cases]
    subsets = {OVERALL: list(suite.cases), **{task: suite.by_task(task) for task in suite.tasks}}
    summary = {name: _summary(subset, cases, models, reference, features, metrics) for name, subset in subsets.items()}
    pairs = {name: _pairs(subset, cases, candidates) for name, subset in subsets.items()}
    return {
        "suite": {"name": suite.name, "cases": len(suite.cases), "tasks": {task: len(suite.by_task(task)) for task in suite.tasks}},
        "reference": reference,
        "candidates": list(candidates),
        "metrics": sorted(metrics),
        "metric_models": _metric_names(networks),
        "summary": summary,
        "pairs": pairs,
        "cases": cases,
        "notes": _notes(subsets, features, reference, metrics),
    }


def _score_case(layout: Layout, case: Case, reference: str, candidates: Sequence[str], metrics: set[str], networks: MetricModels, features: dict) -> dict[str, Any]:
    images = {model: _read_rgb(layout.image(model, case)) for model in (reference, *candidates)}
    tensors = {model: image_tensor(image) for model, image in images.items()}
    scores: dict[str, dict[str, Any]] = {model: {} for model in images}
    if networks.clip is not None and "clip" in metrics:
        for model, cosine in zip(images, networks.clip.cosines(list(images.values()), [case.prompt] * len(images))):
            scores[model].update(clip_cosine=cosine, clip_s=clip_s(cosine))
    for model in candidates:
        if "psnr" in metrics:
            scores[model]["psnr"] = psnr(tensors[model], tensors[reference])
        if networks.lpips is not None and "lpips" in metrics:
            scores[model]["lpips"] = networks.lpips(tensors[model], tensors[reference])
        if "fidelity" in metrics:
            per_step = read_fidelity(layout.fidelity(model, case))
            scores[model].update(velocity_error=sum(per_step) / len(per_step), velocity_error_per_step=per_step)
    scene = parse_prompt(case.prompt) if "accuracy" in metrics and not case.num_inputs else None
    if scene is not None:
        for model, image in images.items():
            scores[model].update(_prompt_accuracy(scene, image))
    if networks.inception is not None and metrics & {"fid", "kid"}:
        for model, row in zip(images, networks.inception(list(tensors.values()))):
            features[model][case.id] = row
    return {
        "id": case.id,
        "task": case.task,
        "seed": case.seed,
        "prompt": case.prompt,
        "input_prompts": list(case.input_prompts),
        "note": case.note,
        "inputs": [_relative(path, layout.root) for path in layout.inputs(case)],
        "images": {model: _relative(layout.image(model, case), layout.root) for model in images},
        "scores": scores,
        "pairs": _case_pairs(tensors, candidates, networks, metrics),
    }


def _prompt_accuracy(scene: Any, image: Image.Image) -> dict[str, float]:
    """1.0/0.0 per ask of a nano prompt; `accuracy` is background, colour and count all right."""
    hits = score_reading(scene, read_image(np.asarray(image)))
    row = {f"accuracy_{key}": float(hit) for key, hit in hits.items()}
    row["accuracy"] = float(hits["background"] and hits["colour"] and hits["count"])
    return row


def _case_pairs(tensors: dict[str, torch.Tensor], candidates: Sequence[str], networks: MetricModels, metrics: set[str]) -> dict[str, dict[str, float]]:
    """Candidate vs candidate on one case: how alike their two images are."""
    pairs = {}
    for a, b in combinations(candidates, 2):
        pair: dict[str, float] = {}
        if "psnr" in metrics:
            pair["psnr"] = psnr(tensors[a], tensors[b])
        if networks.lpips is not None and "lpips" in metrics:
            pair["lpips"] = networks.lpips(tensors[a], tensors[b])
        pairs[f"{a}|{b}"] = pair
    return pairs


def _summary(subset: Sequence[Case], cases: list[dict], models: Sequence[str], reference: str, features: dict, metrics: set[str]) -> dict[str, dict[str, Any]]:
    ids = {case.id for case in subset}
    rows = [case for case in cases if case["id"] in ids]
    summary: dict[str, dict[str, Any]] = {}
    for model in models:
        entry: dict[str, Any] = {"count": len(rows)}
        for key in PER_CASE_MEANS:
            values = [row["scores"][model][key] for row in rows if key in row["scores"][model]]
            if values:
                entry[key] = _mean(values)
        steps = [row["scores"][model]["velocity_error_per_step"] for row in rows if "velocity_error_per_step" in row["scores"][model]]
        if steps:
            entry["velocity_error_per_step"] = [_mean(list(column)) for column in zip(*steps)]
        if model != reference and features[model]:
            order = [row["id"] for row in rows]
            sets = set_scores(torch.stack([features[reference][i] for i in order]), torch.stack([features[model][i] for i in order]), fid="fid" in metrics, kid="kid" in metrics)
            entry.update({key: value for key, value in vars(sets).items() if key != "count" and value is not None})
        summary[model] = entry
    return summary


def _pairs(subset: Sequence[Case], cases: list[dict], candidates: Sequence[str]) -> list[dict[str, Any]]:
    """Per candidate pair: mean similarity of their images, and on how many cases each was closer to the reference."""
    ids = {case.id for case in subset}
    rows = [case for case in cases if case["id"] in ids]
    result = []
    for a, b in combinations(candidates, 2):
        entry: dict[str, Any] = {"a": a, "b": b, "count": len(rows)}
        for key in ("psnr", "lpips"):
            values = [row["pairs"][f"{a}|{b}"][key] for row in rows if key in row["pairs"][f"{a}|{b}"]]
            if values:
                entry[key] = _mean(values)
        entry.update(_closer(rows, a, b))
        result.append(entry)
    return result


def _closer(rows: list[dict], a: str, b: str) -> dict[str, Any]:
    """Head to head by LPIPS to the reference (lower wins), or PSNR (higher wins) without LPIPS."""
    key, sign = ("lpips", -1.0) if all("lpips" in row["scores"][a] for row in rows) else ("psnr", 1.0)
    wins = {a: 0, b: 0, "tie": 0}
    for row in rows:
        if key not in row["scores"][a]:
            return {}
        first, second = sign * row["scores"][a][key], sign * row["scores"][b][key]
        wins[a if first > second else b if second > first else "tie"] += 1
    return {"closer_by": key, "closer": wins}


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if all(math.isfinite(v) for v in values) else (math.inf if any(v == math.inf for v in values) else math.nan)


def _metric_names(networks: MetricModels) -> dict[str, str]:
    names = {
        "psnr": "PSNR in dB over 8-bit RGB (peak 255), vs the reference image",
        "fidelity": "relative L2 error of the transformer's velocity vs the reference transformer, same inputs",
        "accuracy": "share of nano grammar prompts whose picture has the asked background, object colour and count (flux2_int8.nano.score)",
    }
    if networks.clip is not None:
        names["clip"] = f"{networks.clip.name}: cosine(image, prompt); CLIP-S = 2.5 * max(cos, 0)"
    if networks.lpips is not None:
        names["lpips"] = networks.lpips.name
    if networks.inception is not None:
        names["fid"] = names["kid"] = networks.inception.name
    return names


def _notes(subsets: dict[str, list[Case]], features: dict, reference: str, metrics: set[str]) -> list[str]:
    notes = []
    if "fid" in metrics and features[reference]:
        dimension = next(iter(features[reference].values())).shape[0]
        notes += [note for note in {small_sample_note(len(cases), dimension) for cases in subsets.values()} if note]
    return sorted(notes)


def _read_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:  # a suite's own input image outside the folder
        return path.resolve().as_uri()
