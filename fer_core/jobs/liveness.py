"""How long a training worker may stay silent before its job is given up: the one place that says.

A worker beats every :data:`HEARTBEAT_SECONDS`. One silent for :func:`stale_seconds` is hung,
stopped or asleep; but before its first batch it is starting (Python, TensorFlow and the data set
load first: minutes on a saturated machine, where an import can hold its heartbeat thread back),
so while its process lives its silence counts only after :func:`start_seconds`.
"""

from __future__ import annotations

from fer_core.config import env_float, setting

HEARTBEAT_SECONDS = 2.0
#: No heartbeat for this long: the worker is gone, hung or asleep (``FER_STALE_SECONDS`` changes it).
STALE_SECONDS = setting("FER_STALE_SECONDS").default


def stale_seconds() -> float:
    """How long a worker may stay silent before it loses its job (at least 3 heartbeats)."""
    return max(env_float("FER_STALE_SECONDS"), 3 * HEARTBEAT_SECONDS)


#: A worker that has not reported its first batch yet is starting: Python, TensorFlow and the data
#: set load first, which takes minutes on a saturated machine and can starve its heartbeat thread
#: (an import holds the interpreter). While its process lives it is slow, not hung: its silence
#: counts only after this long (``FER_START_SECONDS``; never less than the stale limit).
START_SECONDS = setting("FER_START_SECONDS").default


def start_seconds() -> float:
    """How long a live worker may take to start before its silence counts (see START_SECONDS)."""
    return max(env_float("FER_START_SECONDS"), stale_seconds())
