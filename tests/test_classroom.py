"""A class at once: a read-only server beside the lecturer's, and what a new user tripped over."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from fer_core import jobs
from fer_core.config import Settings, save_settings
from fer_core.errors import ConfigError, DataError, FerError
from fer_core.runs.trainconfig import TrainConfig
from fer_core.training.validation import check_world

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "pages"
TIMEOUT = 180


@pytest.fixture
def lecturer_job(demo_app):
    """A job the lecturer's full server queued (its worker not started: the runner holds it)."""
    class Holder(jobs.Runner):
        def slots(self): return []
        def start(self, job): raise AssertionError("nothing starts")
        def alive(self, pid): return True
        def stop(self, job): pass

    with jobs.JobStore() as store:
        return jobs.submit(TrainConfig.for_model("tiny", data="demo:30", epochs=2), store, Holder())


def test_a_read_only_server_shows_jobs_but_changes_nothing(lecturer_job, monkeypatch, demo_app):
    monkeypatch.setenv("FER_READ_ONLY", "1")
    before = sorted(p.relative_to(demo_app) for p in demo_app.rglob("*"))
    at = AppTest.from_file(str(PAGES / "train.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("Read-only server" in i.value for i in at.sidebar.info)  # said once, in the sidebar
    assert any(f"**Job {lecturer_job}**" in m.value for m in at.markdown)  # the lecturer's job is listed
    labels = [b.label for b in at.button]
    assert not {"Submit training job", "Submit sweep", "Cancel", "Resume", "Delete", "Save the address"} & set(labels)
    assert not at.text_input  # no typed paths, names or addresses
    ds = AppTest.from_file(str(PAGES / "dataset.py"), default_timeout=TIMEOUT).run()
    assert not ds.exception
    assert ds.sidebar.radio[0].options == ["Demo data set", "Found data sets"]  # no typed path, no upload
    assert not [b for b in ds.button if b.label == "Use this data set in the app"]
    with pytest.raises(ConfigError, match="read-only"):
        save_settings(Settings(data_source="demo"))
    with pytest.raises(FerError, match="read-only"):
        jobs.submit(TrainConfig.for_model("tiny", data="demo:30", epochs=1))
    with jobs.open_store() as store:  # the store is opened read-only: every write fails
        assert [j.id for j in store.list()] == [lecturer_job]
        with pytest.raises(FerError):
            store.cancel(lecturer_job)
    from fer_core.data.uploads import save_upload

    with pytest.raises(ConfigError, match="read-only"):
        save_upload("fer.csv", b"emotion,pixels,Usage\n")
    after = sorted(p.relative_to(demo_app) for p in demo_app.rglob("*"))
    # nothing written, not even SQLite's side files (regression: mode=ro created jobs.sqlite3-wal and -shm,
    # and on a read-only mount the store could not be opened at all)
    assert after == before


def test_a_read_only_server_still_analyses_photos(demo_app, monkeypatch):
    from skimage import data as skimage_data

    monkeypatch.setenv("FER_READ_ONLY", "1")
    buf = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(buf, "PNG")
    at = AppTest.from_file(str(PAGES / "predict.py"), default_timeout=TIMEOUT).run()
    at.sidebar.checkbox(key="pr_explain").uncheck().run()
    at.file_uploader(key="pr_upload").set_value([("astronaut.png", buf.getvalue(), "image/png")]).run()
    assert not at.exception and not at.error
    assert any(m.value.startswith("**Face 1:") for m in at.markdown)
    assert not demo_app.exists()  # analysed in memory: nothing written, not even the data folder


def test_a_read_only_server_sees_the_live_store_and_creates_no_file(demo_app, monkeypatch):
    from fer_core.jobs.sqlite import connect

    holder = type("Holder", (jobs.Runner,), {"slots": lambda self: [], "alive": lambda self, job: True,
                                 "stop": lambda self, job: None})()
    writer = jobs.JobStore()  # the full server, its store open (WAL and shared memory files in place)
    first = jobs.submit(TrainConfig.for_model("tiny", data="demo:30", epochs=1), writer, holder)
    monkeypatch.setenv("FER_READ_ONLY", "1")
    files_now = sorted(p.name for p in demo_app.iterdir())
    reader = connect()
    assert [r["id"] for r in reader.execute("SELECT id FROM jobs")] == [first]
    monkeypatch.delenv("FER_READ_ONLY")
    second = jobs.submit(TrainConfig.for_model("tiny", data="demo:30", epochs=1), writer, holder)
    assert [r["id"] for r in reader.execute("SELECT id FROM jobs")] == [first, second]  # committed changes show
    reader.close()
    assert sorted(p.name for p in demo_app.iterdir()) == files_now
    writer.close()
    monkeypatch.setenv("FER_READ_ONLY", "1")
    closed = sorted(p.name for p in demo_app.iterdir())
    reader = connect()  # the full server gone: everything is in the main file, read as it is
    assert [r["id"] for r in reader.execute("SELECT id FROM jobs")] == [first, second]
    reader.close()
    assert sorted(p.name for p in demo_app.iterdir()) == closed and "jobs.sqlite3-shm" not in closed


def test_a_read_only_store_with_no_jobs_yet_is_empty(demo_app, monkeypatch):
    monkeypatch.setenv("FER_READ_ONLY", "1")
    with jobs.open_store() as store:
        assert store.list() == []
    assert not demo_app.exists()  # not even the data folder was made


def test_class_merging_is_checked_up_front():
    """Regression: 'foo=bar' passed the form and the CLI; the job failed 15 s later with a traceback."""
    for merge, why in (("foo=bar", "unknown class 'foo'"), ("disgust", "from=into")):
        with pytest.raises(ConfigError) as bad:
            check_world(TrainConfig.for_model("tiny", data="demo", merge=merge))
        assert why in bad.value.fields["merge"]
    assert check_world(TrainConfig.for_model("tiny", data="demo", merge="disgust=angry"))


def test_the_command_line_trusts_the_path_its_user_typed(tmp_path, demo_small, monkeypatch, data_dir):
    """Regression: 'train --data /path' was refused unless FER2013_DIR pointed there; the refusal
    in the app did not say how to allow a folder."""
    from fer_core.data.loading import check_allowed, write_csv

    monkeypatch.delenv("FER2013_DIR", raising=False)
    monkeypatch.delenv("FER_DATA_ROOTS", raising=False)
    (tmp_path / "elsewhere").mkdir()
    csv = write_csv(demo_small, tmp_path / "elsewhere" / "fer.csv")
    raw = TrainConfig.for_model("tiny", data=str(csv), epochs=1).to_dict()
    assert check_world(TrainConfig.parse(raw), trusted=True)
    with pytest.raises(ConfigError) as bad:  # what a browser sends to the server
        check_world(TrainConfig.parse(raw))
    assert "FER2013_DIR" in bad.value.fields["data"] and "restart the app" in bad.value.fields["data"]
    with pytest.raises(DataError, match="FER_DATA_ROOTS"):
        check_allowed(str(csv))
    from fer_core.cli import main

    out = tmp_path / "typed-path"
    assert main(["train", "--data", str(csv), "--arch", "tiny", "--epochs", "1", "--out", str(out)]) == 0
    assert (out / "model.keras").is_file()


def test_the_deploy_button_is_hidden_and_sessions_expire():
    import tomllib

    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["client"]["toolbarMode"] == "viewer"
    assert cfg["server"]["disconnectedSessionTTL"] <= 300
    assert cfg["server"]["address"] == "127.0.0.1"


def test_a_link_to_a_run_chooses_it_within_the_session(run_in_data):
    """Regression: right after Submit, 'Curves of run X' opened the Runs page with the run chosen on
    an earlier visit (the multiselect kept its state), until a manual reload."""
    import json
    import shutil

    newer = Path(shutil.copytree(run_in_data, run_in_data.parent / "new-run"))
    at = AppTest.from_file(str(PAGES / "runs.py"), default_timeout=TIMEOUT).run()
    first = at.multiselect(key="runs_chosen").value
    assert len(first) == 1
    other = "new-run" if first == [run_in_data.name] else run_in_data.name
    at.query_params["run"] = other
    at.run()
    assert at.multiselect(key="runs_chosen").value == [other]
    assert newer.is_dir()
    # smoothing keeps the training/validation legend: every layer shares one dash encoding
    at.slider(key="curves_smooth").set_value(0.5).run()
    assert not at.exception
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    dashes = [layer["encoding"]["strokeDash"] for layer in spec["layer"] if "strokeDash" in layer.get("encoding", {})]
    assert len(dashes) == 2 and all(d.get("legend") for d in dashes) and dashes[0] == dashes[1]
    colour = spec["layer"][0]["encoding"]["color"]
    assert colour["scale"]["scheme"] == "tableau10"
