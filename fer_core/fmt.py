"""How durations and fractions are written for people (CLI tables, pages)."""

from __future__ import annotations


def fmt_seconds(value) -> str:
    """``h:mm:ss`` for a duration in seconds (elapsed, ETA), ``-`` when unknown."""
    if value is None:
        return "-"
    value = int(value)
    return f"{value // 3600}:{value // 60 % 60:02d}:{value % 60:02d}"
