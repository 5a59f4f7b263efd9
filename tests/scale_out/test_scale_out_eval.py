"""`eval --ray local --workers 2` on the tiny model: the single-process files and numbers, a lost worker, a refused pool."""

from __future__ import annotations

import contextlib
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
    """`eval --ray local --workers 2`, with one worker SIGKILLed while it is making a case.

    One run serves both claims (the single-process files, and surviving a lost worker):
    each worker pool costs seconds of process start-up and model loading.
    """
    out = tmp_path_factory.mktemp("ray") / "eval"
    outcome: dict = {}
    args = _eval_args(tiny_base, int8_candidate, suite_file, out, "--ray", "local", "--workers", "2")
    thread = threading.Thread(target=lambda: outcome.update(zip(("code", "stdout", "stderr"), run_cli(*args))))
    thread.start()
    try:
        outcome["killed"] = _kill_a_worker_in_a_case(ray_session, thread)
    finally:  # never leave the run going on beside the next tests
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
    assert outcome["killed"] is not None, "no worker was found inside a case"
    said = re.search(r"(\d+) work item\(s\) retried after a worker was lost; each came back exactly once", outcome["stderr"])
    assert said and int(said.group(1)) >= 1, outcome["stderr"]


def _kill_a_worker_in_a_case(ray, run: threading.Thread) -> int | None:
    """SIGKILL a worker that the run's ledger says holds an unmade case; its pid (None if the run ended first).

    Looking and killing cannot be one act, and a tiny case lasts about 0.1 s, so the
    worker is first stopped (SIGSTOP) and the ledger asked again: a stopped worker cannot
    finish its case, so one still holding it then is surely killed inside it. One that
    finished in between is let go on (SIGCONT) and the look repeats.
    """
    while run.is_alive():
        for ledger in _ledgers(ray):
            for pid in set(_holders(ray, ledger)):
                if _is_our_process(pid) and _stop_and_kill_if_still_holding(ray, ledger, pid):
                    return pid
        time.sleep(0.01)
    return None


def _ledgers(ray) -> list:
    """The retry ledgers of the runs now going on in this session (named actors, see `LEDGER_NAME_PREFIX`)."""
    from flux2_int8.scale_out.pool import LEDGER_NAME_PREFIX

    ledgers = []
    for name in ray.util.list_named_actors():
        if name.startswith(LEDGER_NAME_PREFIX):
            try:
                ledgers.append(ray.get_actor(name))
            except ValueError:  # closed between the listing and the lookup
                continue
    return ledgers


def _holders(ray, ledger) -> list[int]:
    try:
        return list(ray.get(ledger.in_flight.remote(), timeout=30).values())
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):  # closed meanwhile, or too busy to say
        return []


def _stop_and_kill_if_still_holding(ray, ledger, pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:  # its pool ended between the look and the stop
        return False
    try:
        if pid in _holders(ray, ledger):
            os.kill(pid, signal.SIGKILL)
            return True
        return False
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # harmless after SIGKILL; lets an idle one go on


def _is_our_process(pid: int) -> bool:
    """A process this test session started (a Ray worker): the only kind it may signal."""
    return any(process.pid == pid for process in psutil.Process(os.getpid()).children(recursive=True))


def test_a_pool_larger_than_the_cluster_is_refused_before_anything_starts(ray_session, tmp_path, tiny_base, int8_candidate, suite_file):
    out = tmp_path / "eval"
    start = time.monotonic()
    code, _, stderr = run_cli(*_eval_args(tiny_base, int8_candidate, suite_file, out, "--ray", "local", "--workers", "2", "--gpus-per-worker", "1"))
    assert code == 2
    assert "needs 2 GPUs" in stderr and "has 0" in stderr
    assert time.monotonic() - start < 10 and not out.exists()
