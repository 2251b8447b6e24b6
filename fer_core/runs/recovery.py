"""A run's commit record checked before it is resumed: training is never thrown away.

:func:`restore` is the one way into a run that is resumed (``train --resume``, a job's worker):
a ``state.json`` that is missing while the run holds a history, or unreadable, is rebuilt from
what is intact (a gap-free ``metrics.jsonl`` and the matching ``last-eK.keras``) or refused; a
history with a repeated or missing epoch is refused, naming it. A refusal changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from fer_core import files
from fer_core.errors import ConfigError
from fer_core.runs import rundir


def history_problem(rows: list[dict], epoch: int) -> str | None:
    """What is wrong with a history of ``epoch`` epochs (None when it is epochs 1..epoch, once each)."""
    seen = [r.get("epoch") if isinstance(r, dict) else None for r in rows]
    for i, e in enumerate(seen, 1):
        if e != i:
            if e in seen[:i - 1]:
                return f"its history repeats epoch {e} (epochs {seen})"
            return f"its history is missing epoch {i} (epochs {seen})"
    if len(seen) != epoch:
        return f"its history holds {len(seen)} epochs but its commit record says {epoch}"
    return None


def rebuilt_state(run_dir: Path) -> rundir.State | None:
    """The commit record rebuilt from what is intact when ``state.json`` is gone or unreadable: a
    gap-free ``metrics.jsonl`` of K epochs and the checkpoint ``last-eK.keras`` (with the newest
    ``best-eNNNN.keras`` up to K). None when they do not agree."""
    rows = rundir.read_jsonl(run_dir / rundir.METRICS)
    k = len(rows)
    if not k or history_problem(rows, k) or not (run_dir / f"last-e{k:04d}.keras").is_file():
        return None
    bests = sorted((int(m.group(2)), p.name) for p in run_dir.iterdir()
                   if (m := rundir.CHECKPOINT_NAME.match(p.name)) and m.group(1) == "best" and int(m.group(2)) <= k)
    return rundir.State(k, f"last-e{k:04d}.keras", bests[-1][1] if bests else "", rows)


def training_files(run_dir: Path) -> list[str]:
    """The checkpoints and the history a run directory holds (for messages)."""
    found = [p.name for p in run_dir.iterdir() if rundir.CHECKPOINT_NAME.match(p.name) or p.name in (rundir.LEGACY_LAST, rundir.LEGACY_BEST)]
    return sorted(found + ([rundir.METRICS] if rundir.read_jsonl(run_dir / rundir.METRICS) else []))


def restore(run_dir: str | os.PathLike) -> rundir.State:
    """Make a run directory consistent with its commit record before resuming; return the record.

    Training is never thrown away: a ``state.json`` that is missing or unreadable while the run
    holds checkpoints or a history is rebuilt from them (see :func:`rebuilt_state`) or refused, and a
    history with a repeated or missing epoch is refused, naming it.

    Raises:
        ConfigError: the record cannot be trusted or rebuilt; nothing was changed.
    """
    run_dir = Path(run_dir)
    raw = files.read_json(run_dir / rundir.STATE)
    readable = isinstance(raw, dict) and isinstance(raw.get("epoch"), int)
    if not readable and ((run_dir / rundir.STATE).exists() or rundir.lost_record(run_dir)):
        state = rebuilt_state(run_dir)
        if state is None:
            raise ConfigError(f"{run_dir}: its commit record ({rundir.STATE}) is missing or unreadable and its history and "
                              f"checkpoints do not agree ({', '.join(training_files(run_dir)) or 'none'}); "
                              "nothing was changed. Restore state.json from a backup, or train a new run.")
        files.write_json(run_dir / rundir.STATE, {"epoch": state.epoch, "last": state.last, "best": state.best,
                                           "metrics": state.metrics})
    state = rundir.read_state(run_dir)
    legacy = isinstance(raw, dict) and "metrics" not in raw  # its history lived in metrics.jsonl, written second
    problem = history_problem(state.metrics, len(state.metrics) if legacy else state.epoch)
    if problem:
        raise ConfigError(f"{run_dir}: {problem}; nothing was changed. Restore state.json from a backup, or train "
                          "a new run.")
    if state.last and not (run_dir / state.last).exists():
        raise ConfigError(f"{run_dir}: the checkpoint {state.last} of epoch {state.epoch} is missing; "
                          "start the run again.")
    rundir.tidy(run_dir, state)
    rundir.write_metrics_file(run_dir, state.metrics)
    return state
