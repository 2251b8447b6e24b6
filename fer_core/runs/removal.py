"""Removing a run: only what FER Studio wrote there, never a file someone put beside it."""

from __future__ import annotations

import os
import re
from pathlib import Path

from fer_core import files
from fer_core.errors import ConfigError
from fer_core.runs import rundir

#: What training writes inside a run's folders, by folder (relative paths): TensorBoard's event
#: files per split, and cached evaluations (one ``.npz`` per model file, split and TTA).
OWN_INSIDE = {rundir.TENSORBOARD: re.compile(r"^(train|validation)/events\.out\.tfevents\.[^/]+$"),
               rundir.EVAL_CACHE: re.compile(r"^[0-9a-f]{16,64}\.npz$")}


def remove_run(run_dir: str | os.PathLike) -> list[str]:
    """Remove what training wrote in a run directory, and the directory when nothing else is left.

    Only the run's own files are removed (:func:`~fer_core.runs.rundir.is_own_file`; inside ``tensorboard/`` and
    ``eval/``, only the files we write there): a file the user put beside them is never
    deleted, and neither is a folder that is not a run. Returns the paths kept, relative to the
    run directory (empty: the directory is gone).

    Raises:
        ConfigError: ``run_dir`` is not a run directory (neither config.json nor, for a job that
            never started, run.json), or is a symbolic link.
    """
    run_dir = Path(run_dir)
    if run_dir.is_symlink() or not (rundir.is_run(run_dir) or (run_dir / rundir.INFO).is_file()):
        raise ConfigError(f"{run_dir}: not a run directory (no {rundir.CONFIG} or {rundir.INFO}), so nothing in it is removed.")
    kept = []
    for p in sorted(run_dir.iterdir()):
        if not rundir.is_own_file(p.name):
            kept.append(p.name)
        elif p.name in OWN_INSIDE and p.is_dir() and not p.is_symlink():
            rule = OWN_INSIDE[p.name]
            kept += [f"{p.name}/{rel}" for rel in files.remove_files(
                p, lambda rel, rule=rule: bool(rule.match(rel)) or files.is_temp_name(rel))]
        elif p.is_dir() and not p.is_symlink():
            kept.append(p.name)  # one of our names, but a folder we never make: not ours to empty
        else:
            p.unlink(missing_ok=True)
    if not kept:
        run_dir.rmdir()
    return kept
