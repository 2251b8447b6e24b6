"""Reliability round three: limits that keep one person from taking the machine from a class, and
deletions that never touch what FER Studio did not write."""

from __future__ import annotations

import pytest

from fer_core import jobs
from fer_core.cli import main
from fer_core.errors import ConfigError, JobError
from fer_core.jobs import JobStatus, JobStore, Limits, limits, liveness
from fer_core.runs import removal, rundir

from .test_jobs import FakeRunner, tiny


@pytest.fixture
def store(data_dir):
    s = JobStore()
    yield s
    s.close()


def test_the_queue_cannot_be_flooded_on_the_server(store, monkeypatch):
    """Regression: fifty 10,000-epoch jobs were accepted in 0.2 s, everyone else's behind them."""
    for name in ("FER_MAX_QUEUED", "FER_MAX_EPOCHS", "FER_MAX_JOBS_PER_SESSION"):
        monkeypatch.delenv(name, raising=False)
    assert Limits.for_server() == Limits(20, 500, 10)  # the web server's defaults
    monkeypatch.setenv("FER_MAX_QUEUED", "4")
    monkeypatch.setenv("FER_MAX_JOBS_PER_SESSION", "3")
    server = Limits.for_server()
    assert (server.queued, server.epochs, server.per_session) == (4, 500, 3)
    with pytest.raises(JobError, match="10000 epochs is more than this server allows for one job \\(500"):
        jobs.submit(tiny(epochs=10_000), store, FakeRunner(0), limits=server)
    assert store.list() == []  # nothing was queued, no run directory was made
    assert not list(rundir.run_dirs())
    mine: list[int] = []
    for _ in range(3):
        mine.append(jobs.submit(tiny(), store, FakeRunner(0), limits=server, mine=mine))
    with pytest.raises(JobError, match="You have 3 job\\(s\\) waiting or running.*3 per browser session"):
        jobs.submit(tiny(), store, FakeRunner(0), limits=server, mine=mine)
    other = jobs.submit(tiny(), store, FakeRunner(0), limits=server, mine=[])  # another student: the 4th
    with pytest.raises(JobError, match="The job queue is full: 4 job\\(s\\).*FER_MAX_QUEUED"):
        jobs.submit(tiny(), store, FakeRunner(0), limits=server, mine=[])
    with pytest.raises(JobError, match="A sweep of 2 jobs: The job queue is full"):
        jobs.submit_sweep(jobs.make_sweep(lambda arch: tiny().to_dict(), seeds=[0, 1]), store, runner=FakeRunner(0),
                          limits=Limits(queued=5))
    assert len(store.list()) == 4
    store.cancel(other)
    assert store.get(other).status == JobStatus.CANCELLED
    jobs.submit(tiny(), store, FakeRunner(0), limits=server, mine=[])  # a place came free


def test_the_command_line_has_no_limit_unless_told(store, monkeypatch):
    for name in ("FER_MAX_QUEUED", "FER_MAX_EPOCHS", "FER_MAX_JOBS_PER_SESSION"):
        monkeypatch.delenv(name, raising=False)
    assert Limits.from_env() == Limits()
    for _ in range(25):  # more than the server's default of 20
        jobs.submit(tiny(epochs=600), store, FakeRunner(0))
    assert store.count_waiting() == 25
    monkeypatch.setenv("FER_MAX_QUEUED", "25")
    with pytest.raises(JobError, match="queue is full"):
        jobs.submit(tiny(), store, FakeRunner(0))
    monkeypatch.setenv("FER_MAX_EPOCHS", "50")
    assert main(["jobs", "submit", "--data", "demo:30", "--arch", "tiny", "--epochs", "60"]) == 2


def test_deleting_a_job_keeps_what_the_user_put_in_its_run_directory(store, run_in_data):
    """Audit of every deletion: a run directory loses only the files training wrote."""
    job_id = store.submit(rundir.read_config(run_in_data), run_dir=run_in_data)
    (run_in_data / "my-notes.md").write_text("mine")
    (run_in_data / "figures").mkdir()
    assert store.delete(job_id) == ["figures", "my-notes.md"]
    assert sorted(p.name for p in run_in_data.iterdir()) == ["figures", "my-notes.md"]
    assert (run_in_data / "my-notes.md").read_text() == "mine"


