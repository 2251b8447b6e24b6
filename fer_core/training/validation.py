"""A training configuration checked against the world, once, where it enters.

Checking a configuration is two steps, each done once at the boundary where raw input enters
(the Train page's form, the command line, a job sweep's grid): :meth:`TrainConfig.parse
<fer_core.runs.trainconfig.TrainConfig.parse>` turns the raw values into a typed config (field
types and ranges, notation widths included), then :func:`check_world` checks what needs the
outside world: the data source lies in a folder the app may read, ``init_from`` and ``teacher``
name models that exist, and the backend is installed. Both raise one ConfigError whose ``fields``
are keyed by field, so a form can show each one under its widget. What lies behind the boundary
(the job store, the trainer) takes the typed config and checks nothing again.
"""

from __future__ import annotations

import importlib.util

from fer_core.config import CLASS_NAMES
from fer_core.data.loading import check_allowed, data_identity, parse_merge, resolve_source
from fer_core.errors import ConfigError, FerError
from fer_core.inference.loader import resolve_model
from fer_core.runs.trainconfig import TrainConfig, config_error


def check_world(cfg: TrainConfig, trusted: bool = False) -> TrainConfig:
    """``cfg``, once its data set, merge, models and backend are found usable here.

    ``trusted``: the data path was typed by the machine's own user (the command line), who can
    read it anyway; the allowed-folder rule (:func:`fer_core.data.loading.check_allowed`) is for what a
    browser sends to the web server.

    Raises:
        ConfigError: every field that fails, in its ``fields``.
    """
    problems: dict[str, str] = {}
    try:  # typed at the command line: any readable data set; sent by a browser: only allowed folders
        (resolve_source if trusted else check_allowed)(cfg.data)
    except FerError as exc:
        problems["data"] = str(exc)
    merge = cfg.merge.strip()
    if merge:
        try:  # class names are known for FER2013 and the demo set (the same seven); other sets are checked on load
            parse_merge(merge, CLASS_NAMES if data_identity(cfg.data or "demo") in ("FER2013", "demo")
                        or cfg.data.startswith("demo") else None)
        except FerError as exc:
            problems["merge"] = str(exc)
    for key in ("init_from", "teacher"):  # models that must exist
        spec = getattr(cfg, key).strip()
        if spec:
            try:
                resolve_model(spec)
            except FerError as exc:
                problems[key] = str(exc)
    if cfg.backend and importlib.util.find_spec(cfg.backend) is None:
        problems["backend"] = (f"{cfg.backend} is not installed here; install it (JAX: pip install -r "
                               "requirements-optional.txt) or leave the backend empty for the environment's")
    if problems:
        raise config_error(problems)
    return cfg


def config_notes(cfg: TrainConfig) -> dict[str, str]:
    """What a valid configuration does that its user may not expect, keyed by field (shown beside
    the field; nothing is refused)."""
    notes = {}
    if cfg.aug_warmup_epochs > cfg.epochs:
        notes["epochs"] = (f"The augmentation ramps up over {cfg.aug_warmup_epochs} epochs, longer than these "
                           f"{cfg.epochs}: it never reaches full strength. Set aug_warmup_epochs to at most the epochs "
                           "(0: full strength from the start) if that is not what you want.")
    return notes


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
