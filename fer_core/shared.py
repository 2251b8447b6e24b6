"""What the sessions of one server share: pools of objects that are not thread-safe, and a gate
that caps how many analyses run at once.

One Streamlit server runs every browser session on a thread of its own, and caches detectors and
models once per process. OpenCV's DNN networks (YuNet) and cascades keep state between calls
(YuNet's input size), so two threads in one of them mix their images up or crash the process:
each detector is therefore a :class:`Pool` of instances, one borrowed per call. And two cores
cannot do thirty analyses at once any faster than one after another: :func:`analysis_gate` lets
``FER_MAX_ANALYSES`` (default: the machine's cores) run and queues the rest in arrival order, so
each waiting session can be told how many are ahead of it.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import threading
import time
from collections import OrderedDict, deque
from contextlib import contextmanager
from functools import cache
from typing import Callable, Generic, Iterator, TypeVar

from fer_core.config import env_number

T = TypeVar("T")


class Pool(Generic[T]):
    """Up to ``size`` instances made by ``factory``, each used by one thread at a time.

    :meth:`borrow` hands out an idle instance, makes a new one while fewer than ``size`` exist,
    or waits for one to come back.
    """

    def __init__(self, factory: Callable[[], T], size: int, first: T | None = None):
        self.factory, self.size = factory, max(1, size)
        self.idle: list[T] = [] if first is None else [first]  # ``first``: one made already
        self.made = len(self.idle)
        self.cond = threading.Condition()

    @contextmanager
    def borrow(self) -> Iterator[T]:
        with self.cond:
            while not self.idle and self.made >= self.size:
                self.cond.wait()
            item = self.idle.pop() if self.idle else None
            if item is None:
                self.made += 1
        if item is None:
            try:
                item = self.factory()
            except BaseException:
                with self.cond:
                    self.made -= 1
                    self.cond.notify()
                raise
        try:
            yield item
        finally:
            with self.cond:
                self.idle.append(item)
                self.cond.notify()


class Gate:
    """At most ``capacity`` holders at once; the others wait in arrival order (first come, first
    served), and :meth:`slot` tells a waiting caller how many are ahead of it."""

    def __init__(self, capacity: int):
        self.capacity = max(1, capacity)
        self.running = 0
        self.queue: deque = deque()
        self.cond = threading.Condition()

    def ahead(self, ticket) -> int:
        """Analyses running or queued before ``ticket``."""
        return self.running + self.queue.index(ticket)

    @contextmanager
    def slot(self, on_wait: Callable[[int], None] | None = None, poll: float = 0.5) -> Iterator[None]:
        """Hold one place while the block runs. While waiting, ``on_wait(n)`` is called with the
        number of analyses ahead whenever it changes (and once at first)."""
        ticket = object()
        with self.cond:
            self.queue.append(ticket)
            told = None
            try:
                while self.queue[0] is not ticket or self.running >= self.capacity:
                    n = self.ahead(ticket)
                    if on_wait is not None and n != told:
                        told = n
                        self.cond.release()  # a UI callback must never run under the lock
                        try:
                            on_wait(n)
                        finally:
                            self.cond.acquire()
                        continue
                    self.cond.wait(poll)
            except BaseException:
                self.queue.remove(ticket)
                self.cond.notify_all()
                raise
            self.queue.popleft()
            self.running += 1
            self.cond.notify_all()  # the next in line may move up
        try:
            yield
        finally:
            with self.cond:
                self.running -= 1
                self.cond.notify_all()


def max_analyses() -> int:
    """How many analyses one server runs at once: ``FER_MAX_ANALYSES``, else the machine's cores."""
    return env_number("FER_MAX_ANALYSES", os.cpu_count() or 1)


def release_memory() -> None:
    """Hand the memory freed by a finished analysis back to the system (glibc keeps freed heap
    pages of large photos and frames for reuse, so a server's resident size stayed at its peak
    after the sessions that caused it had gone). A no-op where there is no glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@cache
def analysis_gate() -> Gate:
    """The one gate every analysis of this process goes through (photos, videos, evaluations)."""
    return Gate(max_analyses())


class ResultCache:
    """Results of heavy analyses, kept a while for any session that asks again: at most
    ``entries`` of them, ``max_bytes`` in all (pickled) and ``ttl`` seconds each, least recently
    used dropped first. It is the one record of what is cached, so a caller knows exactly when a
    result is there (a hit skips the analysis gate; a result dropped is computed again through
    it), and every caller gets its own copy (no session changes another's result)."""

    def __init__(self, entries: int, max_bytes: int, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.entries, self.max_bytes, self.ttl, self.clock = entries, max_bytes, ttl, clock
        self.items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.size = 0
        self.lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, object]:
        """``(True, a copy of the result)``, or ``(False, None)`` when it is not (or no longer) kept."""
        with self.lock:
            found = self.items.get(key)
            if found is not None and self.clock() - found[0] > self.ttl:
                self._drop(key)
                found = None
            if found is None:
                return False, None
            self.items.move_to_end(key)
        return True, pickle.loads(found[1])

    def put(self, key: str, value: object) -> None:
        """Keep ``value`` (one larger than the whole budget is not kept)."""
        blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        with self.lock:
            if key in self.items:
                self._drop(key)
            if len(blob) > self.max_bytes:
                return
            self.items[key] = (self.clock(), blob)
            self.size += len(blob)
            while len(self.items) > self.entries or self.size > self.max_bytes:
                self._drop(next(iter(self.items)))

    def _drop(self, key: str) -> None:
        self.size -= len(self.items.pop(key)[1])


def result_cache_mb() -> int:
    """Megabytes of analysis results one server keeps (``FER_RESULT_CACHE_MB``, default 256)."""
    return env_number("FER_RESULT_CACHE_MB")


@cache
def result_cache() -> ResultCache:
    """The one cache of analysis results of this process (photos, evaluations, maps, faces, exports)."""
    return ResultCache(entries=128, max_bytes=result_cache_mb() * 1024 * 1024, ttl=1800.0)
