"""A server under load, a client that leaves, and SIGTERM: every request answered, nothing lost, a clean exit.

One server for the module (no key, on loopback), serving nano's transformer quantized
to INT8 W8A8 (the package's own path: calibrated static scales): a queue of 2, batches
of 2. The SIGTERM test stops it, so it comes last.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_helpers import start_server

openai = pytest.importorskip("openai")

PROMPT = "three red circles on a black background"
SLOW = {"size": "256x256", "extra_body": {"num_inference_steps": 12}}  # about a second per call on a CPU core


@pytest.fixture(scope="module")
def int8_nano(tmp_path_factory):
    from flux2_int8 import quantize

    return quantize("nano", tmp_path_factory.mktemp("int8") / "nano-int8.safetensors", samples=2, resolution=128, device="cpu", progress=False).path


@pytest.fixture(scope="module")
def server(tmp_path_factory, int8_nano):
    running = start_server(tmp_path_factory.mktemp("overload"), "--transformer", str(int8_nano), "--max-queue", "2", "--max-batch", "2", "--batch-wait-ms", "10", "--request-timeout", "120", "--max-pixels", str(256 * 256))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(api_key="unused", base_url=f"{server.url}/v1", max_retries=0, timeout=120)


def metric(server, name: str) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as response:
        text = response.read().decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{")]
    return sum(values)


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def slow_request(client, seed: int, outcome: dict, steps: int = 12) -> threading.Thread:
    def go():
        try:
            outcome["result"] = client.images.generate(prompt=PROMPT, size=SLOW["size"], extra_body={"num_inference_steps": steps, "seed": seed})
        except openai.APIStatusError as error:
            outcome["status"] = error.status_code
    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_the_int8_transformer_is_served(client, int8_nano):
    entry = client.models.list().data[0].model_dump()
    assert entry["id"] == f"nano:{int8_nano.stem}"
    assert (entry["transformer"], entry["activations"]) == ("int8", ["static"])
    result = client.images.generate(prompt=PROMPT, model=entry["id"], extra_body={"seed": 1})
    assert result.data[0].model_extra["seed"] == 1


def test_twelve_clients_on_a_queue_of_two_get_200_or_429(server, client):
    def one(seed):
        try:
            result = client.images.generate(prompt=PROMPT, size=SLOW["size"], extra_body={**SLOW["extra_body"], "seed": seed})
            return 200, result.data[0].model_extra["seed"], None
        except openai.RateLimitError as error:
            return 429, seed, error.response.headers.get("retry-after")

    before = metric(server, "flux2_int8_serve_rejections_total")
    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(one, range(12), timeout=180))
    statuses = [status for status, _, _ in outcomes]
    assert set(statuses) <= {200, 429} and 200 in statuses and 429 in statuses, statuses
    assert all(seed == index for index, (status, seed, _) in enumerate(outcomes) if status == 200)
    assert all(retry is not None and int(retry) >= 1 for status, _, retry in outcomes if status == 429)
    assert metric(server, "flux2_int8_serve_rejections_total") - before == statuses.count(429)
    with urllib.request.urlopen(f"{server.url}/health", timeout=10) as health, urllib.request.urlopen(f"{server.url}/ready", timeout=10) as ready:
        assert health.status == ready.status == 200
    assert metric(server, "flux2_int8_serve_queue_depth") == 0


def test_a_client_that_leaves_frees_its_queued_work(server, client):
    busy: dict = {}
    thread = slow_request(client, 100, busy)
    wait_for(lambda: metric(server, "flux2_int8_serve_running_images") == 1)
    images_before = metric(server, "flux2_int8_serve_images_total")
    body = json.dumps({"prompt": PROMPT, "seed": 7, "size": "128x128"}).encode()
    leaving = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    leaving.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    wait_for(lambda: metric(server, "flux2_int8_serve_queue_depth") == 1)
    leaving.close()
    wait_for(lambda: metric(server, "flux2_int8_serve_queue_depth") == 0)
    thread.join(120)
    assert "result" in busy
    assert metric(server, 'flux2_int8_serve_rejections_total{reason="disconnected"}') >= 1
    time.sleep(0.5)
    assert metric(server, "flux2_int8_serve_images_total") - images_before <= 1  # the slow request's image only


def test_sigterm_finishes_the_running_503s_the_queued_and_exits_cleanly(server, client):
    running: dict = {}
    queued: dict = {}
    first = slow_request(client, 200, running)
    wait_for(lambda: metric(server, "flux2_int8_serve_running_images") == 1)
    second = slow_request(client, 300, queued, steps=11)  # another key: it cannot join the running batch
    wait_for(lambda: metric(server, "flux2_int8_serve_queue_depth") == 1)
    server.process.send_signal(signal.SIGTERM)
    first.join(120)
    second.join(120)
    assert "result" in running, running
    assert queued.get("status") == 503, queued
    assert server.process.wait(timeout=60) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5)

