"""The parse step of STOW-RS (``ingest.parse_instance``: reading, checking and indexing each part,
about two thirds of an instance's CPU) in worker processes.

One Python process parses on one core, whatever the machine has. The dev server (``make dev``) is
one process holding the in-memory index, so it hands the parse step of each request's instances
to a pool of processes and stores them itself, in order. A Lambda function does not use this: it
has one vCPU below 1,769 MB, and no ``/dev/shm`` for a process pool's semaphores; Lambda runs
requests side by side instead.

What a worker raises other than ``InvalidInstance`` (a bug) is raised again in the caller.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .ingest import InvalidInstance, Parsed, parse_instance

#: ``parse(items, options)``: each item's ``Parsed`` or its refusal, in order (``store.stow``).
Parser = Callable[[Sequence[bytes], dict[str, Any]], Iterator[Parsed | InvalidInstance]]


def _parse_or_refusal(data: bytes, options: dict[str, Any]) -> Parsed | InvalidInstance:
    try:
        return parse_instance(data, **options)
    except InvalidInstance as exc:
        return exc


def parse_in_order(items: Sequence[bytes], options: dict[str, Any]) -> Iterator[Parsed | InvalidInstance]:
    """In this process, each item when it is asked for (a deadline can stop before the rest)."""
    for data in items:
        yield _parse_or_refusal(data, options)


def _parse_chunk(items: list[bytes], options: dict[str, Any]) -> list[Parsed | InvalidInstance]:
    return [_parse_or_refusal(data, options) for data in items]


def _exit_with(parent: int) -> None:
    """In each worker: end when the server process is gone (killed, or ended by a signal that
    skipped its shutdown), instead of waiting for work forever."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-server", daemon=True).start()


class ParsePool:
    """``workers`` processes (spawned, not forked: the server has threads) parsing a request's
    instances in chunks, one chunk per worker."""

    def __init__(self, workers: int | None = None) -> None:
        import multiprocessing  # here: the store function imports this module, and never a pool
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers or os.cpu_count() or 1
        self._pool = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with,
            initargs=(os.getpid(),),
        )

    def warm(self) -> None:
        """Start every worker and import the parse step in it now, not at the first request."""
        for done in [self._pool.submit(_parse_chunk, [], {}) for _ in range(self.workers)]:
            done.result()

    def parse(self, items: Sequence[bytes], options: dict[str, Any]) -> Iterator[Parsed | InvalidInstance]:
        if len(items) < 2:
            yield from parse_in_order(items, options)
            return
        size = -(-len(items) // self.workers)
        chunks = [list(items[i : i + size]) for i in range(0, len(items), size)]
        for done in [self._pool.submit(_parse_chunk, chunk, options) for chunk in chunks]:
            yield from done.result()

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)
