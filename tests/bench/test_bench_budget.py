"""`bench --time-budget`: plans that cannot fit are skipped, and the files on disk always hold every
finished run, also when the process is stopped between plans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flux2_int8.bench import pipeline_bench
from flux2_int8.bench.budget import Budget
from flux2_int8.bench.pipeline_bench import BenchSettings, run_benchmark
from flux2_int8.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_budget_estimates_from_the_slowest_finished_unit_of_the_same_kind():
    clock = FakeClock()
    budget = Budget(10.0, clock=clock)
    assert budget.skip_reason("plan") is None  # nothing to estimate from: it runs
    with budget.timed("plan"):
        clock.now += 4.0
    assert budget.skip_reason("plan") is None  # 6 s left, 4 s needed
    with budget.timed("plan"):
        clock.now += 3.0
    assert "needs about 4 s (the longest plan so far), 3 s of the 10 s budget left" == budget.skip_reason("plan")
    assert budget.skip_reason("shape") is None  # another kind has no estimate yet
    clock.now += 5.0
    assert budget.skip_reason("shape") == "time budget of 10 s spent"
    assert Budget(None).skip_reason("plan") is None and Budget(None).remaining() is None


def test_a_budget_that_fits_one_plan_skips_the_next_and_reports_every_state(monkeypatch):
    """Each plan 'takes' 6 s of a 10 s budget: the first runs, the second is skipped with its reason."""
    clock = FakeClock()
    real_plan = pipeline_bench._bench_plan

    def six_seconds(*args, **kwargs):  # type: ignore[no-untyped-def]
        real_plan(*args, **kwargs)
        clock.now += 6.0

    monkeypatch.setattr(pipeline_bench, "_bench_plan", six_seconds)
    updates = []
    settings = BenchSettings(variant="tiny", formats=("bf16", "int8"), compile_modes=("off",), resolution=64, repeats=1, warmup=0, device="cpu")
    result = run_benchmark(settings, budget=Budget(10.0, clock=clock), on_update=lambda r: updates.append((len(r.runs), len(r.skipped))))
    assert [run.label for run in result.runs] == ["bf16"]
    assert result.skipped == [{"what": "int8", "why": "needs about 6 s (the longest transformer plan so far), 4 s of the 10 s budget left"}]
    assert updates == [(0, 0), (1, 0), (1, 1)]  # after loading, after the bf16 run, after the skip


def test_cli_writes_skipped_plans_when_the_budget_is_spent(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["bench", "--base", "tiny", "--formats", "bf16,int8", "--compile", "off", "--repeats", "1", "--time-budget", "0.001", "--out", str(out)]) == 0
    document = json.loads((out / "bench-tiny.json").read_text())
    assert document["status"] == "complete" and document["time_budget_s"] == 0.001 and document["runs"] == []
    assert [entry["what"] for entry in document["skipped"]] == ["bf16", "int8"]
    assert all("budget" in entry["why"] for entry in document["skipped"])
    assert "Skipped by the time budget:" in (out / "bench-tiny.md").read_text() and "--time-budget 0.001" in document["command"]


def _start_bench(out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "flux2_int8.cli", "bench", "--base", "tiny", "--formats", "bf16,int8,fp8", "--compile", "off", "--repeats", "2", "--resolution", "64", "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_runs(process: subprocess.Popen, path: Path, runs: int, timeout_s: float = 300.0) -> dict:
    """Poll the report until it holds `runs` finished runs (every read must parse: writes are atomic)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        if path.exists():
            document = json.loads(path.read_text())
            if len(document["runs"]) >= runs:
                return document
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"no {runs} finished run(s) in {path} after {timeout_s} s")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_a_process_stopped_between_plans_leaves_every_finished_run_on_disk(tmp_path, stop):
    out = tmp_path / "out"
    process = _start_bench(out)
    seen = _wait_for_runs(process, out / "bench-tiny.json", runs=1)
    assert seen["status"] == "running"
    process.send_signal(stop)
    code = process.wait(timeout=120)
    document = json.loads((out / "bench-tiny.json").read_text())
    finished = [run["label"] for run in document["runs"]]
    assert finished[: len(seen["runs"])] == [run["label"] for run in seen["runs"]] and len(finished) < 3
    assert all(run["step"]["median_s"] > 0 for run in document["runs"])
    if stop == signal.SIGTERM:  # a graceful stop says so, in both files
        assert code == 143 and document["status"] == "interrupted"
        assert "- status: interrupted" in (out / "bench-tiny.md").read_text()
    else:  # killed outright: the last write stands, still marked as running
        assert code == -signal.SIGKILL and document["status"] == "running"
    assert sorted(path.name for path in out.iterdir()) == ["bench-tiny.html", "bench-tiny.json", "bench-tiny.md"]  # no temporary left
