"""`eval --ray local --workers 2` on the tiny model: the single-process files and numbers, a lost worker, a refused pool."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import psutil
import pytest
from cli_helpers import run_cli
from scale_out_helpers import SIZE, STEPS, folder_bytes


def _eval_args(tiny_base, int8_candidate, suite_file, out, *extra):
    return (
        "eval", "--base", str(tiny_base), "--candidate", f"int8={int8_candidate}", "--suite", str(suite_file), "--out", str(out),
        "--metrics", "psnr,fidelity", "--width", str(SIZE), "--height", str(SIZE), "--steps", str(STEPS), "--dtype", "float32", "--device", "cpu",
        *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def single_process(tmp_path_factory, tiny_base, int8_candidate, suite_file):
    out = tmp_path_factory.mktemp("single") / "eval"
    code, _, stderr = run_cli(*_eval_args(tiny_base, int8_candidate, suite_file, out))
    assert code == 0, stderr
    return out


def _metrics(out):
    """metrics.json without what says how it was run (settings; runs: date, command, device)."""
    document = json.loads((out / "metrics.json").read_text())
    return {key: document[key] for key in document if key not in ("settings", "runs")}, document["settings"]


@pytest.fixture(scope="module")
def ray_run(ray_session, tmp_path_factory, tiny_base, int8_candidate, suite_file):
    """`eval --ray local --workers 2`, with one worker SIGKILLed as soon as the first image is written.

    One run serves both claims (the single-process files, and surviving a lost worker):
    each worker pool costs seconds of process start-up and model loading.
    """
    out = tmp_path_factory.mktemp("ray") / "eval"
    outcome: dict = {}
    args = _eval_args(tiny_base, int8_candidate, suite_file, out, "--ray", "local", "--workers", "2")
    thread = threading.Thread(target=lambda: outcome.update(zip(("code", "stdout", "stderr"), run_cli(*args))))
    thread.start()
    outcome["killed"] = _kill_a_worker_once_images_appear(out / "images" / "bf16")
    thread.join(timeout=600)
    assert not thread.is_alive()
    assert outcome["code"] == 0, outcome["stderr"]
    return out, outcome


def test_ray_eval_writes_the_single_process_images_and_metrics(ray_run, single_process):
    out, _ = ray_run
    expected = folder_bytes(single_process)
    assert len(expected) == 4 * 2 + 3 + 4 + 4  # images of 2 models, 3 generated inputs, 4 trajectories, 4 fidelity records
    assert folder_bytes(out) == expected  # byte-identical, every case once
    assert _metrics(out) == _metrics(single_process)


def test_a_killed_worker_is_replaced_and_its_cases_retried(ray_run):
    _, outcome = ray_run
    assert outcome["killed"] is not None, "no worker was found to kill"
    said = re.search(r"(\d+) work item\(s\) retried after a worker was lost; each came back exactly once", outcome["stderr"])
    assert said and int(said.group(1)) >= 1, outcome["stderr"]


def _kill_a_worker_once_images_appear(folder, timeout=300.0):
    """SIGKILL one of this session's Ray Data actors in the middle of a case, once the first reference image is written.

    Ray titles a worker process `ray::MapWorker(...).submit` while it runs a batch (a case),
    but the title can outlive the batch: the worker whose result was just written may sit
    idle under it, and killing that one loses no case. So the worker killed is the one
    using the CPU right now (the largest CPU time gained over a short look), which is
    inside a case.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if folder.is_dir() and any(folder.glob("*.png")):
            busiest = _busiest(_map_workers(), seconds=0.3)
            if busiest is not None:
                os.kill(busiest.pid, signal.SIGKILL)
                return busiest.pid
        time.sleep(0.01)
    return None


def _map_workers() -> list[psutil.Process]:
    workers = []
    for process in psutil.Process(os.getpid()).children(recursive=True):
        try:
            title = " ".join(process.cmdline())
        except psutil.Error:
            continue
        if "MapWorker" in title and title.strip().endswith(".submit"):
            workers.append(process)
    return workers


def _busiest(processes: list[psutil.Process], seconds: float) -> psutil.Process | None:
    """The process that gained the most CPU time over `seconds` (None if none gained any)."""
    def cpu(process: psutil.Process) -> float | None:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return None
        return times.user + times.system

    before = {process: cpu(process) for process in processes}
    time.sleep(seconds)
    gains = {process: after - before[process] for process in processes if before[process] is not None and (after := cpu(process)) is not None}
    busiest = max(gains, key=gains.get, default=None)
    return busiest if busiest is not None and gains[busiest] > 0 else None


def test_a_pool_larger_than_the_cluster_is_refused_before_anything_starts(ray_session, tmp_path, tiny_base, int8_candidate, suite_file):
    out = tmp_path / "eval"
    start = time.monotonic()
    code, _, stderr = run_cli(*_eval_args(tiny_base, int8_candidate, suite_file, out, "--ray", "local", "--workers", "2", "--gpus-per-worker", "1"))
    assert code == 2
    assert "needs 2 GPUs" in stderr and "has 0" in stderr
    assert time.monotonic() - start < 10 and not out.exists()
