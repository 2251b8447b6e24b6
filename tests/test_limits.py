"""Reliability round three: limits that keep one person from taking the machine from a class, and
deletions that never touch what FER Studio did not write."""

from __future__ import annotations

import pytest

from fer_core import jobs, rundir
from fer_core.cli import main
from fer_core.errors import ConfigError, JobError
from fer_core.jobs import JobStatus, JobStore, Limits
from fer_core.trainconfig import TrainConfig

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
        rundir.remove_run(home)
    assert sorted(p.name for p in home.iterdir()) == ["metrics.json", "thesis.tex"]
    (home / "run.json").write_text("{}")  # a job's folder before its first epoch: only our file goes
    assert rundir.remove_run(home) == ["metrics.json", "thesis.tex"]
    assert sorted(p.name for p in home.iterdir()) == ["metrics.json", "thesis.tex"]
