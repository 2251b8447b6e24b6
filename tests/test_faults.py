"""Faults: a full disk, a damaged job store, broken runs and model files, unsafe models,
two sessions submitting and cancelling at once."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fer_core import jobs
from fer_core.errors import JobError, ModelError
from fer_core.inference.loader import load_model, resolve_model
from fer_core.runs.trainconfig import TrainConfig

from .conftest import SUBMITTER

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180


class InProcess(jobs.Runner):
    """A runner that claims a job without starting a process: the worker then runs in the test."""

    def slots(self): return [0]
    def start(self, job): return os.getpid()
    def alive(self, pid): return True
    def stop(self, job): pass


def test_disk_full_while_saving_a_checkpoint_fails_the_job_with_a_message(data_dir, monkeypatch):
    """A real ENOSPC (the checkpoint's temporary file is /dev/full) inside the worker: the job fails
    saying the disk is full, and no temporary file is left in the run directory."""
    from fer_core import files

    store = jobs.JobStore()
    job_id = jobs.submit(TrainConfig.for_model("tiny", data="demo:30", epochs=2), store, InProcess())
    run_dir = Path(store.get(job_id).run_dir)
    real_temp = files.temp_path

    def temp_on_full_disk(path):
        tmp = real_temp(path)
        if tmp.suffix == ".keras":
            tmp.symlink_to("/dev/full")  # every write there: ENOSPC
        return tmp

    monkeypatch.setattr(files, "temp_path", temp_on_full_disk)
    assert jobs.work(job_id, run_dir, store.get(job_id).attempt) == 1
    job = store.get(job_id)
    assert job.status == jobs.JobStatus.FAILED
    assert "No space left on device" in job.error and "disk is full" in job.error
    assert not [p.name for p in run_dir.iterdir() if files.TMP_MARK in p.name]
    assert [j.id for j in jobs.JobStore().list()] == [job_id]  # the store is still readable


def test_a_read_only_run_directory_fails_the_job_with_what_to_do(data_dir, monkeypatch, capsys):
    """Regression: a run directory that became read-only failed the job with a raw
    'OSError: [Errno 30]' and a traceback in its log."""
    import errno

    from fer_core import files

    store = jobs.JobStore()
    job_id = jobs.submit(TrainConfig.for_model("tiny", data="demo:30", epochs=2), store, InProcess())
    run_dir = store.get(job_id).run_dir
    real_temp = files.temp_path

    def read_only(path):
        tmp = real_temp(path)
        if tmp.suffix == ".keras":
            raise OSError(errno.EROFS, "Read-only file system", str(tmp))
        return tmp

    monkeypatch.setattr(files, "temp_path", read_only)
    assert jobs.work(job_id, run_dir, store.get(job_id).attempt) == 1
    job = store.get(job_id)
    assert job.status == jobs.JobStatus.FAILED
    assert job.error.startswith("Read-only file system (") and "make it writable again" in job.error
    assert "Errno" not in job.error
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err


def test_damaged_job_store_is_reported_and_pages_keep_working(data_dir):
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / jobs.STORE_FILE).write_bytes(b"this is not a SQLite database, just junk " * 100)
    with pytest.raises(JobError, match="Cannot open the job store"):
        jobs.JobStore()
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("Cannot open the job store" in e.value for e in at.error)
    runs = AppTest.from_file(str(ROOT / "pages" / "runs.py"), default_timeout=TIMEOUT).run()
    assert not runs.exception


def test_broken_runs_are_listed_with_the_reason(run_in_data, no_default_model):
    runs = run_in_data.parent
    (runs / "bad-config").mkdir()
    (runs / "bad-config" / "config.json").write_text("{not json")
    truncated = Path(shutil.copytree(run_in_data, runs / "truncated-model"))
    for path in truncated.glob("*.keras"):  # the final model and every checkpoint
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    page = AppTest.from_file(str(ROOT / "pages" / "runs.py"), default_timeout=TIMEOUT).run()
    assert not page.exception
    warnings = " ".join(w.value for w in page.warning)
    assert "bad-config** is broken" in warnings and "cannot read the training configuration" in warnings
    ev = AppTest.from_file(str(ROOT / "pages" / "evaluate.py"), default_timeout=TIMEOUT).run()
    ev.selectbox(key="ev_model").set_value(str(truncated)).run()
    assert not ev.exception
    assert any("cannot load this model" in e.value and "truncated or corrupt" in e.value for e in ev.error)
    ev.selectbox(key="ev_model").set_value(str(run_in_data)).run()  # the good run still works
    assert not ev.exception and not ev.error and ev.metric


def test_unsafe_model_files_are_refused(tmp_path):
    import keras

    marker = tmp_path / "code-ran"
    inputs = keras.Input((48, 48, 1))
    # arbitrary Python inside a model file: a lambda is stored as bytecode
    path_text = str(marker)
    x = keras.layers.Lambda(lambda t: (open(path_text, "w").write("ran"), t)[1])(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x))
    path = tmp_path / "lambda.keras"
    model.save(path)
    marker.unlink()  # building the model ran it once, here
    with pytest.raises(ModelError, match="refused: the file holds Python code.*safe mode"):
        load_model(resolve_model(path))
    assert not marker.exists()


def test_sessions_submitting_and_cancelling_at_once(data_dir):
    """Four processes (as four browser sessions would, through the same calls) each submit five
    jobs at the same time and cancel every other one: every job is recorded once, in its own run
    folder, with the right final status, and one runs (the runner's one slot)."""
    script = SUBMITTER + (
        "store = jobs.JobStore()\n"
        "mine = [jobs.submit(TrainConfig(data='demo', arch='tiny', seed=100 * int(sys.argv[1]) + i), store, R())"
        " for i in range(5)]\n"
        "for job_id in mine[::2]:\n"
        "    store.cancel(job_id)\n"
        "print(' '.join(map(str, mine)))\n"
    )
    env = dict(os.environ, HOLDER=str(os.getpid()), PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(s)], env=env, stdout=subprocess.PIPE, text=True)
             for s in (1, 2, 3, 4)]
    mine = [list(map(int, p.communicate(timeout=120)[0].split())) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    store = jobs.JobStore()
    listed = {j.id: j for j in store.list()}
    assert sorted(listed) == sorted(sum(mine, [])) and len(listed) == 20
    assert sorted(j.config["seed"] for j in listed.values()) == [100 * s + i for s in (1, 2, 3, 4) for i in range(5)]
    assert len({j.run_dir for j in listed.values()}) == 20
    for ids in mine:
        for job_id in ids[::2]:
            job = listed[job_id]
            # a queued job is cancelled at once; a running one is asked to stop
            assert job.status == jobs.JobStatus.CANCELLED or job.cancel_requested
        for job_id in ids[1::2]:
            assert listed[job_id].status in (jobs.JobStatus.QUEUED, jobs.JobStatus.RUNNING)
            assert not listed[job_id].cancel_requested
    assert sum(j.status == jobs.JobStatus.RUNNING for j in listed.values()) == 1
    assert len(json.loads(json.dumps([j.to_dict() for j in listed.values()]))) == 20  # every row readable as JSON


def test_a_damaged_page_of_the_store_is_a_clear_error_and_repair_rebuilds_it(run_in_data, data_dir, capsys):
    """A page of jobs.sqlite3 overwritten: every command and page says which file and how back."""
    from fer_core.cli import main

    with jobs.JobStore() as store:
        for _ in range(40):  # enough rows for the table to span several pages
            store.submit(TrainConfig.for_model("tiny", data="demo:30", epochs=1, seed=0))
    path = data_dir / jobs.STORE_FILE
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as fh:  # overwrite the table's second page with junk
        fh.seek(page)
        fh.write(b"\xde\xad\xbe\xef" * (page // 4))
    assert main(["jobs", "list"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "jobs repair" in err and "Traceback" not in err
    for name in ("train.py", "runs.py"):
        at = AppTest.from_file(str(ROOT / "pages" / name), default_timeout=TIMEOUT).run()
        assert not at.exception, name
    jobs.stop_scheduling_loop()  # the pages started the server's loop: the rebuilt queue must stay queued here
    assert main(["jobs", "repair"]) == 0
    assert "damaged store is kept" in capsys.readouterr().out
    assert list(data_dir.glob(f"{jobs.STORE_FILE}.damaged-*"))
    with jobs.JobStore() as store:
        rebuilt = {Path(j.run_dir).name: j for j in store.list()}
    # every run directory is a job again: the finished run succeeded, the queued ones are queued again
    assert rebuilt[run_in_data.name].status == jobs.JobStatus.SUCCEEDED
    queued = [j for j in rebuilt.values() if j.status == jobs.JobStatus.QUEUED]
    assert len(queued) == 40 and sorted(j.id for j in queued) == list(range(1, 41))  # under their own ids


def test_a_full_disk_in_the_store_is_reported_as_such_and_rolls_back_cleanly(data_dir):
    """SQLite rolls a transaction back by itself when the disk is full: no 'cannot rollback'."""
    with jobs.JobStore() as store:
        store.submit(TrainConfig.for_model("tiny", data="demo:30", epochs=1))
        store.conn.execute("PRAGMA max_page_count = %d" % store.conn.execute("PRAGMA page_count").fetchone()[0])
        with pytest.raises(JobError, match="disk is full"):
            with jobs.transaction(store.conn) as c:
                c.execute("INSERT INTO jobs (config, status, created, run_dir, total_epochs) VALUES (?, ?, ?, ?, ?)",
                          ("x" * 200_000, "queued", 0.0, "nowhere", 1))
        assert not store.conn.in_transaction and len(store.list()) == 1  # still usable, nothing half-written
        before = sorted((data_dir / "runs").iterdir())
        store.conn.execute("PRAGMA query_only = 1")  # the store refuses every write from now on
        with pytest.raises(JobError, match="could not record the change|not writable"):
            store.submit(TrainConfig.for_model("tiny", data="demo:30", epochs=1), name="refused")
        assert sorted((data_dir / "runs").iterdir()) == before  # the failed submit left no run folder


def test_a_dataset_cache_that_cannot_be_written_leaves_no_temporary_file(data_dir, monkeypatch):
    from fer_core import files
    from fer_core.config import cache_dir
    from fer_core.data.loading import load_dataset

    real_temp = files.temp_path

    def on_full_disk(path):
        tmp = real_temp(path)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.symlink_to("/dev/full")  # every write: ENOSPC
        return tmp

    monkeypatch.setattr(files, "temp_path", on_full_disk)
    ds = load_dataset("demo:5")  # the cache is not written, the data set still loads
    assert len(ds) == 35
    assert not [p.name for p in cache_dir().rglob("*") if files.TMP_MARK in p.name]


def test_models_of_the_wrong_shape_or_without_softmax_are_refused_at_load(tmp_path):
    """A colour model, one with the wrong number of outputs and one that gives raw scores: each is
    refused when loaded, naming what was expected and what was found, never later in a page."""
    import keras

    from fer_core.config import CLASS_NAMES
    from fer_core.inference.loader import ModelRef

    def save(name, shape, units, activation):
        inputs = keras.Input(shape)
        x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
        path = tmp_path / f"{name}.keras"
        keras.Model(inputs, keras.layers.Dense(units, activation=activation)(x)).save(path)
        return ModelRef(path, name, CLASS_NAMES)

    with pytest.raises(ModelError, match=r"input of shape \(48, 48, 3\).*\(48, 48, 1\)"):
        load_model(save("colour", (48, 48, 3), 7, "softmax"))
    with pytest.raises(ModelError, match="gives 5 outputs; FER Studio expects 7"):
        load_model(save("five", (48, 48, 1), 5, "softmax"))
    with pytest.raises(ModelError, match="not probabilities"):
        load_model(save("logits", (48, 48, 1), 7, None))
    assert load_model(save("good", (48, 48, 1), 7, "softmax")).output_shape == (None, 7)
