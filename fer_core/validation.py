"""One validation of a training configuration, for every surface that accepts one.

The CLI (``train``, ``jobs submit``), the job store and the Train page all call
:func:`check_config` (or :func:`validate_config`, which raises): field types and ranges
(:meth:`TrainConfig.problems <fer_core.trainconfig.TrainConfig.problems>`, notation widths
included), then what needs the outside world: the data source lies in a folder the app may
read, and ``init_from`` names a model that exists. Errors come keyed by field, so a form can
show each one under its widget.
"""

from __future__ import annotations

from .data import check_allowed
from .errors import ConfigError, FerError
from .infer import resolve_model
from .trainconfig import TrainConfig


def check_config(raw: dict | TrainConfig) -> tuple[TrainConfig | None, dict[str, str]]:
    """Check a config (or a dict of raw values, strings from a form are fine).

    Returns:
        ``(config, {})`` when everything is valid, else ``(None, {field: what is wrong})``;
        unknown keys come under ``"unknown"``.
    """
    cfg, problems = TrainConfig.check(raw.to_dict() if isinstance(raw, TrainConfig) else dict(raw))
    values = cfg.to_dict() if cfg else raw.to_dict() if isinstance(raw, TrainConfig) else dict(raw)
    if "data" not in problems:
        try:
            check_allowed(values.get("data", TrainConfig.data))
        except FerError as exc:
            problems["data"] = str(exc)
    init_from = str(values.get("init_from") or "").strip()
    if init_from and "init_from" not in problems:
        try:
            resolve_model(init_from)
        except FerError as exc:
            problems["init_from"] = str(exc)
    return (None, problems) if problems else (cfg, {})


def validate_config(cfg: dict | TrainConfig) -> TrainConfig:
    """:func:`check_config`, raising one ConfigError that names every bad field."""
    good, problems = check_config(cfg)
    if problems:
        if set(problems) == {"unknown"}:
            raise ConfigError(problems["unknown"])
        raise ConfigError("Invalid training configuration: " + "; ".join(f"{k}: {v}" for k, v in problems.items()) + ".")
    return good


#: A tag: letters, digits and ``- _ . : +``, at most this long (it is shown in tables and legends).
MAX_TAG = 40
_TAG_CHARS = set("-_.:+")


def clean_tags(tags: str | list[str] | tuple[str, ...]) -> list[str]:
    """Tags as a list without blanks or repeats, from a list or a comma-separated string.

    Raises:
        ConfigError: a tag is too long or holds other characters (field ``tags``).
    """
    items = tags.split(",") if isinstance(tags, str) else [t for tag in tags for t in str(tag).split(",")]
    out: list[str] = []
    for tag in (t.strip() for t in items):
        if not tag or tag in out:
            continue
        if len(tag) > MAX_TAG or not all(ch.isalnum() or ch in _TAG_CHARS for ch in tag):
            raise ConfigError(f"tag {tag[:60]!r}: use at most {MAX_TAG} letters, digits and - _ . : + (no spaces); "
                              "separate tags with commas.", field="tags")
        out.append(tag)
    return out
