"""Paths, constants, the environment's settings and the app's persisted settings.

The data directory (``data/`` next to the code unless ``FER_DATA_DIR`` says otherwise)
holds the user's data sets, runs (unless ``FER_RUNS_DIR`` puts them elsewhere), caches and the
job store.

Every ``FER_*`` environment variable (and ``FER2013_DIR``) is listed once in :data:`SETTINGS`,
with its default and meaning (README's table of settings is checked against it), and read only
here, through :func:`env_number`, :func:`env_float`, :func:`env_flag` and :func:`env_text` or the
folder functions. One rule for a value that does not fit: a setting that is unset, empty or not a
value of its kind gives its default, and so does a number that is not above zero (0 only where the
setting says 0 means something): a typo never turns a limit off. A whole number is written in
digits only ("1_000", "+5", "2.0" are not whole numbers); a number may have a fraction and must be
finite. Limits that depend on the domain (at most 24 quiz hours) are the reader's.
"""

from __future__ import annotations

import json
import math
import os
import re
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


@dataclass(frozen=True)
class Setting:
    """One environment setting.

    Attributes:
        name: the environment variable.
        default: the value when it is unset or does not fit; None when there is none or the
            reader works it out (the machine's cores, one job per GPU): ``shown`` says which.
        meaning: what it changes.
        kind: ``whole`` (number), ``number`` (with a fraction), ``flag``, ``text``, ``path`` or
            ``paths`` (separated by ``os.pathsep``).
        shown: the default as README's table writes it, where that is not just the number.
        zero: whether 0 is a value (it turns something off) rather than a typo.
    """

    name: str
    default: int | float | bool | None
    meaning: str
    kind: str = "whole"
    shown: str = ""
    zero: bool = False

    @property
    def shown_default(self) -> str:
        """The default as README's table writes it: ``shown``, else the number (``3,000``)."""
        if self.shown:
            return self.shown
        return f"{self.default:,g}" if isinstance(self.default, float) else f"{self.default:,}"


_ON_SERVER = "on the web server, none on the command line"

#: Every setting, once: the folders and the server's, then the limits that keep a class of thirty on
#: two cores working. README's two tables of settings list the same (tests/test_architecture.py).
SETTINGS: tuple[Setting, ...] = (
    # folders and the server
    Setting("FER_DATA_DIR", None, "the folder of the user's data: data sets, runs, caches, the job and quiz stores, "
            "the settings", "path", "`data/` next to the code"),
    Setting("FER_RUNS_DIR", None, "where training runs are written (on a Ray cluster, the one folder that must be "
            "shared storage)", "path", "`data/runs`"),
    Setting("FER2013_DIR", None, "FER2013 (a folder or a CSV file): the app's data set until another is chosen, "
            "the command line's default `--data`, a folder the web server reads", "path", "none"),
    Setting("FER_DATA_ROOTS", None, "more folders the web server may read data sets from", "paths", "none"),
    Setting("FER_READ_ONLY", False, "a read-only server: it shows and analyses, and changes nothing on disk",
            "flag", "off"),
    Setting("FER_RAY_ADDRESS", None, "the Ray cluster jobs go to (its dashboard, `http://HOST:8265`); wins over "
            "the app's setting", "text", "the app's setting"),
    Setting("FER_RAY_GPUS_PER_JOB", 1.0, "GPUs one job asks a Ray cluster for (0: CPUs even where it has GPUs)",
            "number", zero=True),
    Setting("FER_RAY_CPUS_PER_JOB", 1.0, "CPUs one job asks a Ray cluster without GPUs for", "number"),
    # limits
    Setting("FER_MAX_ANALYSES", None, "photo, video and evaluation analyses that run at once", shown="the machine's cores"),
    Setting("FER_MAX_QUEUED", 20, "jobs waiting or running, in all", shown=f"20 {_ON_SERVER}"),
    Setting("FER_MAX_EPOCHS", 500, "epochs of one job", shown=f"500 {_ON_SERVER}"),
    Setting("FER_MAX_JOBS_PER_SESSION", 10, "jobs waiting or running that one browser session submitted",
            shown="10 on the web server"),
    Setting("FER_MAX_VIDEO_SECONDS", 600.0, "seconds of one video that are analysed", "number", "600 s"),
    Setting("FER_MAX_VIDEO_FRAMES", 3000, "frames of one video that are analysed", shown="3,000 frames"),
    Setting("FER_MAX_PHOTOS", 20, "photos of one upload"),
    Setting("FER_MAX_PHOTO_MB", 100, "megabytes of the photos of one upload, in all", shown="100 MB"),
    Setting("FER_MAX_VIDEO_PIXELS", 3840 * 2160, "pixels of one video frame (a decoded 8192x8192 frame alone takes "
            "200 MB, and a 16 MB MJPEG file can hold forty of them)", shown="8,294,400 (4K UHD)"),
    Setting("FER_RESULT_CACHE_MB", 256, "megabytes of analysis results one server keeps"),
    Setting("FER_MAX_JOBS", None, "jobs that train at once on this machine", shown="1 on a CPU, one per GPU"),
    Setting("FER_STALE_SECONDS", 30.0, "silence after which a training worker is given up (at least 3 heartbeats)",
            "number", "30 s"),
    Setting("FER_START_SECONDS", 900.0, "silence after which a starting worker (no batch yet) is given up "
            "(at least the stale limit)", "number", "900 s"),
    Setting("FER_ENGINE_POOL", None, "LiteRT interpreters per model", shown="the machine's cores"),
    Setting("FER_QUIZ_OPEN_ROUNDS", 5, "quiz rounds open at once"),
    Setting("FER_QUIZ_SESSIONS", 200, "browser sessions answering one round"),
    Setting("FER_QUIZ_MAX_FACES", 100, "faces in one round"),
    Setting("FER_QUIZ_HOURS", 3, "hours a round stays open unless closed (at most 24)", shown="3 h"),
    Setting("FER_QUIZ_MAX_ANSWERS", 100_000, "answers the quiz store holds in all"),
)
_BY_NAME = {s.name: s for s in SETTINGS}
_REGISTERED = object()  # a reader's default: the one in SETTINGS


