"""TensorFlow (or Keras on another backend) imported quietly, and the one line that says where
training runs.

On a machine without a GPU, importing TensorFlow prints CUDA probing errors ("failed call to
cuInit") and build notes ("rebuild TensorFlow with the appropriate compiler flags") that read
like failures. The command line and the job workers import it through :func:`quiet_tensorflow`
and print one line instead: ``training on CPU (2 cores)`` or ``training on GPU 0: <name>``.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager

import numpy as np

_QUIET = threading.Lock()
_quiet = {"depth": 0, "saved": None}
_IMPORTING = threading.RLock()
_tensorflow = {"module": None, "ready": False}


@contextmanager
def quiet_stderr():
    """Point file descriptor 2 at /dev/null for the block: native libraries (TensorFlow's C++
    logging, OpenCV's FFmpeg) write there directly, past ``sys.stderr``. Keep blocks short: the
    whole process's stderr is silenced meanwhile. Safe from several threads at once (a server's
    sessions): the first block to enter silences it, the last to leave restores it, whatever the
    order in which they end."""
    with _QUIET:
        if _quiet["depth"] == 0:
            sys.stderr.flush()
            _quiet["saved"] = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        _quiet["depth"] += 1
    try:
        yield
    finally:
        with _QUIET:
            _quiet["depth"] -= 1
            if _quiet["depth"] == 0:
                os.dup2(_quiet["saved"], 2)
                os.close(_quiet["saved"])
                _quiet["saved"] = None


def quiet_tensorflow():
    """Import Keras, and TensorFlow when it is Keras' backend, with their start-up messages on
    stderr silenced; return ``tensorflow`` (None under another backend, which never imports it).

    TensorFlow's C++ logging writes to file descriptor 2 before it reads any setting, so the
    descriptor itself points at /dev/null during the import (and the first device query);
    ``TF_CPP_MIN_LOG_LEVEL=3`` keeps the later messages quiet. Real errors still raise.

    The first import happens once, under a lock: two threads importing TensorFlow and Keras at
    the same time (a server's sessions, its background import) can each hold a module the other
    needs, and Python then hands one of them a half-initialised module, broken for the life of
    the process (``module 'keras' has no attribute 'KerasTensor'``). Threads that may be first
    to use TensorFlow call this before their own ``import tensorflow`` / ``import keras``.
    """
    if _tensorflow["ready"]:
        return _tensorflow["module"]
    with _IMPORTING:
        if not _tensorflow["ready"]:
            fence_tensorflow()  # under another Keras backend, before Keras can reach for TensorFlow
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            with quiet_stderr():
                import keras

                if keras.backend.backend() == "tensorflow":
                    import tensorflow as tf

                    tf.config.list_physical_devices("GPU")  # the CUDA probe logs here on a CPU machine
                    _tensorflow["module"] = tf
                else:
                    fence_tensorflow(keras.backend.backend())
            _tensorflow["ready"] = True
    return _tensorflow["module"]


def fence_tensorflow(backend: str | None = None) -> None:
    """Under another Keras backend than TensorFlow (``backend``, else ``KERAS_BACKEND``), make
    TensorFlow unimportable in this process, even where it is installed.

    Keras reaches for TensorFlow by itself when it is installed, whatever the backend (saving a
    model asks whether ``tensorflow`` is available, which imports it): seconds of start-up, its
    C++ log lines in the middle of an epoch, and memory. An import finder first in
    ``sys.meta_path`` makes ``import tensorflow`` raise ModuleNotFoundError, which Keras takes as
    "not installed" (``sys.modules["tensorflow"] = None`` would not do: Keras reads a key there as
    "imported"). A process that already imported TensorFlow keeps it.
    """
    backend = backend or os.environ.get("KERAS_BACKEND")
    if backend and backend != "tensorflow" and "tensorflow" not in sys.modules \
            and not any(isinstance(f, _NoTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoTensorFlow())


class _NoTensorFlow:
    """An import finder that refuses ``tensorflow`` and its submodules (see :func:`fence_tensorflow`)."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"TensorFlow is not used under KERAS_BACKEND={os.environ.get('KERAS_BACKEND')}",
                                      name=name)
        return None


