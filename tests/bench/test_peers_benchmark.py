"""benchmarks/peers.py --quick: the peer benchmark runs end to end on tiny shapes, skips absent peers and says so.

Only flux2-int8's own paths and BF16 run here (the peers are an optional extra and CI does
not install them); a peer whose package is missing is reported as skipped, not a crash.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from flux2_int8.bench.record import peers_tables

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def peers_module():
    spec = importlib.util.spec_from_file_location("peers_benchmark", ROOT / "benchmarks" / "peers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_reports_every_own_path_and_skips_a_missing_peer(peers_module, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(peers_module.PEERS, "sdnq", "a_package_that_is_not_installed")
    out = tmp_path / "peers.json"
    assert peers_module.main(["--quick", "--peers", "sdnq", "--max-shapes", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped peer sdnq: not installed (pip install 'flux2-int8[peers]')" in printed
    document = json.loads(out.read_text())
    assert document["status"] == "complete" and document["peers"] == [] and "sdnq" in document["skipped_peers"]
    (linear,) = document["linear"]
    assert {"bf16", "flux2-int8 eager", "flux2-int8 dynamic"} <= set(linear["paths"])
    for name, path in linear["paths"].items():
        assert path["ratio_min"] <= path["ratio"] <= path["ratio_max"] and path["median_s"] > 0
        if name != "int_mm alone":  # INT8 error against float64 of the BF16 weights: quantization-sized, finite
            assert 0 <= path["relative_error"] < 0.05
    assert linear["paths"]["bf16"]["ratio"] == 1.0 and linear["paths"]["bf16"]["relative_error"] < 0.01
    assert linear["paths"]["flux2-int8 eager"]["weight_bytes"] < linear["paths"]["bf16"]["weight_bytes"]
    assert document["block"]["part"] == "block" and [row["name"] for row in document["models"]] == ["tiny"]
    assert set(document["geometric_means"]) == {"16"} and "geometric mean" in printed
    assert any(entry["target"].startswith("tiny: flux2-int8 eager") for entry in document["targets"])
    table = "\n".join(peers_tables(document))
    assert "| K=" in table and "flux2-int8 eager" in table and "not installed" in table


def test_int8_from_bf16_quantizes_the_same_weights_and_calibrates_the_input_scale(peers_module):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 16, bias=True)).to(torch.bfloat16)
    x = torch.randn(8, 32).to(torch.bfloat16) * 3
    int8 = peers_module.int8_from_bf16(model, lambda m: m(x))
    layer = int8[0]
    assert layer.activations == "static" and torch.allclose(layer.input_scale, x.float().abs().amax() / 127)
    dequantized = layer.weight.float() * layer.weight_scale[:, None]
    assert (dequantized - model[0].weight.float()).abs().max() <= layer.weight_scale.max() / 2 + 1e-6
    assert isinstance(model[0], nn.Linear)  # the BF16 model is left as it was
