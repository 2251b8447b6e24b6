"""TensorFlow (or Keras on another backend) imported quietly, and the one line that says where
training runs.

On a machine without a GPU, importing TensorFlow prints CUDA probing errors ("failed call to
cuInit") and build notes ("rebuild TensorFlow with the appropriate compiler flags") that read
like failures. The command line and the job workers import it through :func:`quiet_tensorflow`
and print one line instead: ``training on CPU (2 cores)`` or ``training on GPU 0: <name>``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager

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
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            with quiet_stderr():
                import keras

                if keras.backend.backend() == "tensorflow":
                    import tensorflow as tf

                    tf.config.list_physical_devices("GPU")  # the CUDA probe logs here on a CPU machine
                    _tensorflow["module"] = tf
            _tensorflow["ready"] = True
    return _tensorflow["module"]


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
