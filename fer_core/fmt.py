"""How durations and fractions are written for people (CLI tables, pages)."""

from __future__ import annotations


def fmt_seconds(value) -> str:
    """``h:mm:ss`` for a duration in seconds (elapsed, ETA), ``-`` when unknown."""
    if value is None:
        return "-"
    value = int(value)
    return f"{value // 3600}:{value // 60 % 60:02d}:{value % 60:02d}"


def fmt_duration(value) -> str:
    """A duration as people say it: ``0.4 s`` and ``42 s`` under a minute (never ``0:00:00`` for a
    short one), else ``h:mm:ss``; ``-`` when unknown."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.1f} s"
    if value < 60:
        return f"{value:.0f} s"
    return fmt_seconds(value)
