"""The run directory: crash-consistent epochs, the writer's lock, extending a run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fer_core import files
from fer_core.cli import main
from fer_core.errors import ConfigError
from fer_core.runs import model_folder, rundir
from fer_core.runs.trainconfig import TrainConfig
from fer_core.training.trainer import train


def tiny(epochs: int = 3, **kw) -> TrainConfig:
    return TrainConfig.for_model("tiny", **{"data": "demo:30", "epochs": epochs, "batch_size": 32, **kw})


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it, no cleanup code of ours runs after it."""


def _crash_in_epoch(monkeypatch, epoch: int, target: str, after: bool) -> None:
    """Die while ``epoch`` is committed, at the write of the file whose name starts with ``target``
    (before it, or just after its rename)."""
    real_commit, real_write = rundir.commit_epoch, files.atomic_write
    state = {"on": False}

    def commit(run_dir, model, row):
        state["on"] = row["epoch"] == epoch
        try:
            return real_commit(run_dir, model, row)
        finally:
            state["on"] = False

    def atomic_write(path, fn):
        hit = state["on"] and path.name.startswith(target)
        if hit and not after:
            raise Killed(f"before writing {path.name}")
        out = real_write(path, fn)
        if hit:
            raise Killed(f"after writing {path.name}")
        return out

    monkeypatch.setattr(rundir, "commit_epoch", commit)
    monkeypatch.setattr(files, "atomic_write", atomic_write)


# An epoch's commit writes the last checkpoint, the best one (always in epoch 1), state.json (the
# commit itself) and metrics.jsonl: a kill before or after each write point.
@pytest.mark.parametrize("epoch,target,after", [
    (1, "last-", False), (1, "best-", False), (1, "state", False), (1, "state", True), (1, "metrics", True),
    (2, "last-", False), (2, "state", True)])
def test_a_kill_at_any_write_point_of_an_epoch_resumes_to_a_gap_free_finished_run(tmp_path, monkeypatch, epoch,
                                                                                  target, after):
    run_dir = tmp_path / "run"
    _crash_in_epoch(monkeypatch, epoch, target, after)
    with pytest.raises(Killed):
        train(tiny(epochs=3, learning_rate=0.01), run_dir)
    monkeypatch.undo()
    committed = rundir.read_state(run_dir).epoch
    assert committed == (epoch if target == "metrics" or (target == "state" and after) else epoch - 1)
    assert [r["epoch"] for r in rundir.read_metrics(run_dir)] == list(range(1, committed + 1))
    train(run_dir=run_dir, resume=True)
    rows = [r["epoch"] for r in rundir.read_metrics(run_dir)]
    lines = [json.loads(line)["epoch"] for line in (run_dir / rundir.METRICS).read_text().splitlines()]
    assert rows == lines == [1, 2, 3]
    assert rundir.read_info(run_dir)["status"] == "finished" and rundir.final_model(run_dir).is_file()
    state = rundir.read_state(run_dir)
    leftovers = {p.name for p in run_dir.iterdir() if files.TMP_MARK in p.name or p.suffix == ".keras"}
    assert leftovers == {rundir.FINAL, state.last, state.best}


def test_a_kill_between_an_epochs_commit_and_its_tensorboard_events_leaves_no_gap_in_the_log(tmp_path, monkeypatch):
    from fer_core.training import tblog

    if not tblog.enabled():
        pytest.skip("TensorBoard is not installed (requirements-optional.txt)")
    real_write = tblog.EpochLog.write

    def write(self, row, *args):
        if row["epoch"] == 2:  # epoch 2 is committed: the kill comes before its events are written
            raise Killed("after the commit, before the event log")
        return real_write(self, row, *args)

    run_dir = tmp_path / "run"
    monkeypatch.setattr(tblog.EpochLog, "write", write)
    with pytest.raises(Killed):
        train(tiny(epochs=3, learning_rate=0.01), run_dir)
    monkeypatch.undo()
    assert rundir.read_state(run_dir).epoch == 2
    assert tblog.logged_epochs(rundir.tensorboard_dir(run_dir) / "validation") == {1}
    train(run_dir=run_dir, resume=True)
    for split in tblog.SPLITS:
        assert tblog.logged_epochs(rundir.tensorboard_dir(run_dir) / split) == {1, 2, 3}, split


def test_only_one_process_writes_a_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with rundir.lock(run_dir):
        assert rundir.is_locked(run_dir)
        with pytest.raises(ConfigError, match="another process .* is writing this run"):
            with rundir.lock(run_dir):
                pass
        with pytest.raises(ConfigError, match="is writing this run"):
            train(tiny(epochs=1), run_dir)
    assert not rundir.is_locked(run_dir)


