"""Paths, constants and the app's persisted settings.

The data directory (``data/`` next to the code unless ``FER_DATA_DIR`` says otherwise)
holds the user's data sets, runs (unless ``FER_RUNS_DIR`` puts them elsewhere), caches and the
job store.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from fer_core import files
from fer_core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The shipped default model's folder (written by ``release``, read by the model loader).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "shipping" / "default_model"
#: The shipped fast model's folder: a small model for the views where speed matters.
FAST_MODEL_DIR = Path(__file__).resolve().parent / "shipping" / "fast_model"
#: The names of the shipped models wherever a model is named (``--model default``, ``fast``).
DEFAULT_MODEL, FAST_MODEL = "default", "fast"

#: FER2013's classes in the order of its label numbers 0..6.
CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: FER2013's three splits: training, validation (model selection) and the held-out test.
SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
IMAGE_SIZE = 48

DEMO_SOURCE = "demo"


READ_ONLY_VAR = "FER_READ_ONLY"


def read_only() -> bool:
    """True on a read-only server (``FER_READ_ONLY=1``): it shows data, runs and results and
    analyses photos in memory, but changes nothing on disk (no jobs, settings, uploads or cache
    files). A full server or the command line over the same data folder does the writing."""
    return os.environ.get(READ_ONLY_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def env_number(name: str, default: int, minimum: int = 1) -> int:
    """A whole-number setting from the environment: ``default`` when unset, and when the value is
    not a whole number or is below ``minimum`` (a typo never turns a limit off)."""
    value = os.environ.get(name, "").strip()
    try:
        number = int(value)
    except ValueError:
        return default
    return number if number >= minimum else default


def check_writable(what: str) -> None:
    """Raises ConfigError on a read-only server, saying that ``what`` is not offered here."""
    if read_only():
        raise ConfigError(f"{what} is not possible here: this server is read-only ({READ_ONLY_VAR}=1). "
                          "Ask the lecturer, who runs the full server or the command line.")


def data_dir(create: bool = True) -> Path:
    """Return the folder for user data (created on first use unless ``create`` is False, or on a
    read-only server)."""
    path = Path(os.environ.get("FER_DATA_DIR") or PROJECT_ROOT / "data")
    if create and not read_only():
        path.mkdir(parents=True, exist_ok=True)
    return path


def datasets_dir() -> Path:
    """Return ``data/datasets``, where uploaded and user-copied data sets live."""
    path = data_dir() / "datasets"
    if not read_only():
        path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Return ``data/cache``, where parsed data sets are cached."""
    path = data_dir() / "cache"
    if not read_only():
        path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Return the default parent of training run directories: ``FER_RUNS_DIR`` when set (on a
    cluster, the one folder that must be shared storage), else ``data/runs``."""
    path = Path(os.environ["FER_RUNS_DIR"]) if os.environ.get("FER_RUNS_DIR") else data_dir() / "runs"
    if not read_only():
        path.mkdir(parents=True, exist_ok=True)
    return path


def allowed_roots() -> list[Path]:
    """Folders the app may read data sets from: ``data/datasets``, ``FER2013_DIR`` and the
    folders listed in ``FER_DATA_ROOTS`` (separated by ``os.pathsep``)."""
    roots = [datasets_dir()]
    for value in [os.environ.get("FER2013_DIR", ""), *os.environ.get("FER_DATA_ROOTS", "").split(os.pathsep)]:
        if value.strip():
            roots.append(Path(value.strip()).expanduser())
    return [Path(os.path.abspath(r)) for r in roots]


@dataclass
class Settings:
    """What the app uses when a page is not told otherwise; saved in ``data/settings.json``.

    Attributes:
        data_source: ``"demo"``, a path to a CSV file or an image folder.
        merge: class merging spec such as ``"disgust=angry"``, or ``""`` for none.
        model: path of the active model or run directory, ``""`` for the default one.
        ray_address: the Ray cluster's dashboard address (``http://HOST:8265``) that jobs go
            to, ``""`` for this machine; ``FER_RAY_ADDRESS`` overrides it.
    """

    data_source: str = ""
    merge: str = ""
    model: str = ""
    ray_address: str = ""

    def active_ray_address(self) -> str:
        """The Ray cluster jobs go to: ``FER_RAY_ADDRESS``, else the saved one ('' for none)."""
        return (os.environ.get("FER_RAY_ADDRESS") or self.ray_address).strip()

    def active_source(self) -> str:
        """Return the data source to use: the saved one, else ``FER2013_DIR``, else the demo."""
        if self.data_source:
            return self.data_source
        env = os.environ.get("FER2013_DIR")
        if env and Path(env).is_dir():
            return env
        return DEMO_SOURCE


def settings_path() -> Path:
    return data_dir() / "settings.json"


def load_settings() -> Settings:
    """Load the saved settings; a missing or damaged file gives the defaults."""
    try:
        raw = json.loads(settings_path().read_text())
    except (OSError, ValueError):
        return Settings()
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: str(v) for k, v in raw.items() if k in known} if isinstance(raw, dict) else {})


def save_settings(settings: Settings) -> None:
    """Write the settings atomically, so a crash never leaves half a file (never on a read-only server)."""
    check_writable("Changing the app's settings")
    files.write_json(settings_path(), asdict(settings))
