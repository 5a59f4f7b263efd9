"""Dynamic batching: requests that can share a pipeline call are grouped, the rest wait their turn.

One asyncio task forms batches; one worker thread runs them (the model is one, so
calls run one at a time). A batch is the oldest waiting piece plus every later piece
with the same key (size, steps, guidance, LoRAs, task, references) up to
`max_batch` images, after waiting at most `batch_wait_ms` from the oldest's arrival
for more to come. Batching changes nothing but speed: each image keeps its own seed
(see `generate.generate_images`).

A request's images travel as pieces of at most `max_batch`. The queue is bounded
(`max_queue` requests waiting: more is 429); a cancelled request (its client left,
or its time ran out) takes its queued pieces out of the queue; `stop` answers every
waiting request 503 and lets the running batch finish.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError

log = logging.getLogger("flux2_int8.serve")


@dataclass(eq=False)
class Piece:
    """Up to `max_batch` images of one request: what a batch is made of."""

    key: Hashable
    items: list[Any]
    request: int
    arrived: float
    future: asyncio.Future = field(repr=False)


@dataclass(frozen=True)
class BatchStats:
    """What one batch was, for the metrics: its images, the seconds it ran, each piece's wait."""

    images: int
    seconds: float
    waits: tuple[float, ...]


RunBatch = Callable[[Hashable, list[Any]], list[Any]]


class Batcher:
    """The queue and the batch loop; `submit` from request handlers, `start`/`stop` from the app's life cycle."""

    def __init__(self, run_batch: RunBatch, max_batch: int, batch_wait_ms: float, max_queue: int, on_batch: Callable[[BatchStats], None] | None = None):
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.wait_s = batch_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.queue: list[Piece] = []
        self.stopping = False
        self.running = 0  # images in the batch now running
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flux2-int8-model")
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._next_request = 0
        self._recent_seconds = 1.0

    @property
    def waiting_requests(self) -> int:
        return len({piece.request for piece in self.queue})

    async def in_worker(self, function: Callable[[], Any]) -> Any:
        """Run `function` on the model's thread (start-up work such as the warm-up image)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="flux2-int8-batcher")

    async def submit(self, key: Hashable, items: Sequence[Any], timeout: float) -> list[Any]:
        """The results of `items`, in order, once made; 429 when the queue is full, 503 when stopping or past `timeout`."""
        if self.stopping:
            raise ApiError(503, "the server is shutting down; retry on another replica or later", code="shutting_down")
        if self.waiting_requests >= self.max_queue:
            raise ApiError(429, f"the queue is full ({self.max_queue} requests waiting); retry later", code="queue_full", retry_after=self.retry_after())
        loop = asyncio.get_running_loop()
        request, self._next_request = self._next_request, self._next_request + 1
        pieces = [Piece(key, list(items[i:i + self.max_batch]), request, loop.time(), loop.create_future()) for i in range(0, len(items), self.max_batch)]
        self.queue.extend(pieces)
        self._poke()
        try:
            async with asyncio.timeout(timeout):
                parts = await asyncio.gather(*(piece.future for piece in pieces))
        except TimeoutError:
            raise ApiError(503, f"the request waited past the server's --request-timeout of {timeout:g} s; retry later", code="timeout") from None
        finally:
            self._drop(pieces)  # no-op for pieces taken; a cancelled or timed-out request's queued work goes
        return [result for part in parts for result in part]

    def retry_after(self) -> int:
        """Seconds until the queue has likely moved on: the batches ahead of a new request, at the recent batch time."""
        batches = math.ceil((sum(len(piece.items) for piece in self.queue) + self.running) / self.max_batch)
        return max(1, math.ceil(batches * self._recent_seconds))

    async def stop(self) -> None:
        """Answer every waiting request 503 and wait for the running batch to finish."""
        self.stopping = True
        for piece in self.queue:
            if not piece.future.done():
                piece.future.set_exception(ApiError(503, "the server is shutting down; this request was not started, retry later", code="shutting_down"))
        self.queue.clear()
        self._poke()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    def _drop(self, pieces: list[Piece]) -> None:
        for piece in pieces:
            if piece in self.queue:
                self.queue.remove(piece)
            if not piece.future.done():
                piece.future.cancel()
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while not self.stopping:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            first = self.queue[0]
            while self._images_like(first) < self.max_batch and first in self.queue and not self.stopping:
                left = first.arrived + self.wait_s - loop.time()
                if left <= 0:
                    break
                self._wake.clear()
                try:
                    async with asyncio.timeout(left):
                        await self._wake.wait()
                except TimeoutError:
                    break
            if first not in self.queue or self.stopping:
                continue
            await self._run(self._take(first), loop)

    def _images_like(self, first: Piece) -> int:
        return sum(len(piece.items) for piece in self.queue if piece.key == first.key)

    def _take(self, first: Piece) -> list[Piece]:
        taken, images = [], 0
        for piece in list(self.queue):
            if piece.key == first.key and images + len(piece.items) <= self.max_batch:
                taken.append(piece)
                images += len(piece.items)
                self.queue.remove(piece)
        return taken

    async def _run(self, batch: list[Piece], loop: asyncio.AbstractEventLoop) -> None:
        items = [item for piece in batch for item in piece.items]
        started = loop.time()
        self.running = len(items)
        try:
            results = await loop.run_in_executor(self._executor, self.run_batch, batch[0].key, items)
        except ApiError as error:
            results, failure = None, error
        except Exception as error:  # a fault of ours or of the model: logged with its traceback, answered without one
            log.exception("a batch of %d image(s) failed", len(items))
            results, failure = None, ApiError(500, f"generation failed ({type(error).__name__}); the server log has the details", code="generation_failed")
        finally:
            self.running = 0
        seconds = loop.time() - started
        self._recent_seconds = seconds
        offset = 0
        for piece in batch:
            if piece.future.done():  # its client left, or its time ran out, while it ran
                offset += len(piece.items)
                continue
            if results is None:
                piece.future.set_exception(failure)
            else:
                piece.future.set_result(results[offset:offset + len(piece.items)])
            offset += len(piece.items)
        if self.on_batch is not None:
            self.on_batch(BatchStats(len(items), seconds, tuple(started - piece.arrived for piece in batch)))