def test_remove_run_refuses_a_folder_that_is_not_a_run(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    (home / "metrics.json").write_text("{}")  # not a run: no config.json or run.json
    with pytest.raises(ConfigError, match="not a run directory"):
        removal.remove_run(home)
    assert sorted(p.name for p in home.iterdir()) == ["metrics.json", "thesis.tex"]
    (home / "run.json").write_text("{}")  # a job's folder before its first epoch: only our file goes
    assert removal.remove_run(home) == ["metrics.json", "thesis.tex"]
    assert sorted(p.name for p in home.iterdir()) == ["metrics.json", "thesis.tex"]


def test_a_resumed_job_joins_the_queue_under_its_total(store):
    a = jobs.submit(tiny(), store, FakeRunner(0))
    store.cancel(a)
    jobs.submit(tiny(), store, FakeRunner(0))
    jobs.submit(tiny(), store, FakeRunner(0))
    with pytest.raises(JobError, match="queue is full: 2 job"):
        store.resume(a, max_waiting=2)
    assert store.get(a).status == JobStatus.CANCELLED
    store.resume(a, max_waiting=3)
    assert store.get(a).status == JobStatus.QUEUED


def test_a_sweep_goes_in_whole_or_not_at_all(store, monkeypatch):
    """A sweep that meets a full queue (another submission landed meanwhile) leaves none of its jobs
    queued. Regression: its jobs were queued one transaction each, so another process could start
    the first before the sweep was refused ("Job 1 is running; cancel it first": half queued); now
    the whole sweep is one transaction."""
    real_many, landed = JobStore.submit_many, []

    def crowded(self, *args, **kwargs):
        if not landed:  # someone else's job lands just before the sweep's
            landed.append(real_many(self, [{"cfg": tiny()}]))
        return real_many(self, *args, **kwargs)

    monkeypatch.setattr(JobStore, "submit_many", crowded)
    with pytest.raises(JobError, match="queue is full"):
        jobs.submit_sweep(jobs.make_sweep(lambda arch: tiny().to_dict(), seeds=[0, 1]), store, runner=FakeRunner(0),
                          limits=Limits(queued=2))
    left = store.list()
    assert len(left) == 1 and not left[0].sweep  # only the other person's job


def test_deleting_a_run_keeps_user_files_inside_its_folders_too(store, run_in_data):
    job_id = store.submit(rundir.read_config(run_in_data), run_dir=run_in_data)
    (run_in_data / "report.tmp-final.docx").write_text("mine")  # looks like a temp name, is not ours
    (run_in_data / "eval").mkdir(exist_ok=True)
    (run_in_data / "eval" / ("ab" * 20 + ".npz")).write_bytes(b"cache")  # ours
    (run_in_data / "eval" / "keep.csv").write_text("mine")
    (run_in_data / "tensorboard").mkdir(exist_ok=True)
    (run_in_data / "tensorboard" / "my_notes.md").write_text("mine")
    kept = store.delete(job_id)
    assert kept == ["eval/keep.csv", "report.tmp-final.docx", "tensorboard/my_notes.md"]
    assert not (run_in_data / "eval" / ("ab" * 20 + ".npz")).exists()
    assert sorted(p.relative_to(run_in_data).as_posix() for p in run_in_data.rglob("*") if p.is_file()) == kept


def test_the_frame_cap_counts_the_frames_of_a_slower_video(monkeypatch):
    from fer_core.inference.video import analysed_span, limit_note

    monkeypatch.setenv("FER_MAX_VIDEO_FRAMES", "60")
    monkeypatch.setenv("FER_MAX_VIDEO_SECONDS", "600")
    assert analysed_span(30, None) == 2.0 and analysed_span(30, 10) == 6.0  # a 10-fps video gives 10 a second
    assert "(60 frames at 10 per second)" in limit_note(20.0, 30, 10)


def test_every_setting_reads_by_one_rule(monkeypatch):
    """One rule for every numeric setting (``fer_core.config``): a value that is not a number of its
    kind above zero gives the default, so a typo never turns a limit off (before, each module had its
    own: ``FER_STALE_SECONDS=-5`` gave 6 s, ``FER_QUIZ_HOURS=+5`` 5 h, ``FER_MAX_PHOTOS=²`` a crash)."""
    from fer_core.config import env_float, env_flag, env_number, env_text, setting

    for value in ("", "x", "0", "-3", "+5", "2.0", "1_000", "²"):
        monkeypatch.setenv("FER_MAX_PHOTOS", value)
        assert env_number("FER_MAX_PHOTOS") == 20 and env_number("FER_MAX_PHOTOS", None) is None, value
    monkeypatch.setenv("FER_MAX_PHOTOS", " 7 ")
    assert env_number("FER_MAX_PHOTOS") == 7
    for value in ("", "x", "0", "-5", "nan", "inf"):
        monkeypatch.setenv("FER_STALE_SECONDS", value)
        assert env_float("FER_STALE_SECONDS") == setting("FER_STALE_SECONDS").default == 30.0, value
    monkeypatch.setenv("FER_STALE_SECONDS", "0.5")
    assert env_float("FER_STALE_SECONDS") == 0.5 and liveness.stale_seconds() == 6.0  # the reader's floor
    monkeypatch.setenv("FER_RAY_GPUS_PER_JOB", "0")  # 0 is a value here: CPUs even on a GPU cluster
    monkeypatch.setenv("FER_RAY_CPUS_PER_JOB", "0")  # and a typo there
    assert env_float("FER_RAY_GPUS_PER_JOB") == 0.0 and env_float("FER_RAY_CPUS_PER_JOB") == 1.0
    for value, on in (("1", True), ("Yes", True), ("0", False), ("maybe", False), ("", False)):
        monkeypatch.setenv("FER_READ_ONLY", value)
        assert env_flag("FER_READ_ONLY") is on, value
    monkeypatch.setenv("FER2013_DIR", "  /data/fer2013 ")
    assert env_text("FER2013_DIR") == "/data/fer2013"
    with pytest.raises(KeyError):
        env_number("FER_MAX_PHOTOES")  # a name that is not registered
    with pytest.raises(TypeError):
        env_number("FER_STALE_SECONDS")  # read as the wrong kind
    for name in limits.VARIABLES:
        monkeypatch.setenv(name, "-1")
    assert Limits.from_env() == Limits() and Limits.for_server() == Limits(20, 500, 10)
