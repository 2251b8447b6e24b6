"""The typed training configuration, saved as ``config.json`` in every run directory."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from fer_core.config import IMAGE_SIZE
from fer_core.errors import ConfigError, FerError
from fer_core.models import notation
from fer_core.models.build import get_spec, is_notation, model_names, registered

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "plateau", "inverse-time")
CLASS_WEIGHTS = ("none", "balanced")
#: Keras backends a run can train under ("": the environment's, ``KERAS_BACKEND``, recorded when the run starts).
BACKENDS = ("", "tensorflow", "jax", "torch")
#: Keras' own default backend, when KERAS_BACKEND is not set.
DEFAULT_BACKEND = "tensorflow"
#: The most epochs a run may plan.
MAX_EPOCHS = 10_000


def config_error(problems: dict[str, str]) -> ConfigError:
    """The one error for a configuration's problems, keyed by field as :meth:`TrainConfig.parse`
    and :func:`fer_core.training.validation.check_world` find them (and as its ``fields`` carries
    them): every bad field named in one message (unknown options alone when that is all that is wrong)."""
    if set(problems) == {"unknown"}:
        return ConfigError(problems["unknown"], fields=problems)
    return ConfigError("Invalid training configuration: " + "; ".join(f"{k}: {v}" for k, v in problems.items()) + ".",
                       fields=problems)


@dataclass
class TrainConfig:
    """Everything needed to rebuild and retrain a model exactly.

    Architecture: a registered name or layer notation (with ``conv_widths``, ``dense_widths``,
    ``dropout``, ``padding`` for notation; ``dropout`` also sets the rate of a preset that takes
    one, ``fer-vgg``). ``crop`` is the face crop the network sees: training
    uses random crops of that size, evaluation the centre crop (inside the model). ``width``: the
    first-stage filters of a preset that takes one (``fer-vgg``, ``resnet18``); 0 keeps its own.
    Augmentation strengths: ``rotation`` in degrees, ``translate`` and ``zoom`` as fractions of
    the image, ``erase`` the probability of random erasing.
    ``init_from`` (a ``.keras`` file, run directory or run name; empty: random initialisation)
    starts the network from a trained model's weights, for fine-tuning or a second schedule
    (a warm restart); the architecture must be the same.
    ``aug_warmup_epochs``: a curriculum for the augmentation: its strengths (rotation, zoom,
    translation with the random-crop shift, and the erasing probability) grow linearly from zero
    over these first epochs (flips are on from the start), so the network first learns from clean
    faces; 0 applies full strength from the first epoch (a ramp longer than the run never does).
    ``teacher`` (a model as ``init_from`` names one, ``default`` for the shipped one; empty: none)
    turns the run into knowledge distillation (see :mod:`fer_core.training.distill`): the loss
    mixes the hard labels (weight ``1 - soft_weight``) with the teacher's answers on the same
    augmented batch, softened by ``temperature``.
    ``recalibrate_bn``: when training finishes, re-estimate the selected checkpoint's batch-norm
    statistics on the clean Training faces (see ``calibrate``); kept only if validation accuracy
    does not drop.
    ``backend``: the Keras backend the run trains under (``tensorflow``, ``jax``, ``torch``); empty
    takes the environment's (``KERAS_BACKEND``, else TensorFlow), and the run records which.
    Schedules: ``step`` multiplies by ``step_gamma`` every ``step_epochs``; ``cosine`` decays to
    zero over ``epochs`` after ``warmup_epochs``; ``plateau`` halves (``plateau_factor``) when
    validation accuracy stalls; ``inverse-time`` is Keras 2's old ``decay`` argument,
    ``lr / (1 + lr_decay * iteration)``, which the original study's "decay" meant.

    Every value is checked when a config is made (``TrainConfig(...)``, ``dataclasses.replace``):
    a TrainConfig is valid, so what receives one does not check it again. Raw values (a form's
    strings, ``config.json``) go through :meth:`parse`; what needs the outside world (data set,
    models, backend) is :func:`fer_core.training.validation.check_world`'s.
    """

    data: str = "demo"
    merge: str = ""
    arch: str = "tiny"
    conv_widths: list[int] = field(default_factory=lambda: list(notation.CONV_WIDTHS))
    dense_widths: list[int] = field(default_factory=lambda: list(notation.DENSE_WIDTHS))
    dropout: float = notation.DROPOUT
    padding: str = notation.PADDING
    crop: int = IMAGE_SIZE
    width: int = 0
    optimizer: str = "adam"
    learning_rate: float = 0.001
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    lr_decay: float = 0.0
    warmup_epochs: int = 0
    step_epochs: int = 10
    step_gamma: float = 0.1
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    epochs: int = 10
    batch_size: int = 64
    label_smoothing: float = 0.0
    class_weight: str = "none"
    flip: bool = False
    rotation: float = 0.0
    translate: float = 0.0
    zoom: float = 0.0
    erase: float = 0.0
    aug_warmup_epochs: int = 0
    seed: int = 0
    init_from: str = ""
    recalibrate_bn: bool = True
    teacher: str = ""
    temperature: float = 4.0
    soft_weight: float = 0.9
    backend: str = ""

    def __post_init__(self):
        problems = _value_problems(self)
        if problems:
            raise config_error(problems)

    def arch_options(self) -> dict:
        """The builder options this config gives its architecture (the layer fields for notation)."""
        if is_notation(self.arch):
            return {"conv_widths": self.conv_widths, "dense_widths": self.dense_widths, "dropout": self.dropout,
                    "padding": self.padding}
        opts = {"width": self.width} if self.width else {}
        if get_spec(self.arch).takes("dropout"):
            opts["dropout"] = self.dropout
        return opts

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def parse(cls, raw: dict) -> "TrainConfig":
        """A config from a dict of raw values (strings from a form are fine), as ``config.json`` holds it.

        Raises:
            ConfigError: unknown keys, wrong types or invalid values; its ``fields`` names every bad
                field (unknown keys under ``"unknown"``).
        """
        if not isinstance(raw, dict):
            raise ConfigError(f"A training configuration is a set of named options, not {type(raw).__name__}.")
        known = {f.name for f in fields(cls)}
        problems: dict[str, str] = {}
        unknown = sorted(set(raw) - known)
        if unknown:
            problems["unknown"] = f"Unknown training option(s): {', '.join(unknown)}."
        defaults = cls()
        values = {}
        for key, value in raw.items():
            if key not in known:
                continue
            default = getattr(defaults, key)
            try:
                if isinstance(default, bool):
                    values[key] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
                elif isinstance(default, list):
                    items = value.replace(",", " ").split() if isinstance(value, str) else value
                    values[key] = [int(v) for v in items]
                elif isinstance(default, int) and isinstance(value, float) and not value.is_integer():
                    raise ValueError
                else:
                    values[key] = type(default)(value)
            except (TypeError, ValueError):
                problems[key] = f"{value!r} is not a valid {type(default).__name__}"
        try:
            cfg = cls(**values)
        except ConfigError as exc:
            problems.update({k: v for k, v in exc.fields.items() if k not in problems})
        if problems:
            raise config_error(problems)
        return cfg

    @classmethod
    def for_model(cls, arch: str, **overrides) -> "TrainConfig":
        """A config with the training settings the architecture's source used, then ``overrides``.

        Raises:
            ConfigError: an invalid value, or (a programming error) a preset whose training
                settings name a field the config does not have.
        """
        base = {} if is_notation(arch) else dict(get_spec(arch).train_defaults)
        unknown = set(base) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"Preset {arch!r} sets unknown training option(s): {', '.join(sorted(unknown))}.")
        return cls.parse({**base, "arch": arch, **overrides})

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        try:
            return cls.parse(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read the training configuration ({exc}).") from None


def _value_problems(cfg: TrainConfig) -> dict[str, str]:
    """Every field's value checked: ``{field: what is wrong}`` (empty when all are valid)."""
    errors: dict[str, str] = {}

    def need(ok: bool, name: str, why: str):
        if not ok and name not in errors:
            errors[name] = f"{why} (got {getattr(cfg, name)!r})"

    need(bool(str(cfg.arch).strip()), "arch", "give a registered model name or a layer notation")
    need(cfg.optimizer in OPTIMIZERS, "optimizer", f"one of {', '.join(OPTIMIZERS)}")
    need(cfg.schedule in SCHEDULES, "schedule", f"one of {', '.join(SCHEDULES)}")
    need(cfg.class_weight in CLASS_WEIGHTS, "class_weight", f"one of {', '.join(CLASS_WEIGHTS)}")
    need(cfg.padding in ("valid", "same"), "padding", "'valid' or 'same'")
    need(0 < cfg.learning_rate <= 10, "learning_rate", "a number in (0, 10]")
    need(0 <= cfg.momentum < 1, "momentum", "a number in [0, 1)")
    need(0 <= cfg.weight_decay < 1, "weight_decay", "a number in [0, 1)")
    need(isinstance(cfg.epochs, int) and 1 <= cfg.epochs <= MAX_EPOCHS, "epochs", f"an integer from 1 to {MAX_EPOCHS}")
    # the random generators (NumPy's, TensorFlow's) take 32-bit seeds; -1 or 2**70 crashed the trainer
    need(isinstance(cfg.seed, int) and not isinstance(cfg.seed, bool) and 0 <= cfg.seed < 2 ** 32, "seed",
         f"an integer from 0 to {2 ** 32 - 1}")
    need(isinstance(cfg.batch_size, int) and 1 <= cfg.batch_size <= 8192, "batch_size", "an integer from 1 to 8192")
    need(0 <= cfg.warmup_epochs < max(cfg.epochs, 1), "warmup_epochs", "fewer than the epochs")
    need(isinstance(cfg.aug_warmup_epochs, int) and 0 <= cfg.aug_warmup_epochs <= 10_000,
         "aug_warmup_epochs", "an integer from 0 to 10000")
    need(cfg.lr_decay >= 0, "lr_decay", "a number >= 0")
    need(cfg.schedule != "inverse-time" or not cfg.warmup_epochs, "warmup_epochs",
         "0 with the inverse-time schedule, which starts at the full rate")
    need(cfg.step_epochs >= 1, "step_epochs", "at least 1")
    need(0 < cfg.step_gamma <= 1, "step_gamma", "a number in (0, 1]")
    need(cfg.plateau_patience >= 1, "plateau_patience", "at least 1")
    need(0 < cfg.plateau_factor < 1, "plateau_factor", "a number in (0, 1)")
    need(0 <= cfg.dropout < 1, "dropout", "a number in [0, 1)")
    need(0 <= cfg.label_smoothing < 1, "label_smoothing", "a number in [0, 1)")
    need(8 <= cfg.crop <= IMAGE_SIZE, "crop", f"an integer from 8 to {IMAGE_SIZE}")
    need(isinstance(cfg.width, int) and 0 <= cfg.width <= 1024, "width", "an integer from 0 (the preset's own) to 1024")
    need(0 <= cfg.rotation <= 180, "rotation", "degrees in [0, 180]")
    need(0 <= cfg.translate < 0.5, "translate", "a fraction in [0, 0.5)")
    need(0 <= cfg.zoom < 1, "zoom", "a fraction in [0, 1)")
    need(0 <= cfg.erase <= 1, "erase", "a probability in [0, 1]")
    need(0 < cfg.temperature <= 100, "temperature", "a number in (0, 100]")
    need(0 <= cfg.soft_weight <= 1, "soft_weight", "a weight in [0, 1]")
    need(cfg.backend in BACKENDS, "backend", f"one of {', '.join(b for b in BACKENDS if b)}, or empty for the "
                                              "environment's")
    need(not (str(cfg.teacher).strip() and cfg.class_weight != "none"), "class_weight",
         "'none' when distilling: the teacher's answers already weigh the classes")
    need(all(int(w) > 0 for w in cfg.conv_widths), "conv_widths", "positive integers")
    need(all(int(w) > 0 for w in cfg.dense_widths), "dense_widths", "positive integers")
    if "arch" not in errors:
        try:
            # what looks like notation (capitals and dashes) gets notation's pointed message
            looks_notation = is_notation(cfg.arch) or (not registered(cfg.arch) and cfg.arch == cfg.arch.upper())
            spec = None if looks_notation else get_spec(cfg.arch)
            if spec is None:
                notation.parse_notation(cfg.arch)
        except FerError as exc:
            errors["arch"] = str(exc)
        else:
            if spec is None and not errors.keys() & {"conv_widths", "dense_widths", "padding", "crop"}:
                try:  # widths that do not match the blocks, or an image shrunk to nothing
                    notation.count_notation_params(cfg.arch, cfg.conv_widths, cfg.dense_widths,
                                                   padding=cfg.padding, size=cfg.crop)
                except ConfigError as exc:
                    errors[exc.field or "arch"] = str(exc)
            if cfg.width and not (spec and spec.takes("width")):
                errors.setdefault("width", f"{cfg.arch} has no width option; set 0, or pick a preset that "
                                           f"has one ({', '.join(model_names(taking='width'))})")
    return errors
