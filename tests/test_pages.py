"""AppTest runs of the home page and the Dataset page, with the demo set and the real set."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fer_core.config import Settings, save_settings
from fer_core.inference.forward import DEFAULT_TTA

TIMEOUT = 180
ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
DATASET = str(ROOT / "pages" / "dataset.py")


def test_home_page_says_what_is_active(demo_app, no_default_model):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    text = " ".join(m.value for m in at.info)
    assert "Demo data set" in text and "No trained model is available" in text


def test_home_page_links_to_the_dataset_page(demo_app):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/dataset.py").run()
    assert not at.exception
    assert at.title[0].value == "Dataset"


def test_dataset_page_demo_distribution_and_grid(demo_app):
    at = AppTest.from_file(DATASET, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    assert "3,500 images" in at.caption[0].value
    table = at.dataframe[0].value
    assert int(table.loc["total", "total"]) == 3500 and int(table.loc["happy", "Training"]) == 400
    # grid (48 per page) + 7 mean faces
    assert len(at.get("image")) == 48 + 7
    at.selectbox(key="grid_class").set_value("surprise").run()
    at.selectbox(key="grid_split").set_value("PublicTest").run()
    assert not at.exception
    labels = [b.label for b in at.button if b.key and b.key.startswith("face")]
    assert len(labels) == 48 and all(label.endswith(" surprise") for label in labels)
    assert at.number_input(key="grid_page").label == "Page (of 2)"  # 50 surprise faces in PublicTest
    at.number_input(key="grid_page").set_value(2).run()
    faces = [b for b in at.button if b.key and b.key.startswith("face")]
    assert len(faces) == 2
    faces[1].click().run()  # a thumbnail's label opens it large
    assert not at.exception
    index = faces[1].label.split()[0][1:]
    assert any(f"**Index** {index}" in m.value and "**Split** PublicTest" in m.value for m in at.markdown)
    assert len(at.get("image")) == 2 + 7 + 1  # the page of two, the mean faces, and the large one


def test_dataset_choice_shows_a_short_name_and_the_image_count(demo_app, tmp_path, monkeypatch):
    from PIL import Image

    root = tmp_path / "my-faces"
    for split, cls, n in (("train", "happy", 3), ("test", "sad", 2)):
        (root / split / cls).mkdir(parents=True)
        for k in range(n):
            Image.new("L", (48, 48), 40 * k).save(root / split / cls / f"{k}.png")
    monkeypatch.setenv("FER2013_DIR", str(root))
    save_settings(Settings(data_source=str(root)))
    at = AppTest.from_file(DATASET, default_timeout=TIMEOUT).run()
    assert not at.exception
    (box,) = [b for b in at.sidebar.selectbox if b.label == "Data set"]
    assert box.options == ["my-faces · 5 images"] and box.value == str(root)
    assert str(root) in [c.value for c in at.sidebar.caption]  # the full path under the short name


def test_dataset_page_use_as_active(demo_app):
    save_settings(Settings(data_source="/nowhere"))
    at = AppTest.from_file(DATASET, default_timeout=TIMEOUT).run()
    assert not at.exception
    at.radio(key="source_kind").set_value("Demo data set").run()
    at.button[0].click().run()
    assert "Saved" in at.success[0].value


def test_dataset_page_bad_path_shows_error_not_traceback(demo_app, tmp_path):
    (demo_app / "datasets").mkdir(parents=True, exist_ok=True)
    bad = demo_app / "datasets" / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n9,1 2 3,Training\n")
    at = AppTest.from_file(DATASET, default_timeout=TIMEOUT).run()
    at.radio(key="source_kind").set_value("Path").run()
    at.text_input[0].input(str(bad)).run()
    assert not at.exception
    assert "bad.csv" in at.error[0].value and "row 1" in at.error[0].value
    at.checkbox[0].check().run()
    assert not at.exception


def test_typed_paths_outside_the_allowed_folders_are_refused(demo_app, tmp_path):
    secret = tmp_path / "elsewhere" / "fer2013.csv"
    secret.parent.mkdir()
    secret.write_text("emotion,pixels,Usage\n")
    at = AppTest.from_file(DATASET, default_timeout=TIMEOUT).run()
    at.radio(key="source_kind").set_value("Path").run()
    for typed in (str(secret), str(demo_app / "datasets" / ".." / ".." / "elsewhere"), "/etc"):
        at.text_input[0].input(typed).run()
        assert not at.exception
        assert "outside the folders this server may read" in at.error[0].value, typed
        assert not at.dataframe  # nothing of it is shown


@pytest.mark.real_data
@pytest.mark.slow
def test_dataset_page_with_real_fer2013(real_data_dir, data_dir, monkeypatch):
    monkeypatch.setenv("FER2013_DIR", str(real_data_dir))
    home = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not home.exception and str(real_data_dir) in home.success[0].value
    at = AppTest.from_file(DATASET, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert int(table.loc["total", "total"]) == 35887
    assert int(table.loc["disgust", "PrivateTest"]) == 55
    at.selectbox(key="grid_class").set_value("disgust").run()
    assert not at.exception


TRAIN = str(ROOT / "pages" / "train.py")
RUNS = str(ROOT / "pages" / "runs.py")


def test_train_page_catches_bad_values_next_to_the_field(demo_app):
    at = AppTest.from_file(TRAIN, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    at.selectbox(key="tr_preset").set_value("study-c").run()  # a study preset fills the form
    assert at.session_state["tr_schedule"] == "inverse-time" and at.session_state["tr_lr_decay"] == 1e-4
    assert at.session_state["tr_optimizer"] == "sgd" and at.session_state["tr_learning_rate"] == 0.1
    assert not [w for w in at.number_input if w.key == "tr_width"]  # study-c has no width option
    assert not [w for w in at.slider if w.key == "tr_dropout"]  # nor a dropout rate of its own
    at.selectbox(key="tr_arch_choice").set_value("fer-vgg").run()
    at.number_input(key="tr_width").set_value(48).run()
    at.slider(key="tr_dropout").set_value(0.5).run()
    assert not at.error and not at.button(key="tr_submit").disabled
    at.selectbox(key="tr_arch_choice").set_value("Layer notation…").run()
    at.text_input(key="tr_notation").input("CBXP-F").run()
    assert "unknown letter 'X' at character 3" in at.error[0].value
    assert at.button(key="tr_submit").disabled
    at.text_input(key="tr_notation").input("CCP-CCP-FF").run()
    at.text_input(key="tr_conv_widths").input("8, 8, 8").run()
    assert "2 convolution block" in at.error[0].value
    at.text_input(key="tr_conv_widths").input("8, 8").run()
    assert not at.error and not at.button(key="tr_submit").disabled
    at.number_input(key="tr_learning_rate").set_value(0.0).run()
    assert "(0, 10]" in at.error[0].value and at.button(key="tr_submit").disabled
    at.number_input(key="tr_learning_rate").set_value(0.01).run()
    at.text_input(key="tr_init_from").input("no-such-run").run()
    assert "no-such-run: no such model file, run directory or run name" in at.error[0].value and at.button(key="tr_submit").disabled
    at.text_input(key="tr_init_from").input("").run()
    at.text_input(key="tr_teacher").input("no-such-teacher").run()  # distillation: the teacher must exist too
    assert "no-such-teacher: no such model" in at.error[0].value and at.button(key="tr_submit").disabled
    at.text_input(key="tr_teacher").input("default").run()
    assert not at.error and not at.button(key="tr_submit").disabled
    assert at.number_input(key="tr_temperature").value == 4.0 and at.slider(key="tr_soft_weight").value == 0.9


def test_train_page_submits_a_job_and_runs_page_shows_its_curves(demo_app):
    import time

    from fer_core import jobs
    from fer_core.runs.rundir import read_log

    at = AppTest.from_file(TRAIN, default_timeout=TIMEOUT).run()
    at.selectbox(key="tr_data").set_value("demo").run()
    at.number_input(key="tr_epochs").set_value(2).run()
    at.text_input(key="tr_run_name").set_value("first-try")
    at.text_input(key="tr_note").set_value("two epochs to see the curves").run()
    # the job's worker trains under JAX (CI installs it): the form's backend reaches the worker
    backend = "jax" if "jax" in at.selectbox(key="tr_backend").options or os.environ.get("FER_REQUIRE_DATA") else ""
    at.selectbox(key="tr_backend").set_value(backend).run()
    at.button(key="tr_submit").click().run()
    assert not at.exception and not at.error
    assert any("**Job 1**" in m.value for m in at.markdown)  # shown at once
    store = jobs.JobStore()
    deadline = time.time() + TIMEOUT
    while store.get(1).status not in jobs.ENDED and time.time() < deadline:
        jobs.schedule(store)
        time.sleep(1)
    assert store.get(1).status == jobs.JobStatus.SUCCEEDED, read_log(store.get(1).run_dir)
    info = json.loads((Path(store.get(1).run_dir) / "run.json").read_text())
    assert info["backend"] == (backend or "tensorflow") and store.get(1).config["backend"] == backend
    at.run()
    assert any("`succeeded`" in m.value for m in at.markdown)
    assert any("[Its curves (Runs page)](./runs?run=first-try)" in m.value for m in at.markdown)  # job -> run

    runs = AppTest.from_file(RUNS, default_timeout=TIMEOUT)
    runs.query_params["run"] = "first-try"
    runs.run()
    assert not runs.exception and not runs.warning
    assert runs.multiselect(key="runs_chosen").value == ["first-try"]
    assert runs.dataframe[0].value.loc[0, "status"] == "succeeded"
    assert runs.dataframe[0].value.loc[0, "note"] == "two epochs to see the curves"
    assert any(m.value == "**first-try**: two epochs to see the curves" for m in runs.markdown)
    assert any("[Job 1 on the Train page](./train?job=1)" in m.value for m in runs.markdown)  # run -> job
    # the run's loss, accuracy and learning rate; the groups' accuracy and loss; the shipped model's loss and accuracy
    assert len(runs.get("vega_lite_chart")) == 7
    assert any("learned each face" in t.label for t in runs.toggle)  # its training dynamics, on request
    lines = json.loads(runs.get("vega_lite_chart")[0].proto.spec)["layer"][0]
    assert lines["mark"]["type"] == "line"  # the legend of training/validation draws their dashes, not dots
    assert lines["encoding"]["strokeDash"]["legend"]["symbolType"] == "stroke"
    table = runs.dataframe[0]
    assert list(table.proto.column_order)[:3] == ["run", "status", "note"]  # the telling columns first
    (study,) = [d.value for d in runs.dataframe if "kind" in d.value.columns]
    assert list(study["kind"]) == ["published", "published", "shipped model", "shipped fast model", "your run"]
    assert study["architecture"][4] == "CP-CP-CP-F" and study["test accuracy"][0] == 0.727
    (summary,) = [d.value for d in runs.dataframe if "last epoch" in d.value.columns]
    assert set(summary["last epoch"]) == {2}
    labels = [b.label for b in runs.get("download_button")]
    assert any("metrics (CSV)" in b for b in labels) and any("model.keras" in b for b in labels)


EVALUATE = str(ROOT / "pages" / "evaluate.py")


def _count(at) -> int:
    """The '<N> images; showing <M>.' captions of the galleries."""
    return [int(c.value.split()[0].replace(",", "")) for c in at.caption if "images; showing" in c.value]


def test_evaluate_page_matrix_report_gallery_and_filters(demo_app, no_default_model, run_in_data):
    at = AppTest.from_file(EVALUATE, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "350" and float(metrics["Accuracy"].rstrip("%")) > 50
    assert len(at.get("vega_lite_chart")) == 2  # confusion matrix + per-class bars
    assert at.selectbox(key="ev_tta").value == DEFAULT_TTA  # as the CLI and the model card
    report = at.dataframe[0].value
    assert list(report.index[-2:]) == ["macro avg", "weighted avg"] and len(report) == 9
    everything = _count(at)[-1]
    assert everything == 350 and len(at.get("image")) > 0
    at.selectbox(key="ev_view").set_value("most confident mistakes").run()
    mistakes = _count(at)[-1] if _count(at) else 0
    assert mistakes == round(350 * (1 - float(metrics["Accuracy"].rstrip("%")) / 100))
    at.selectbox(key="ev_view").set_value("all").run()
    # a class the model gets partly right (the most often wrong of them), so that both outcomes hold faces
    per_class = report.iloc[:-3] if "accuracy" in report.index else report.iloc[:-2]
    recalls = per_class["recall"].astype(float)
    partly = recalls[(recalls > 0) & (recalls < 1)]
    assert len(partly), f"no class the fixture model gets partly right: nothing to filter ({recalls.to_dict()})"
    worst = partly.idxmin()
    support, recall = int(per_class.loc[worst, "support"]), float(per_class.loc[worst, "recall"])
    at.multiselect(key="ev_true").select(worst).run()
    assert _count(at)[-1] == support  # every face of that class in PrivateTest
    at.radio(key="ev_outcome").set_value("correct").run()
    right = _count(at)[-1]
    assert right == round(recall * support) > 0
    at.radio(key="ev_outcome").set_value("wrong").run()
    assert _count(at)[-1] == support - right > 0
    # the cell picker: true and predicted that class holds exactly its correct faces
    at.selectbox(key="ev_cell_true").set_value(worst).run()
    at.selectbox(key="ev_cell_pred").set_value(worst).run()
    assert _count(at)[0] == right
    assert not at.exception
    assert any(b.label.startswith("Download the predictions") for b in at.get("download_button"))


def test_evaluate_page_compares_two_runs(demo_app, no_default_model, run_in_data):
    import shutil

    shutil.copytree(run_in_data, run_in_data.parent / "tiny-copy")
    at = AppTest.from_file(EVALUATE, default_timeout=TIMEOUT).run()
    at.selectbox(key="ev_model").set_value(str(run_in_data)).run()
    at.selectbox(key="ev_other").set_value(str(run_in_data.parent / "tiny-copy")).run()
    assert not at.exception and not at.error
    assert any("They disagree on **0** images" in m.value for m in at.markdown)  # the same weights


PREDICT = str(ROOT / "pages" / "predict.py")


def test_predict_page_with_an_uploaded_photo_and_a_bad_file(demo_app, no_default_model, run_in_data):
    import io

    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(buf, "JPEG")
    at = AppTest.from_file(PREDICT, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="pr_tta").value == DEFAULT_TTA  # as the CLI and the model card
    at.file_uploader(key="pr_upload").set_value([("astronaut.jpg", buf.getvalue(), "image/jpeg"),
                                                 ("broken.png", b"\x89PNG not really", "image/png")]).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["broken.png: not an image file PIL can read (JPEG, PNG, WebP, BMP, GIF...)."]
    faces = [m.value for m in at.markdown if m.value.startswith("**Face")]
    assert len(faces) == 1 and "box [17" in faces[0]
    assert len(at.get("vega_lite_chart")) == 1  # the probability bars
    import json

    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    layers = spec["layer"]
    axis = layers[0]["encoding"]["y"]["axis"]
    assert axis["labelOverlap"] is False and spec["height"] >= 7 * 20  # every class name has room to show
    assert layers[1]["mark"]["type"] == "text"  # the winner's share is written on its bar
    captions = [i.proto.imgs[0].caption for i in at.get("image")]
    assert captions[0] == "1 face(s), found by YuNet" and captions[1].startswith("face 1: what the model saw")
    assert captions[2].startswith("Grad-CAM for")  # the saliency overlay
    at.checkbox(key="pr_explain").uncheck().run()
    assert len(at.get("image")) == 2


def test_predict_page_example_faces(demo_app, no_default_model, run_in_data):
    at = AppTest.from_file(PREDICT, default_timeout=TIMEOUT).run()
    at.button[0].click().run()  # "Try it" on the first drawn face
    assert not at.exception and not at.error
    faces = [m.value for m in at.markdown if m.value.startswith("**Face")]
    assert len(faces) == 1 and "box [0, 0, 48, 48]" in faces[0]  # a face crop: no detection


def test_comparing_models_trained_on_different_data_says_so(demo_app, run_in_data):
    """A run trained on the demo cartoons beside the shipped model (FER2013): a warning, since
    their validation accuracies measure different things; two runs on the same data: none."""
    import shutil

    at = AppTest.from_file(EVALUATE, default_timeout=TIMEOUT).run()
    at.selectbox(key="ev_model").set_value(str(run_in_data)).run()
    at.selectbox(key="ev_other").set_value("default").run()
    assert not at.exception and not at.error
    warned = [w.value for w in at.warning if "trained on different data" in w.value]
    assert len(warned) == 1 and "on demo" in warned[0] and "on FER2013" in warned[0]
    assert "/" not in warned[0]  # names data sets, never a path on the server
    shutil.copytree(run_in_data, run_in_data.parent / "same-data")
    at.selectbox(key="ev_other").set_value(str(run_in_data.parent / "same-data")).run()
    assert not any("trained on different data" in w.value for w in at.warning)


def test_predict_page_analyses_an_uploaded_video(demo_app, no_default_model, run_in_data, tmp_path):
    import cv2
    import numpy as np

    skimage_data = pytest.importorskip("skimage.data")
    frame = cv2.resize(cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR), (320, 240))
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(10):
        writer.write(np.roll(frame, i, axis=1))
    writer.release()
    at = AppTest.from_file(PREDICT, default_timeout=TIMEOUT).run()
    at.radio(key="pr_mode").set_value("A video").run()
    at.file_uploader(key="pr_video").set_value(("broken.mp4", b"no video here" * 20, "video/mp4")).run()
    at.button(key="pr_video_go").click().run()
    assert not at.exception and "broken.mp4: cannot be read as a video" in at.error[0].value
    at.file_uploader(key="pr_video").set_value(("clip.avi", clip.read_bytes(), "video/x-msvideo"))
    at.select_slider(key="pr_fps").set_value(5.0).run()
    at.button(key="pr_video_go").click().run()
    assert not at.exception and not at.error
    assert len(at.get("video")) == 1  # the annotated WebM
    assert any("5 frames analysed over 0.8 s (5 per second) · 1 face track(s), found by YuNet" in c.value
               for c in at.caption)
    (table,) = at.dataframe
    assert list(table.value["track"]) == [1] and table.value["frames"][0] == 5
    assert len(at.get("vega_lite_chart")) == 1  # the track's timeline
    assert {b.label for b in at.get("download_button")} == {"Annotated video (WebM)", "Results (JSON)"}
    at.checkbox(key="pr_explain").uncheck().run()  # any rerun shows the kept result: no second analysis
    assert len(at.get("video")) == 1 and "pr_video_go" not in [b.key for b in at.button]
    at.select_slider(key="pr_fps").set_value(10.0).run()  # another rate: analyse again when asked
    assert len(at.get("video")) == 0 and "pr_video_go" in [b.key for b in at.button]


def test_train_page_estimates_the_time_per_epoch_and_counts_the_forms_parameters(demo_app):
    from fer_core.models.build import create_model

    at = AppTest.from_file(TRAIN, default_timeout=TIMEOUT).run()
    at.selectbox(key="tr_data").set_value("demo").run()
    at.slider(key="tr_crop").set_value(40).run()
    expected = create_model("tiny", 7, crop=40).count_params()
    assert f"{expected:,} parameters at this 40x40 crop" in [c.value for c in at.caption]  # the form's own
    at.button(key="tr_estimate").click().run()
    assert not at.exception and not at.error
    (info,) = [i for i in at.info if "per epoch" in i.value]
    batch = at.number_input(key="tr_batch_size").value
    steps = -(-2800 // batch)  # the demo set's 2,800 Training faces
    assert "per epoch**" in info.value and f"{steps:,} steps of {batch} faces" in info.value
    assert "this server's backend" not in info.value
    if "jax" in at.selectbox(key="tr_backend").options or os.environ.get("FER_REQUIRE_DATA"):
        at.selectbox(key="tr_backend").set_value("jax").run()  # a job under JAX: measured here under TensorFlow
        at.button(key="tr_estimate").click().run()
        (info,) = [i for i in at.info if "per epoch" in i.value]
        assert "Measured under tensorflow, this server's backend: the job trains under jax" in info.value
    at.number_input(key="tr_epochs").set_value(3).run()
    assert not [i for i in at.info if "per epoch" in i.value]
    assert "The form changed since the last estimate." in [c.value for c in at.caption]


def test_runs_page_shows_how_the_shipped_model_learned(demo_app, run_in_data):
    from fer_core.training.catalog import shipped_histories

    history = shipped_histories()
    assert history and all(len(run.metrics) >= 10 for run in history)  # the member trained for this release
    at = AppTest.from_file(RUNS, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("How the shipped model learned" in t.label for t in at.tabs)
    assert len(at.get("vega_lite_chart")) == 7  # the chosen run's 3, the groups' 2, then the shipped model's 2


def test_runs_page_without_runs_still_shows_every_member_of_the_shipped_model(demo_app):
    """Regression: with no runs the page said "No runs yet" and stopped, hiding how the shipped model
    learned; and it showed two of the default model's three members (the first one's history was not
    kept): every member is listed now, with what is known of it."""
    from fer_core.runs.model_folder import read_model_metrics
    from fer_core.inference.loader import DEFAULT_MODEL_DIR

    at = AppTest.from_file(RUNS, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "No runs yet" in at.info[0].value and "appears here by itself" in at.info[0].value
    assert "How the shipped model learned" in [s.value for s in at.subheader]
    assert len(at.get("vega_lite_chart")) == 2  # the members' loss and accuracy
    members = [m["name"] for m in read_model_metrics(DEFAULT_MODEL_DIR)["members"]]
    (table,) = [d.value for d in at.dataframe if "member" in d.value]
    assert table["member"].tolist() == members and len(members) == 3
    assert table["history"].tolist() == [False, True, True]
    assert any(members[0] in c.value and "No per-epoch history" in c.value for c in at.caption)


def test_runs_page_lists_a_queued_job_before_its_run_folder_exists(demo_app, monkeypatch):
    """Regression: a second job never appeared in "All runs (1)": a queued job has no run folder yet.
    (Seen from a read-only server, which starts nothing: the job stays queued.)"""
    from fer_core import jobs
    from fer_core.runs.trainconfig import TrainConfig

    holder = type("Holder", (jobs.Runner,), {"slots": lambda self: [], "alive": lambda self, job: True,
                                 "stop": lambda self, job: None})()
    with jobs.JobStore() as store:
        job = jobs.submit(TrainConfig.for_model("tiny", data="demo:30", epochs=1), store, holder)
    monkeypatch.setenv("FER_READ_ONLY", "1")
    at = AppTest.from_file(RUNS, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "All runs (1)" in [s.value for s in at.subheader]
    table = at.dataframe[0].value
    assert table["status"].tolist() == ["queued"] and table["job"].tolist() == [job]


def test_two_copies_of_fer2013_are_the_same_data():
    """Regression: two FER2013 models (a CSV and an image folder) were said to be trained on
    different data, with a server path in the message."""
    from fer_core.data.loading import data_identity

    assert data_identity("/srv/a/fer2013") == data_identity("/home/b/fer2013.csv") == "FER2013"
    assert data_identity("/x/icml_face_data.csv.gz") == "FER2013"
    assert data_identity("demo") == "demo" != data_identity("demo:30")
    assert data_identity("/data/affectnet") != data_identity("/data/fer2013")
