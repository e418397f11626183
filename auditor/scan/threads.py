"""The streaming bridge of threaded listings: workers produce records, the caller yields them.

A scanner's `drive(emit, stop)` runs in a thread of its own (typically handing work to a pool);
`stream` yields what it emits as it arrives. The stream always ends: when `drive` returns (every
record queued first), when it raises (the records already queued are yielded, then the error is
raised to the consumer), or when the consumer stops early (`stop` is set, so `emit` stops
blocking and `drive` winds down). No wait is unbounded: the queue is polled, never blocked on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

Emit = Callable[[T], None]
# How often a blocked producer or the consumer looks at `stop` / `finished` (seconds).
POLL = 0.1


def stream(
    drive: Callable[[Callable[[T], None], threading.Event], None],
    *,
    capacity: int,
    name: str,
    close: Callable[[], None] | None = None,
) -> Iterator[T]:
    """Run `drive(emit, stop)` in a thread and yield every item it emits, as it arrives.

    `capacity` bounds the items waiting (memory does not grow with the estate); `close` runs once
    the driver thread has ended (closing clients and sessions).
    """
    items: queue.Queue[T] = queue.Queue(maxsize=capacity)
    stop = threading.Event()
    finished = threading.Event()
    failures: list[BaseException] = []

    def emit(item: T) -> None:
        while not stop.is_set():
            try:
                items.put(item, timeout=POLL)
                return
            except queue.Full:
                continue

    def run() -> None:
        try:
            drive(emit, stop)
        except BaseException as exc:  # a bug or an interrupt: surfaced to the consumer
            failures.append(exc)
        finally:
            finished.set()

    driver = threading.Thread(target=run, name=name, daemon=True)
    driver.start()
    try:
        while True:
            try:
                item = items.get(timeout=POLL)
            except queue.Empty:
                # Every item is queued before `finished` is set, so empty-after-finished is the end.
                if finished.is_set() and items.empty():
                    break
                continue
            yield item
        if failures:
            raise failures[0]
    finally:
        stop.set()
        driver.join()
        if close is not None:
            close()
