"""What a caller follows or steers a training run with: :class:`TrainHooks`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class TrainHooks:
    """The optional hooks of a run (None: not called).

    ``on_epoch(epoch, total, metrics)``: after every committed epoch. ``should_stop()``: polled
    after every batch; True stops the run cleanly (the cut-short epoch is not saved).
    ``on_batch(epoch_index, step, steps)``: after every training batch. ``before_commit(epoch)``:
    just before an epoch is written; a job's worker checks there that it still holds its lease
    (raising stops the run unwritten). ``log(line)``: one line per saved or stopped epoch.
    """

    on_epoch: Callable[[int, int, dict], None] | None = None
    should_stop: Callable[[], bool] | None = None
    on_batch: Callable[[int, int, int], None] | None = None
    before_commit: Callable[[int], None] | None = None
    log: Callable[[str], None] | None = None