def test_resume_with_more_epochs_extends_the_run_without_gaps(tmp_path, capsys):
    run_dir = train(tiny(epochs=2, schedule="cosine", learning_rate=0.01), tmp_path / "run")
    train(run_dir=run_dir, resume=True, epochs=4)
    rows = rundir.read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rundir.read_config(run_dir).epochs == 4
    info = rundir.read_info(run_dir)
    assert info["status"] == "finished" and info["extended"][0] | {"when": 0} == {"from": 2, "to": 4, "at_epoch": 2,
                                                                                   "when": 0}
    # the cosine schedule continues as a 4-epoch one: epoch 3 (index 2) sits at half the peak rate
    assert rows[2]["lr"] == pytest.approx(0.01 * 0.5 * (1 + __import__("math").cos(__import__("math").pi * 2 / 4)),
                                          rel=1e-4)
    with pytest.raises(ConfigError, match="not more than the 4 epochs already done"):
        train(run_dir=run_dir, resume=True, epochs=3)
    assert main(["train", "--resume", str(run_dir), "--epochs", "4"]) == 0  # the same count: nothing to add
    assert main(["train", "--resume", str(run_dir), "--epochs", "2"]) == 2
    assert "not more than the 4 epochs" in capsys.readouterr().err


def test_a_released_models_histories_round_trip_and_a_damaged_line_is_skipped(tmp_path):
    from fer_core.training.catalog import curves, shipped_histories

    rows = [{"epoch": 1, "accuracy": 0.4, "val_accuracy": 0.45, "loss": 1.5, "val_loss": 1.4},
            {"epoch": 2, "accuracy": 0.5, "val_accuracy": 0.52, "loss": 1.3, "val_loss": 1.2}]
    path = model_folder.write_history(tmp_path, "member-run", rows)
    assert model_folder.read_histories(tmp_path) == {"member-run": rows}
    path.write_text(path.read_text() + "{not json\n")
    (run,) = shipped_histories(tmp_path)
    assert run.name == "member-run" and run.metrics == rows
    assert len(curves([run])) == 8  # 2 epochs x (loss, accuracy) x (training, validation)
    assert model_folder.read_histories(tmp_path / "none") == {}


def test_a_lost_or_truncated_commit_record_is_rebuilt_never_trained_over(trained_run, tmp_path, capsys):
    """Regression: with state.json truncated, `train --resume RUN --epochs 6` printed "resuming",
    trained from epoch 1 and replaced the checkpoints and history of the epochs done."""
    run_dir = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = rundir.read_metrics(run_dir)
    (run_dir / rundir.STATE).write_text('{"epoch": 3, "last": "last-e0')  # cut mid-write by a full disk, say
    assert main(["train", "--resume", str(run_dir), "--epochs", "4"]) == 0
    rows = rundir.read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[:3] == before  # the epochs done are kept as they were, not trained again
    # a job's worker resumes such a run too (it asks has_started), never starts it over
    (run_dir / rundir.STATE).unlink()
    assert rundir.has_started(run_dir)


def test_a_record_that_cannot_be_rebuilt_or_a_bad_history_is_refused_and_nothing_changes(trained_run, tmp_path,
                                                                                          capsys):
    run_dir = Path(shutil.copytree(trained_run, tmp_path / "run"))
    state = json.loads((run_dir / rundir.STATE).read_text())
    kept = sorted(p.name for p in run_dir.iterdir())

    (run_dir / rundir.STATE).write_text("{")
    (run_dir / rundir.METRICS).write_text("")  # no history to rebuild it from
    assert main(["train", "--resume", str(run_dir), "--epochs", "6"]) == 2
    assert "commit record (state.json) is missing or unreadable" in capsys.readouterr().err
    assert sorted(p.name for p in run_dir.iterdir()) == kept and rundir.read_config(run_dir).epochs == 3

    for rows, named in (([1, 2, 2], "repeats epoch 2"), ([1, 3, 4], "missing epoch 2")):
        bad = {**state, "metrics": [{**state["metrics"][0], "epoch": e} for e in rows]}
        (run_dir / rundir.STATE).write_text(json.dumps(bad))
        assert main(["train", "--resume", str(run_dir), "--epochs", "6"]) == 2
        assert named in capsys.readouterr().err
        assert json.loads((run_dir / rundir.STATE).read_text()) == bad  # refused, untouched
    assert rundir.read_config(run_dir).epochs == 3
