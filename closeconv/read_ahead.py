"""Iterate over a generator while a worker thread produces its next items.

The landing readers spend their time in pyarrow (reading and splitting lines), which releases the
GIL: a worker thread can read the next blocks of a file while DuckDB validates the ones before.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def read_ahead(items: Iterator[T], depth: int) -> Iterator[T]:
    """The items of `items`, in order, produced by a worker thread at most `depth` items ahead.

    An exception raised by `items` is raised here, where the consumer would have met it. A
    consumer that stops early (closes this generator) stops the worker at its next item."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((_DONE, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="closeconv-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        worker.join()