def tensorflow_ready() -> bool:
    """True once :func:`quiet_tensorflow` has finished (not merely started) the import."""
    return _tensorflow["ready"]


def visible_gpus() -> int:
    """Number of NVIDIA GPUs this machine shows, without importing TensorFlow (0 if none)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def device_name(gpus: int | None = None) -> str:
    """Short name of where work runs, as job lists and ``run.json`` show it: ``CPU (N cores)``,
    ``GPU 1`` (the ids a worker was given) or ``GPU (2)``. ``gpus``: how many TensorFlow sees;
    None counts what the machine shows, without importing TensorFlow."""
    count = visible_gpus() if gpus is None else gpus
    if not count:
        return f"CPU ({os.cpu_count()} cores)"
    ids = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    return f"GPU {ids}" if ids and ids != "-1" else f"GPU ({count})"


def device_line() -> str:
    """``training on CPU (N cores)`` or ``training on GPU 0: <name>, GPU 1: ...``."""
    tf = quiet_tensorflow()
    if tf is None:  # another Keras backend: its own accelerators
        import keras

        backend = keras.backend.backend()
        if backend == "jax":
            import jax

            found = [f"GPU {d.id}: {d.device_kind}" for d in jax.devices() if d.platform == "gpu"]
        else:
            found = []
        return f"training on {', '.join(found) or device_name(0)} ({backend})"
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "training on " + device_name(0)
    names = []
    for i, gpu in enumerate(gpus):
        try:
            names.append(f"GPU {i}: {tf.config.experimental.get_device_details(gpu).get('device_name', gpu.name)}")
        except (RuntimeError, ValueError):
            names.append(f"GPU {i}: {gpu.name}")
    return "training on " + ", ".join(names)


def keras_backend() -> str:
    """The Keras backend this process runs (``tensorflow``, ``jax`` or ``torch``), imported quietly."""
    quiet_tensorflow()
    import keras

    return keras.backend.backend()


def configured_backend() -> str:
    """The Keras backend this process runs or will run, without importing Keras for it."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND") or "tensorflow"


def installed_backends() -> list[str]:
    """The Keras backends installed here (those a run can train under)."""
    def installed(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except ImportError:  # fenced off in this process (see fence_tensorflow)
            return False

    return [name for name in ("tensorflow", "jax", "torch") if installed(name)]


#: What a user reads where a TensorFlow-only feature meets another backend.
TENSORFLOW_ONLY = ("{what} needs TensorFlow as Keras' backend, and this process runs {backend}: start it without "
                   "KERAS_BACKEND={backend} (TensorFlow is the default) to use it.")


def accelerators() -> int:
    """How many GPUs the Keras backend of this process sees (0 on CPUs)."""
    name = keras_backend()
    if name == "tensorflow":
        return len(quiet_tensorflow().config.list_physical_devices("GPU"))
    if name == "jax":
        import jax

        return sum(1 for d in jax.devices() if d.platform == "gpu")
    if name == "torch":
        import torch

        return torch.cuda.device_count()
    return 0


def setup_accelerators() -> None:
    """Before a model is built for training: on GPUs, mixed precision (float16 compute, float32
    weights and loss scaling, whatever the backend) and, under TensorFlow, memory growth, so that
    several jobs can share a card. Nothing changes on CPUs."""
    import keras

    tf = quiet_tensorflow()
    if tf is not None:
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:
                pass  # already initialised
    if accelerators():
        keras.mixed_precision.set_global_policy("mixed_float16")


def library_versions() -> dict:
    """What a run records in ``versions.json``: Python, Keras, its backend and NumPy."""
    import keras

    name = keras_backend()
    backend = __import__(name)
    return {"python": platform.python_version(), "keras": keras.__version__, "backend": name,
            name: getattr(backend, "__version__", "?"), "numpy": np.__version__}
