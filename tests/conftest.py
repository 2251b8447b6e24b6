"""Shared fixtures: an isolated data directory, the demo set, and the real FER2013 when present."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Every test run gets its own data directory, so caches, settings and runs never touch data/ nor a
# developer's own FER_DATA_DIR (which is replaced, not kept, for the whole session).
os.environ["FER_DATA_DIR"] = tempfile.mkdtemp(prefix="fer-test-data-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def no_scheduling_loop_left(monkeypatch):
    """The Train and Runs pages start the server's job scheduling loop, a thread of this process:
    it stops before the test's patches and data folder are undone (it never outlives its test)."""
    yield
    from fer_core import jobs

    jobs.stop_scheduling_loop()


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A fresh, empty data directory for tests that check caching or settings."""
    path = tmp_path / "data"
    monkeypatch.setenv("FER_DATA_DIR", str(path))
    return path


@pytest.fixture
def demo_app(data_dir, monkeypatch):
    """A fresh data directory and no FER2013: the app as a new user sees it (the demo data set)."""
    monkeypatch.delenv("FER2013_DIR", raising=False)
    return data_dir


@pytest.fixture(scope="session")
def demo_small():
    """A small demo data set: 20 faces per class."""
    from fer_core.data.demo import make_demo_dataset

    return make_demo_dataset(per_class=20, seed=1)


@pytest.fixture(scope="module")
def shipped():
    """The shipped default model, ``(ref, Keras model)``, loaded once per test module."""
    from fer_core.inference.loader import load_model, resolve_model

    ref = resolve_model("default")
    return ref, load_model(ref)


@pytest.fixture(scope="module")
def shipped_engine():
    """The shipped default model as the app runs it, ``(engine, classes)`` (its interpreters pooled)."""
    from fer_core.inference.engine import load_engine
    from fer_core.inference.loader import resolve_model

    ref = resolve_model("default")
    return load_engine(ref), ref.classes


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real FER2013 folder from ``FER2013_DIR``; skipped (or failed, under FER_REQUIRE_DATA=1) if absent."""
    value = os.environ.get("FER2013_DIR", "")
    path = Path(value) if value else None
    if path is None or not (path / "train").is_dir():
        message = f"FER2013 not found (FER2013_DIR={value!r}); it needs train/ and test/ folders."
        if os.environ.get("FER_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


#: The exact counts of the shared README, per split and class.
FER_COUNTS = {
    "Training": {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "sad": 4830, "surprise": 3171, "neutral": 4965},
    "PublicTest": {"angry": 467, "disgust": 56, "fear": 496, "happy": 895, "sad": 653, "surprise": 415, "neutral": 607},
    "PrivateTest": {"angry": 491, "disgust": 55, "fear": 528, "happy": 879, "sad": 594, "surprise": 416, "neutral": 626},
}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A tiny model trained for 3 epochs on the demo set (about 90% accurate): a finished run."""
    from fer_core.runs.trainconfig import TrainConfig
    from fer_core.training.trainer import train

    cfg = TrainConfig.for_model("tiny", data="demo", epochs=3, seed=0)
    return train(cfg, tmp_path_factory.mktemp("trained") / "tiny-demo")


@pytest.fixture
def run_in_data(trained_run, data_dir) -> Path:
    """``trained_run`` copied under this test's ``data/runs``, where the pages and CLI look."""
    import shutil

    return Path(shutil.copytree(trained_run, data_dir / "runs" / trained_run.name))


@pytest.fixture
def fast_model(monkeypatch, trained_run, tmp_path) -> Path:
    """A shipped fast model in place (``trained_run``'s model, with its config and classes), as in
    a copy of FER Studio that ships one; returns its folder."""
    import shutil

    from fer_core.inference import loader

    folder = tmp_path / "fast_model"
    folder.mkdir()
    for name in ("model.keras", "config.json", "classes.json"):
        shutil.copy(trained_run / name, folder / name)
    monkeypatch.setattr(loader, "FAST_MODEL_DIR", folder)
    return folder


@pytest.fixture
def no_default_model(monkeypatch, tmp_path):
    """Hide the shipped default model, as on a checkout without it: runs are the fallback."""
    from fer_core.inference import loader

    monkeypatch.setattr(loader, "DEFAULT_MODEL_DIR", tmp_path / "no-default-model")


#: Python run in separate processes by the concurrency tests: a runner that claims slots but
#: starts nothing (the "worker" pid is the test process, given in HOLDER), then the test's lines.
SUBMITTER = (
    "import os, sys\n"
    "from fer_core import jobs\n"
    "from fer_core.runs.trainconfig import TrainConfig\n"
    "class R(jobs.Runner):\n"
    "    def slots(self): return [0]\n"
    "    def start(self, job): return int(os.environ['HOLDER'])\n"
    "    def alive(self, pid): return True\n"
    "    def stop(self, job): pass\n"
)
