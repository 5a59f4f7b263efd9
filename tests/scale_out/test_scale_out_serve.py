"""`serve --ray`: the app as a Ray Serve deployment of 2 CPU replicas on the session's local Ray.

Both replicas serve (each answers with its own process id), and a replica killed while
requests run is replaced by Ray Serve while the other requests succeed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

PROMPT = "two red circles on a blue background"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def _generate(url: str, seed: int, steps: int = 4) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/v1/images/generations", data=json.dumps({"prompt": PROMPT, "seed": seed, "num_inference_steps": steps}).encode(), method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}
    except (urllib.error.URLError, ConnectionError) as error:
        return -1, {"error": str(error)}


def _pid(url: str) -> int | None:
    """The process id of the replica that answered, or None (while Ray Serve notices a dead replica, a call may fail)."""
    try:
        return _get(f"{url}/v1/models")["data"][0]["process_id"]
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _replica_pids(url: str, calls: int = 16) -> set[int]:
    with ThreadPoolExecutor(8) as pool:
        return {pid for pid in pool.map(lambda _: _pid(url), range(calls)) if pid is not None}


@pytest.fixture(scope="module")
def deployed(ray_session):
    pytest.importorskip("ray.serve")
    pytest.importorskip("fastapi")
    from ray import serve

    from flux2_int8.serve.ray_serve import APP_NAME, deployment
    from flux2_int8.serve.settings import ModelSpec, ServeSettings

    deadline = time.monotonic() + 120  # the CPUs of an earlier test's actor pool, freed as Ray tears it down
    while ray_session.available_resources().get("CPU", 0) < 2:
        assert time.monotonic() < deadline, f"the session's Ray has {ray_session.available_resources().get('CPU', 0)} free CPUs; two replicas need 2"
        time.sleep(1)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(deployment(ModelSpec(device="cpu", threads=1), ServeSettings(max_batch=2, request_timeout=60), replicas=2, gpus=0, cpus=1).bind(), name=APP_NAME, route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def test_two_replicas_serve_the_same_answers(deployed):
    pids = _replica_pids(deployed)
    assert len(pids) == 2, pids
    statuses = [_generate(deployed, seed=9) for _ in range(4)]
    assert all(status == 200 for status, _ in statuses)
    assert len({body["data"][0]["b64_json"] for _, body in statuses}) == 1  # whichever replica made it


def test_a_killed_replica_is_replaced_while_the_others_succeed(deployed):
    before = _replica_pids(deployed)
    victim = min(before)
    with ThreadPoolExecutor(6) as pool:
        running = [pool.submit(_generate, deployed, seed, 12) for seed in range(6)]
        time.sleep(1.0)
        os.kill(victim, signal.SIGKILL)
        outcomes = [future.result(timeout=180) for future in running]
    assert sum(status == 200 for status, _ in outcomes) >= 1, outcomes  # those on the other replica
    deadline = time.monotonic() + 300  # a new replica imports torch and loads nano: slow on a busy machine
    while time.monotonic() < deadline:
        pids = _replica_pids(deployed)
        if len(pids) == 2 and victim not in pids:
            break
        time.sleep(2)
    assert len(pids) == 2 and victim not in pids, (before, pids)
    after = [_generate(deployed, seed) for seed in range(4)]
    assert all(status == 200 for status, _ in after), after
