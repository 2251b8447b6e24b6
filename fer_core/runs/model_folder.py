"""A released model's folder: what it holds beside a run's ``model.keras``, ``config.json`` and
``classes.json`` (written by ``release``, read by the model loader, the Runs page and the card):
``metrics.json`` (its measurements), ``MODEL_CARD.md`` and ``history/`` (per-epoch histories)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fer_core import files

MODEL_METRICS = "metrics.json"  # a released model's measurements
HISTORY = "history"  # a released model's per-epoch histories, one JSON-lines file per training run
MODEL_CARD = "MODEL_CARD.md"


def write_history(folder: str | os.PathLike, name: str, rows: list[dict]) -> Path:
    """A released model's per-epoch history of one training run, ``history/<name>.jsonl``."""
    path = Path(folder) / HISTORY / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    return files.write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def replace_histories(folder: str | os.PathLike, histories: dict[str, list[dict]]) -> None:
    """Ship exactly ``histories`` (``{run name: rows}``) with a released model: each is written, and
    any other history there (an earlier release's) is removed, so the curves shown are this model's."""
    for name, rows in histories.items():
        write_history(folder, name, rows)
    for path in (Path(folder) / HISTORY).glob("*.jsonl"):
        if path.stem not in histories:
            path.unlink()


def read_histories(folder: str | os.PathLike) -> dict[str, list[dict]]:
    """``{run name: per-epoch rows}`` shipped with a released model ({} when none)."""
    out = {}
    for path in sorted((Path(folder) / HISTORY).glob("*.jsonl")):
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a damaged line is skipped, the rest is shown
        out[path.stem] = rows
    return out


def read_model_metrics(folder: str | os.PathLike) -> dict:
    """A released model's ``metrics.json`` ({} when absent)."""
    value = files.read_json(Path(folder) / MODEL_METRICS, {})
    return value if isinstance(value, dict) else {}
