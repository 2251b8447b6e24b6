"""One validation of a training configuration, for every surface that accepts one.

The CLI (``train``, ``jobs submit``), the job store and the Train page all call
:func:`check_config` (or :func:`validate_config`, which raises): field types and ranges
(:meth:`TrainConfig.problems <fer_core.runs.trainconfig.TrainConfig.problems>`, notation widths
included), then what needs the outside world: the data source lies in a folder the app may
read, ``init_from`` and ``teacher`` name models that exist, and the backend is installed. Errors come keyed by field, so a form can
show each one under its widget.
"""

from __future__ import annotations

import importlib.util

from fer_core.config import CLASS_NAMES
from fer_core.data.loading import check_allowed, data_identity, parse_merge, resolve_source
from fer_core.errors import ConfigError, FerError
from fer_core.inference.loader import resolve_model
from fer_core.runs.trainconfig import TrainConfig, config_error


def check_config(raw: dict | TrainConfig, trusted: bool = False) -> tuple[TrainConfig | None, dict[str, str]]:
    """Check a config (or a dict of raw values, strings from a form are fine).

    ``trusted``: the data path was typed by the machine's own user (the command line), who can
    read it anyway; the allowed-folder rule (:func:`fer_core.data.loading.check_allowed`) is for what a
    browser sends to the web server.

    Returns:
        ``(config, {})`` when everything is valid, else ``(None, {field: what is wrong})``;
        unknown keys come under ``"unknown"``.
    """
    cfg, problems = TrainConfig.check(raw.to_dict() if isinstance(raw, TrainConfig) else dict(raw))
    values = cfg.to_dict() if cfg else raw.to_dict() if isinstance(raw, TrainConfig) else dict(raw)
    if "data" not in problems:
        try:  # typed at the command line: any readable data set; sent by a browser: only allowed folders
            (resolve_source if trusted else check_allowed)(values.get("data", TrainConfig.data))
        except FerError as exc:
            problems["data"] = str(exc)
    merge = str(values.get("merge") or "").strip()
    if merge and "merge" not in problems:
        try:  # class names are known for FER2013 and the demo set (the same seven); other sets are checked on load
            parse_merge(merge, CLASS_NAMES if data_identity(str(values.get("data") or "demo")) in ("FER2013", "demo")
                        or str(values.get("data") or "").startswith("demo") else None)
        except FerError as exc:
            problems["merge"] = str(exc)
    for key in ("init_from", "teacher"):  # models that must exist
        spec = str(values.get(key) or "").strip()
        if spec and key not in problems:
            try:
                resolve_model(spec)
            except FerError as exc:
                problems[key] = str(exc)
    backend = str(values.get("backend") or "")
    if backend and "backend" not in problems and importlib.util.find_spec(backend) is None:
        problems["backend"] = (f"{backend} is not installed here; install it (JAX: pip install -r "
                               "requirements-optional.txt) or leave the backend empty for the environment's")
    return (None, problems) if problems else (cfg, {})


def config_notes(cfg: TrainConfig) -> dict[str, str]:
    """What a valid configuration does that its user may not expect, keyed by field (shown beside
    the field; nothing is refused)."""
    notes = {}
    if cfg.aug_warmup_epochs > cfg.epochs:
        notes["epochs"] = (f"The augmentation ramps up over {cfg.aug_warmup_epochs} epochs, longer than these "
                           f"{cfg.epochs}: it never reaches full strength. Set aug_warmup_epochs to at most the epochs "
                           "(0: full strength from the start) if that is not what you want.")
    return notes


def validate_config(cfg: dict | TrainConfig, trusted: bool = False) -> TrainConfig:
    """:func:`check_config`, raising one ConfigError that names every bad field."""
    good, problems = check_config(cfg, trusted)
    if problems:
        raise config_error(problems)
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
