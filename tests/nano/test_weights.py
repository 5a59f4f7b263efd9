"""The shipped nano draws what it is asked, on prompts it never trained on (read back by the scorer)."""

from __future__ import annotations

import pytest
import torch

from flux2_int8.generate import load_pipeline
from flux2_int8.nano.accuracy import measure
from flux2_int8.nano.grammar import split_scenes

# A fixed held-out set: every third held-out prompt (24, all counts, shapes and colours), seed 0.
# The shipped weights score 24/24 backgrounds, 23/24 object colours and 20/24 counts on it in
# float32 (19/24 counts in bf16), on this machine. Each floor leaves room for two to four pictures
# to flip on another CPU (float rounding moving a blob edge past a scorer threshold), while a
# broken sampling convention (sigmas, latent statistics, prompt length) or a barely trained
# model fails: after its first 344 transformer steps nano drew all 24 backgrounds right, but
# 3 of 24 object colours and 5 of 24 counts.
FLOORS = {"background": 0.95, "colour": 0.87, "count": 0.66}


@pytest.fixture(scope="module")
def held_out_rates() -> dict[str, float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rates, drawn = measure(load_pipeline("nano", device="cpu", dtype=torch.float32), split_scenes()[1][::3], seeds=(0,))
    finally:
        torch.set_num_threads(threads)
    assert len(drawn) == 24
    return rates


@pytest.mark.parametrize("ask", sorted(FLOORS))
def test_shipped_nano_meets_its_floor_on_held_out_prompts(held_out_rates, ask):
    assert held_out_rates[ask] >= FLOORS[ask], held_out_rates
