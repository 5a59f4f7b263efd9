"""nano-outliers: planted activation outliers that leave the model's function unchanged."""

from __future__ import annotations

import json
import statistics

import torch
from diffusers import Flux2Transformer2DModel

from flux2_int8.nano import nano_folder
from flux2_int8.channels import foldable_consumers


def nano_transformer() -> Flux2Transformer2DModel:
    return Flux2Transformer2DModel.from_pretrained(nano_folder() / "transformer", torch_dtype=torch.float32).eval()


def random_inputs(model: Flux2Transformer2DModel, seed: int = 0) -> dict:
    from flux2_int8.tiny import random_transformer_inputs

    torch.manual_seed(seed)
    return random_transformer_inputs(dict(model.config))


def run(model, inputs):
    with torch.no_grad():
        return model(**inputs).sample.double()


def test_planting_keeps_the_function_and_scales_the_chosen_channels():
    from flux2_int8.nano.outliers import plant_outliers

    model = nano_transformer()
    inputs = random_inputs(model)
    before = run(model, inputs)
    widths = {name: model.get_submodule(name).in_features for name in foldable_consumers(model)}
    columns = {name: model.get_submodule(name).weight.detach().clone() for name in widths}
    planted = plant_outliers(model, {name: torch.ones(width) for name, width in widths.items()})
    after = run(model, inputs)
    assert torch.linalg.norm(after - before) / torch.linalg.norm(before) <= 1e-5
    assert set(planted) == set(widths)
    for name, channels in planted.items():
        assert len(channels) in (2, 4)  # two per part; single blocks' to_out reads two parts
        weight = model.get_submodule(name).weight.detach()
        for channel, scale in channels.items():
            assert scale == 64.0  # 50 x the median rounded to a power of 2 when every range is equal
            assert torch.equal(weight[:, channel] * scale, columns[name][:, channel])


def test_the_built_in_base_is_nano_with_wide_channels(capsys):
    """Same outputs as nano; the planted channels measure about 50x the median channel on other prompts."""
    import flux2_int8.nano.outliers as outliers
    from flux2_int8.generate import load_pipeline

    folder = outliers.nano_outliers_folder()
    planted = json.loads((folder / "planted_outliers.json").read_text())
    original, planted_model = nano_transformer(), Flux2Transformer2DModel.from_pretrained(folder / "transformer", torch_dtype=torch.float32).eval()
    inputs = random_inputs(original, seed=1)
    want = run(original, inputs)
    assert torch.linalg.norm(run(planted_model, inputs) - want) / torch.linalg.norm(want) <= 1e-5
    pipe = load_pipeline("nano-outliers", device="cpu", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    prompts = outliers._MEASURE_PROMPTS
    try:
        outliers._MEASURE_PROMPTS = ("four yellow squares on a red background", "one black triangle on a white background")
        ranges = outliers.measure_channel_ranges(pipe, list(planted))
    finally:
        outliers._MEASURE_PROMPTS = prompts
    ratios = [float(ranges[name][int(c)] / ranges[name].median()) for name, channels in planted.items() for c in channels]
    with capsys.disabled():
        print(f"\nnano-outliers: planted channel range / median channel range on held-out prompts: min {min(ratios):.0f}x, median {statistics.median(ratios):.0f}x, max {max(ratios):.0f}x")
    assert 30 <= statistics.median(ratios) <= 100 and min(ratios) >= 15
