"""The lecturer's report (issue 51): the command line, Explore, Predict's live camera and video, Train."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from fer_core.cli import analysis, main
from fer_core.inference.live import camera_allowed, page_url
from fer_core.inference.photo import PHOTO_TYPES, ImageResult

TIMEOUT = 300
ROOT = Path(__file__).resolve().parent.parent
PREDICT = str(ROOT / "pages" / "predict.py")
EXPLORE = str(ROOT / "pages" / "explore.py")
TRAIN = str(ROOT / "pages" / "train.py")


def _no_model(monkeypatch) -> list[str]:
    """Make loading TensorFlow or a model record the call and fail; returns the record."""
    calls: list[str] = []

    def refuse(name):
        def call(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was called")
        return call

    for name in ("resolve_model", "load_engine", "quiet_tensorflow"):
        monkeypatch.setattr(analysis, name, refuse(name))
    return calls


# ------------------------------------------------------------------------------- 1. predict's inputs
def test_predict_reports_unreadable_files_before_any_model_loads(monkeypatch, tmp_path, capsys):
    calls = _no_model(monkeypatch)
    (tmp_path / "empty.png").write_bytes(b"")
    args = [str(tmp_path / "missing.jpg"), str(tmp_path / "gone.mp4"), str(tmp_path), str(tmp_path / "empty.png")]
    assert main(["predict", *args, "--no-detect"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{args[0]}: error: {args[0]}: no such file.", f"{args[1]}: error: {args[1]}: no such file.",
                   f"{args[2]}: error: {args[2]}: not a regular file (a folder or a device).",
                   f"{args[3]}: error: {args[3]}: the file is empty."]
    assert main(["predict", args[0], args[1], "--json"]) == 1
    docs = json.loads(capsys.readouterr().out)
    assert docs == [{"file": args[0], "detector": None, "faces": [], "error": f"{args[0]}: no such file.",
                     "model": None}, {"file": args[1], "error": f"{args[1]}: no such file.", "model": None}]
    assert main(["predict", args[1], "--json"]) == 1  # one video: one object, as for a readable one
    assert json.loads(capsys.readouterr().out)["error"] == f"{args[1]}: no such file."
    assert calls == []


def test_predict_analyses_the_readable_files_and_reports_the_others(monkeypatch, tmp_path, capsys):
    """Among readable files a missing one is still reported in its place (exit 1); only the
    readable ones reach the model, and no video model loads for a video that is not there."""
    photo = tmp_path / "face.png"
    Image.new("L", (48, 48), 128).save(photo)
    ref = SimpleNamespace(name="fake", classes=("a", "b"))
    resolved, analysed = [], []
    monkeypatch.setattr(analysis, "quiet_tensorflow", lambda: None)
    monkeypatch.setattr(analysis, "resolve_model", lambda name: resolved.append(name) or ref)
    monkeypatch.setattr(analysis, "load_engine", lambda r: SimpleNamespace(note=None))

    def analyse(images, model, classes, **kwargs):
        analysed.extend(name for name, _ in images)
        return [ImageResult(name) for name, _ in images]

    monkeypatch.setattr(analysis, "analyse", analyse)
    missing, video = str(tmp_path / "missing.jpg"), str(tmp_path / "missing.mp4")
    assert main(["predict", missing, str(photo), video, "--no-detect"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("model: fake ") and "(videos)" not in out[0]
    assert out[1] == f"{missing}: error: {missing}: no such file."
    assert out[2].startswith(f"{photo}: no face found")
    assert out[3] == f"{video}: error: {video}: no such file."
    assert analysed == [str(photo)] and resolved == [None]  # the photos' model only


# -------------------------------------------------------------------- 2. a subcommand's own usage
@pytest.mark.parametrize("argv", [["predict", "x.jpg", "--jsn"], ["evaluate", "--bogus"],
                                  ["jobs", "submit", "--bogus"], ["data", "summary", "demo", "--nope"]])
def test_an_unknown_option_shows_its_subcommands_usage(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    command = " ".join(a for a in argv if not a.startswith("-") and a not in ("x.jpg", "demo"))
    assert err.startswith(f"usage: python -m fer_core {command} ")
    assert f"python -m fer_core {command}: error: unrecognized arguments: {argv[-1]}" in err
    assert f"see python -m fer_core {command} --help" in err


# ------------------------------------------------------------------------ 5a. the camera's origin
@pytest.mark.parametrize("url, allowed", [
    ("http://localhost:8501", True), ("http://127.0.0.1", True), ("http://[::1]", True),
    ("http://[::1]:8501/predict", True), ("https://anything", True), ("https://192.168.1.5:8502", True),
    ("http://app.localhost:8501", True), ("http://127.0.0.2:8501", True), ("HTTP://LOCALHOST:8501", True),
    ("http://192.168.1.5:8502", False), ("http://lecturer-laptop:8502", False), ("http://[fe80::1]:8501", False),
    ("http://localhost.example.com", False), ("", False)])
def test_the_camera_is_allowed_only_on_a_secure_origin(url, allowed):
    assert camera_allowed(url) is allowed


def test_the_pages_address_comes_from_the_browser_else_the_headers():
    assert page_url("http://a:1/predict", {"Host": "b:2"}) == "http://a:1/predict"
    assert page_url(None, {"Origin": "http://192.168.1.5:8502", "Host": "x"}) == "http://192.168.1.5:8502"
    assert page_url(None, {"host": "lab:8502", "X-Forwarded-Proto": "https"}) == "https://lab:8502"  # a TLS proxy
    assert page_url(None, {"Host": "lab:8502"}) == "http://lab:8502"
    assert page_url(None, {}) is None and page_url(None) is None


@pytest.fixture
def fake_webrtc(monkeypatch):
    """The WebRTC component stubbed out: AppTest has no browser session for it (and importing
    aiortc after TensorFlow, as an earlier test may have loaded it, can crash the process)."""
    import types

    webrtc = types.ModuleType("streamlit_webrtc")
    webrtc.WebRtcMode, webrtc.webrtc_streamer = SimpleNamespace(SENDRECV="sendrecv"), lambda **kwargs: None
    for name, module in (("streamlit_webrtc", webrtc), ("av", types.ModuleType("av")),
                         ("aiortc", types.ModuleType("aiortc"))):
        monkeypatch.setitem(sys.modules, name, module)


def _live(url: str | None) -> AppTest:
    at = AppTest.from_file(PREDICT, default_timeout=TIMEOUT)
    if url:
        at.context = {"url": url}
    at.session_state["pr_mode"] = "Live camera"
    return at.run()


def test_live_mode_says_why_the_camera_cannot_start_on_plain_http(demo_app, fake_webrtc):
    at = _live("http://192.168.1.5:8502/predict")
    assert not at.exception
    (warning,) = [w.value for w in at.warning if "camera will not start" in w.value]
    assert "192.168.1.5:8502" in warning and "HTTPS" in warning and "localhost" in warning
    assert 'README, "Live camera"' in warning
    for url in ("http://localhost:8501/predict", "https://lab.example.org/predict", None):
        at = _live(url)
        assert not at.exception and not [w for w in at.warning if "camera will not start" in w.value], url


# --------------------------------------------------------- 5b. live mode shows only what it uses
def test_live_mode_hides_the_options_it_ignores_and_keeps_their_values(demo_app, fake_webrtc):
    ignored = ("pr_tta", "pr_detect", "pr_explain", "pr_occlude")
    at = _live("http://localhost:8501/predict")
    keys = {w.key for w in at.sidebar if getattr(w, "key", None)}
    assert not at.exception and not keys & set(ignored)
    assert {"pr_model_speed", "pr_detector"} <= keys  # what it uses
    at.radio(key="pr_mode").set_value("A video").run()
    at.selectbox(key="pr_tta").set_value("none").run()
    at.checkbox(key="pr_explain").uncheck().run()
    at.radio(key="pr_mode").set_value("Live camera").run()
    assert not {w.key for w in at.sidebar if getattr(w, "key", None)} & set(ignored)
    at.radio(key="pr_mode").set_value("A video").run()
    assert not at.exception
    assert at.selectbox(key="pr_tta").value == "none" and at.checkbox(key="pr_explain").value is False


# -------------------------------------------------------------------------------- 5c. the video
def _video_result(classes, name):
    from fer_core.inference.faces import Box
    from fer_core.inference.video import VideoFace, VideoFrame, VideoResult

    frames = []
    for k in range(4):
        proba = np.full(len(classes), 0.05)
        proba[k % 2] = 1 - 0.05 * (len(classes) - 1)
        frames.append(VideoFrame(k * 0.5, [VideoFace(Box(10, 10, 40, 40), 1, proba, classes[k % 2])]))
    return VideoResult(name, tuple(classes), 2.0, "yunet", size=(64, 48), duration=2.0, frames=frames)


def test_video_one_button_a_tall_coloured_timeline_and_tables_that_fit(demo_app, monkeypatch):
    from fer_core.inference import video

    stop = {"now": True}

    def fake(data, name, model, classes, **kwargs):
        if stop["now"]:  # the run ends here: the page as it is while the analysis runs
            import streamlit as st

            st.stop()
        return _video_result(classes, name), b"not really a webm"

    monkeypatch.setattr(video, "analyse_video_bytes", fake)
    monkeypatch.setattr(video, "probe_video", lambda data, name, fps=2.0: (2.0, None))
    at = AppTest.from_file(PREDICT, default_timeout=TIMEOUT)
    at.session_state["pr_mode"] = "A video"
    at.run()
    at.file_uploader(key="pr_video").set_value(("clip-for-issue-51.mp4", b"fake video bytes", "video/mp4")).run()
    (go,) = [b for b in at.button if b.label == "Analyse the video"]
    assert not go.disabled
    go.click().run()
    assert not at.exception
    (busy,) = [b for b in at.button if b.label == "Analyse the video"]  # one button, greyed out, the same widget
    assert busy.disabled and busy.key == "pr_video_go" and "pr_video_cancel" in [b.key for b in at.button]

    stop["now"] = False
    at.select_slider(key="pr_fps").set_value(5.0).run()
    at.button(key="pr_video_go").click().run()
    assert not at.exception and not at.error
    classes = list(at.session_state["pr_video_done"]["result"].classes)
    (chart,) = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    assert spec["height"] >= 150
    colour = spec["encoding"]["color"]
    assert colour["scale"] == {"domain": classes, "scheme": "tableau10"}  # one distinct colour per class
    # shown, and beside the plot: a legend below it took its height (Streamlit fits the chart in
    # its height, and the plot was left about 30 px)
    assert colour["legend"]["orient"] in ("right", "left")
    (table,) = at.dataframe
    assert list(table.value.columns) == ["track", "seen (s)", "frames", "mostly", "share of its frames"]
    assert table.value["share of its frames"][0] == f"{classes[0]} 50% · {classes[1]} 50%"
    widths = {name: c.get("width") for name, c in json.loads(table.proto.columns).items()}
    assert widths["share of its frames"] == "large" and widths["track"] == "small"


def test_photo_summary_table_keeps_the_confidence_in_view(demo_app):
    faces = {}
    for name, shade in (("a-photo-with-a-rather-long-file-name-from-a-phone.png", 60), ("b.png", 200)):
        buf = io.BytesIO()
        Image.new("L", (48, 48), shade).save(buf, "PNG")
        faces[name] = buf.getvalue()
    at = AppTest.from_file(PREDICT, default_timeout=TIMEOUT).run()
    at.selectbox(key="pr_model").set_value("fast")  # the shipped fast model: quick
    at.checkbox(key="pr_explain").uncheck()
    at.radio(key="pr_detect").set_value("never").run()
    at.file_uploader(key="pr_upload").set_value([(n, b, "image/png") for n, b in faces.items()]).run()
    assert not at.exception
    table = at.dataframe[-1]
    assert list(table.value.columns) == ["file", "face", "label", "confidence"]
    columns = json.loads(table.proto.columns)
    assert columns["confidence"]["width"] == "small" and columns["file"]["width"] == "large"


# --------------------------------------------------------------------- 3, 4. Explore's photo and map
def test_explore_takes_every_photo_type_predict_takes_and_formats_the_confidence(demo_app):
    at = AppTest.from_file(EXPLORE, default_timeout=TIMEOUT).run()
    assert not at.exception
    (chart,) = [c for c in at.get("vega_lite_chart") if '"confidence"' in c.proto.spec]
    tooltip = json.loads(chart.proto.spec)["encoding"]["tooltip"]
    (confidence,) = [t for t in tooltip if t.get("field") == "confidence"]
    assert confidence["format"] == ".1%" and confidence["type"] == "quantitative"
    at.radio(key="exl_how").set_value("upload a photo").run()
    uploader = at.file_uploader(key="exl_upload")
    assert uploader.allowed_type == [f".{t}" for t in PHOTO_TYPES]  # one list, Predict's
    buf = io.BytesIO()
    Image.new("L", (48, 48), 128).save(buf, "JPEG")
    uploader.set_value(("student.jfif", buf.getvalue(), "image/jpeg")).run()
    assert not at.exception and not at.error
    assert "the face (48x48)" in [i.proto.imgs[0].caption for i in at.get("image")]


# ----------------------------------------------------------------------------------- 6. Train
def test_train_estimate_includes_the_measured_start_up_and_the_job_link_is_short(demo_app, monkeypatch):
    from fer_core import jobs
    from fer_core.fmt import fmt_duration
    from fer_core.runs import rundir
    from fer_core.runs.trainconfig import TrainConfig
    from fer_core.training import trainer

    monkeypatch.setattr(trainer, "estimate_epoch", lambda cfg, n, v, k: {
        "epoch_seconds": 20.0, "step_seconds": 0.5, "steps_per_epoch": 40, "val_seconds": 0.0,
        "total_seconds": 84})
    at = AppTest.from_file(TRAIN, default_timeout=TIMEOUT).run()
    at.selectbox(key="tr_data").set_value("demo").run()
    at.button(key="tr_estimate").click().run()
    (info,) = [i.value for i in at.info if "per epoch" in i.value]
    assert f"epochs: about {fmt_duration(84)}**, plus the job's start-up" in info and "not measured on this server yet" in info

    with jobs.JobStore() as store:  # a job that ran here: 51 s from its start to its first epoch
        job_id = store.submit(TrainConfig.for_model("tiny", data="demo", epochs=3))
        (job,) = store.claim([0])
        rundir.update_info(job.run_dir, started=job.started + 51)
        store.finish(job_id, jobs.JobStatus.SUCCEEDED)
    at.button(key="tr_estimate").click().run()
    assert not at.exception
    (info,) = [i.value for i in at.info if "per epoch" in i.value]
    assert f"epochs: about {fmt_duration(84 + 51)}**, start-up included (51 s to import" in info
    assert f"on job {job_id} here" in info
    links = [m.value for m in at.markdown if "(./runs?" in m.value]
    assert links and all(m.startswith("[Its curves (Runs page)]") for m in links)
