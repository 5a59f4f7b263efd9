"""The batcher alone, with a stand-in model: grouping, the bounded queue, cancellation, timeouts, stopping."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from flux2_int8.serve.batcher import Batcher
from flux2_int8.serve.errors import ApiError


class Model:
    """Records each batch (key, items); `gate` holds a batch until released."""

    def __init__(self, seconds: float = 0.0):
        self.batches: list[tuple[str, list[int]]] = []
        self.seconds = seconds
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def __call__(self, key, items):
        self.started.set()
        self.gate.wait(10)
        time.sleep(self.seconds)
        self.batches.append((key, list(items)))
        return [item * 10 for item in items]


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def test_requests_with_the_same_key_share_a_call_up_to_max_batch():
    model = Model()

    async def scenario():
        batcher = Batcher(model, max_batch=4, batch_wait_ms=200, max_queue=16)
        batcher.start()
        results = await asyncio.gather(
            batcher.submit("a", [1], 10), batcher.submit("b", [2], 10), batcher.submit("a", [3, 4], 10),
            batcher.submit("a", [5, 6], 10),
        )
        await batcher.stop()
        return results

    results = run(scenario())
    assert results == [[10], [20], [30, 40], [50, 60]]
    assert model.batches[0] == ("a", [1, 3, 4])  # the next "a" (two images) would pass max_batch 4
    assert sorted(model.batches[1:]) == [("a", [5, 6]), ("b", [2])]


def test_a_request_larger_than_max_batch_is_split_in_order():
    model = Model()

    async def scenario():
        batcher = Batcher(model, max_batch=2, batch_wait_ms=0, max_queue=4)
        batcher.start()
        result = await batcher.submit("k", [1, 2, 3, 4, 5], 10)
        await batcher.stop()
        return result

    assert run(scenario()) == [10, 20, 30, 40, 50]
    assert [items for _, items in model.batches] == [[1, 2], [3, 4], [5]]


def test_a_full_queue_is_429_with_retry_after_and_a_cancelled_request_leaves_the_queue():
    model = Model()
    model.gate.clear()

    async def scenario():
        batcher = Batcher(model, max_batch=1, batch_wait_ms=0, max_queue=2)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit("k", [1], 10))
        while not model.started.is_set():
            await asyncio.sleep(0.01)
        queued = [asyncio.ensure_future(batcher.submit("k", [n], 10)) for n in (2, 3)]
        await asyncio.sleep(0.05)
        with pytest.raises(ApiError) as full:
            await batcher.submit("k", [4], 10)
        assert full.value.status == 429 and full.value.retry_after >= 1
        queued[0].cancel()  # its client left
        await asyncio.sleep(0.05)
        assert batcher.waiting_requests == 1
        model.gate.set()
        done = [await running, await queued[1]]
        await batcher.stop()
        return done

    assert run(scenario()) == [[10], [30]]
    assert [items for _, items in model.batches] == [[1], [3]]  # the cancelled 2 never ran


def test_a_request_past_its_timeout_is_503_and_its_work_dropped():
    model = Model()
    model.gate.clear()

    async def scenario():
        batcher = Batcher(model, max_batch=1, batch_wait_ms=0, max_queue=4)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit("k", [1], 10))
        while not model.started.is_set():
            await asyncio.sleep(0.01)
        with pytest.raises(ApiError) as late:
            await batcher.submit("k", [2], 0.1)
        assert late.value.status == 503 and late.value.code == "timeout"
        assert batcher.waiting_requests == 0
        model.gate.set()
        await running
        await batcher.stop()

    run(scenario())
    assert [items for _, items in model.batches] == [[1]]


def test_stop_answers_the_queued_503_and_finishes_the_running():
    model = Model()
    model.gate.clear()

    async def scenario():
        batcher = Batcher(model, max_batch=1, batch_wait_ms=0, max_queue=4)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit("k", [1], 10))
        while not model.started.is_set():
            await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(batcher.submit("k", [2], 10))
        await asyncio.sleep(0.05)
        stopping = asyncio.ensure_future(batcher.stop())
        with pytest.raises(ApiError) as refused:
            await queued
        assert refused.value.status == 503
        with pytest.raises(ApiError):
            await batcher.submit("k", [3], 10)
        model.gate.set()
        result = await running
        await stopping
        return result

    assert run(scenario()) == [10]


def test_a_failing_batch_answers_each_request_without_a_traceback():
    def broken(key, items):
        raise RuntimeError("boom")

    async def scenario():
        batcher = Batcher(broken, max_batch=2, batch_wait_ms=0, max_queue=4)
        batcher.start()
        with pytest.raises(ApiError) as failed:
            await batcher.submit("k", [1], 10)
        await batcher.stop()
        return failed.value

    error = run(scenario())
    assert error.status == 500 and "RuntimeError" in error.message and "Traceback" not in error.message