def setting(name: str) -> Setting:
    """The registered setting ``name`` (KeyError for a name that is not in :data:`SETTINGS`)."""
    return _BY_NAME[name]


def _raw(name: str, *kinds: str) -> str:
    if setting(name).kind not in kinds:
        raise TypeError(f"{name} is a {setting(name).kind} setting, not {' or '.join(kinds)}")
    return os.environ.get(name, "").strip()


def _fits(name: str, number: float) -> bool:
    return math.isfinite(number) and (number > 0 or (number == 0 and setting(name).zero))


def env_number(name: str, default=_REGISTERED) -> int | None:
    """A whole-number setting: its value, else ``default`` (the registered one unless given)."""
    fallback = setting(name).default if default is _REGISTERED else default
    value = _raw(name, "whole")
    return int(value) if re.fullmatch(r"[0-9]+", value) and _fits(name, int(value)) else fallback


def env_float(name: str, default=_REGISTERED) -> float | None:
    """A number setting (it may have a fraction): its value, else ``default`` (the registered one)."""
    fallback = setting(name).default if default is _REGISTERED else default
    try:
        number = float(_raw(name, "number"))
    except ValueError:
        return fallback
    return number if _fits(name, number) else fallback


def env_flag(name: str) -> bool:
    """An on/off setting: on for ``1``, ``true``, ``yes`` or ``on`` (any case), else off."""
    return _raw(name, "flag").lower() in ("1", "true", "yes", "on")


def env_text(name: str) -> str:
    """A text or path setting, without surrounding blanks; '' when unset."""
    return _raw(name, "text", "path", "paths")


READ_ONLY_VAR = "FER_READ_ONLY"


def read_only() -> bool:
    """True on a read-only server (``FER_READ_ONLY=1``): it shows data, runs and results and
    analyses photos in memory, but changes nothing on disk (no jobs, settings, uploads or cache
    files). A full server or the command line over the same data folder does the writing."""
    return env_flag(READ_ONLY_VAR)


def check_writable(what: str) -> None:
    """Raises ConfigError on a read-only server, saying that ``what`` is not offered here."""
    if read_only():
        raise ConfigError(f"{what} is not possible here: this server is read-only ({READ_ONLY_VAR}=1). "
                          "Ask the lecturer, who runs the full server or the command line.")


def data_dir(create: bool = True) -> Path:
    """Return the folder for user data (created on first use unless ``create`` is False, or on a
    read-only server)."""
    path = Path(env_text("FER_DATA_DIR") or PROJECT_ROOT / "data")
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
    path = Path(env_text("FER_RUNS_DIR") or data_dir() / "runs")
    if not read_only():
        path.mkdir(parents=True, exist_ok=True)
    return path


def fer2013_dir() -> str:
    """FER2013's path from ``FER2013_DIR`` (a folder or a CSV file, as given), '' when unset."""
    return env_text("FER2013_DIR")


def allowed_roots() -> list[Path]:
    """Folders the app may read data sets from: ``data/datasets``, ``FER2013_DIR`` and the
    folders listed in ``FER_DATA_ROOTS`` (separated by ``os.pathsep``)."""
    roots = [datasets_dir()]
    for value in [fer2013_dir(), *env_text("FER_DATA_ROOTS").split(os.pathsep)]:
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
        return env_text("FER_RAY_ADDRESS") or self.ray_address.strip()

    def active_source(self) -> str:
        """Return the data source to use: the saved one, else ``FER2013_DIR``, else the demo."""
        if self.data_source:
            return self.data_source
        env = fer2013_dir()
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
