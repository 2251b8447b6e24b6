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


def write_histories(folder: str | os.PathLike, histories: dict[str, list[dict]]) -> None:
    """Ship ``histories`` (``{run name: rows}``, empty ones left out) with a released model."""
    for name, rows in histories.items():
        if rows:
            write_history(folder, name, rows)


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
