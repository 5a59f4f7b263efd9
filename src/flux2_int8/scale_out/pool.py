"""The one fan-out every command uses: items through a pool of model-holding actors on Ray Data.

`FanOut.map` streams item indices through `Dataset.map_batches` with an actor pool
(`ActorPoolStrategy`): each actor builds its worker once (loads the model), then
turns items into results. Ray Data does the scheduling, the back-pressure and the
fault tolerance (an actor whose process dies is restarted and its batch retried,
by default without limit); we add only what a user of our commands needs on top:

- a ledger actor that counts how often each item was started, so a run can say how
  many were retried (an item started twice was retried once), and knows which worker
  process holds each item until it is made (`in_flight`: what a lost worker was doing);
- a check that every item came back exactly once;
- one progress bar for the whole run, instead of Ray Data's bar per operator.

Results travel pickled in a binary column: they are our own dataclasses, made by our
own workers (no user file is ever unpickled).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from tqdm.auto import tqdm

from ..errors import Flux2Int8Error
from .cluster import Cluster, ScaleOutError, import_ray

Item = TypeVar("Item")
Result = TypeVar("Result")
# Built once per actor (loads the model): then called on each item of its batches.
WorkerFactory = Callable[[], Callable[[Item], Result]]
# Each run's ledger is a named actor (a unique name under this prefix), so whoever drives
# Ray in the process (a test killing workers, say) can ask it what is in flight.
LEDGER_NAME_PREFIX = "flux2-int8-ledger-"


class WorkerError(Flux2Int8Error):
    """A user mistake a worker met (a bad checkpoint, say), carried back as its one-line message.

    Our other errors do not all survive pickling (their constructors take several
    arguments), so a worker sends this plain one instead.
    """


class FanOut(Generic[Item, Result]):
    """One progress bar and one retry ledger over the successive `map`s of a run."""

    def __init__(self, cluster: Cluster, total: int, description: str, unit: str, progress: bool = True):
        self.cluster = cluster
        self.unit = unit
        self.ray = import_ray()
        self.ledger = _ledger_class(self.ray).options(name=f"{LEDGER_NAME_PREFIX}{uuid.uuid4().hex}").remote()
        self.bar = tqdm(total=total, desc=description, unit=unit, disable=not progress, dynamic_ncols=True)

    @property
    def retried(self) -> int:
        """Items started more than once so far (a worker died, or its node was lost, while on them)."""
        return int(self.ray.get(self.ledger.retried.remote()))

    def map(self, label: str, items: Sequence[Item], factory: WorkerFactory, sizes: Sequence[int] | None = None) -> list[Result]:
        """Every item's result, in item order; each item is counted once on the bar (or `sizes[i]` units).

        `factory` and `items` are shipped to each actor once (cloudpickle); only the
        indices stream through the dataset, one per batch, so a lost worker costs one item.
        """
        if not items:
            return []
        ray = self.ray
        dataset = ray.data.from_items([{"index": i} for i in range(len(items))], override_num_blocks=len(items))
        dataset = dataset.map_batches(
            _actor_class(factory, items, self.ledger, label, self.cluster.cpus_per_worker),
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(self.cluster.workers, len(items))),
            num_gpus=self.cluster.gpus_per_worker or None,
            num_cpus=self.cluster.cpus_per_worker,
        )
        results: dict[int, Result] = {}
        self.bar.set_postfix_str(label)
        with _ray_data_quiet(ray), _worker_errors():
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                for index, payload in zip(batch["index"].tolist(), batch["result"].tolist(), strict=True):
                    if index in results:
                        raise ScaleOutError(f"{label}: item {index} came back twice; Ray Data broke its exactly-once promise")
                    results[index] = pickle.loads(payload)
                    self.bar.update(sizes[index] if sizes else 1)
                retried = self.retried
                self.bar.set_postfix_str(f"{label}, {retried} retried" if retried else label)
        missing = [i for i in range(len(items)) if i not in results]
        if missing:
            raise ScaleOutError(f"{label}: {len(missing)} item(s) never came back (first: {missing[0]})")
        return [results[i] for i in range(len(items))]

    def close(self) -> None:
        """Close the bar, saying how many items were retried (on stderr: stdout may be a --json document)."""
        retried = self.retried
        if retried:
            self.bar.write(f"{retried} work item(s) retried after a worker was lost; each came back exactly once", file=sys.stderr)
        self.bar.close()
        self.ray.kill(self.ledger)


@contextmanager
def fan_out(cluster: Cluster, total: int, description: str, unit: str = "image", progress: bool = True) -> Iterator[FanOut]:
    pool: FanOut = FanOut(cluster, total, description, unit, progress)
    try:
        yield pool
    finally:
        pool.close()


def _actor_class(factory: WorkerFactory, items: Sequence[Any], ledger: Any, label: str, cpus: float) -> type:
    """The callable class Ray Data makes its actors from; a closure, so no constructor arguments.

    (Constructor arguments would live in the object store, and an actor restarted after
    they were freed could not be rebuilt.) torch gets one thread per CPU the actor holds,
    whatever the node has, so actors on one node do not oversubscribe it.
    """

    class Worker:
        def __init__(self) -> None:
            import torch

            torch.set_num_threads(max(1, int(cpus)))
            self.process = _portable_errors(factory)

        def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
            import numpy as np
            import ray

            indices = [int(i) for i in batch["index"]]
            payloads = []
            for index in indices:
                ray.get(ledger.started.remote(label, index, os.getpid()))
                payloads.append(pickle.dumps(_portable_errors(self.process, items[index])))
                # Awaited: an item the ledger still holds is surely not made yet.
                ray.get(ledger.made.remote(label, index))
            return {"index": np.array(indices, dtype=np.int64), "result": np.array(payloads, dtype=object)}

    Worker.__name__ = Worker.__qualname__ = f"Worker[{label}]"
    return Worker


def _portable_errors(function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except Flux2Int8Error as error:
        raise WorkerError(str(error)) from None


def _ledger_class(ray: Any) -> Any:
    @ray.remote(num_cpus=0, max_restarts=0)
    class Ledger:
        """How many times each (label, item) was started, and which process holds it until it is made."""

        def __init__(self) -> None:
            self.starts: dict[tuple[str, int], int] = {}
            self.holders: dict[tuple[str, int], int] = {}

        def started(self, label: str, index: int, pid: int) -> int:
            key = (label, index)
            self.starts[key] = self.starts.get(key, 0) + 1
            self.holders[key] = pid
            return self.starts[key]

        def made(self, label: str, index: int) -> None:
            self.holders.pop((label, index), None)

        def in_flight(self) -> dict[tuple[str, int], int]:
            """Items started and not yet made, with the process id of the worker on each."""
            return dict(self.holders)

        def retried(self) -> int:
            return sum(count - 1 for count in self.starts.values())

    return Ledger


@contextmanager
def _ray_data_quiet(ray: Any) -> Iterator[None]:
    """No Ray Data bars or INFO lines while ours runs (restored after)."""
    context = ray.data.DataContext.get_current()
    logger = logging.getLogger("ray.data")
    saved = (context.enable_progress_bars, context.print_on_execution_start, logger.level)
    context.enable_progress_bars, context.print_on_execution_start = False, False
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        context.enable_progress_bars, context.print_on_execution_start = saved[:2]
        logger.setLevel(saved[2])


@contextmanager
def _worker_errors() -> Iterator[None]:
    """A user mistake raised in a worker surfaces as its own line, not as a Ray traceback."""
    try:
        yield
    except Exception as error:
        message = _worker_message(error)
        if message is None:
            raise
        raise WorkerError(message) from None


def _worker_message(error: BaseException) -> str | None:
    """The message of the `WorkerError` somewhere in Ray's chain of wrappers, if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = getattr(current, "cause", None)  # RayTaskError keeps the worker's exception here
        if isinstance(cause, WorkerError):
            return str(cause)
        if type(current) is WorkerError:
            return str(current)
        # An actor that failed to start (its model did not load) comes back as text only.
        found = re.findall(rf"{re.escape(WorkerError.__module__)}\.WorkerError: (.+)", str(current))
        if found:
            return found[-1].strip()
        current = current.__cause__ or current.__context__
    return None
