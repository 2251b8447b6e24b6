"""Explore: the embedding map, one face layer by layer, occlusion and what-if, training dynamics;
from the CLI, the core functions and the page."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from fer_core.cli import main
from fer_core.data.demo import make_demo_dataset
from fer_core.inference import explain, explore
from fer_core.inference.forward import predict_proba
from fer_core.runs import rundir
from fer_core.runs.trainconfig import TrainConfig
from fer_core.training.dynamics import read_dynamics, sample_indices
from fer_core.training.trainer import train

ROOT = Path(__file__).resolve().parent.parent
EXPLORE = str(ROOT / "pages" / "explore.py")


@pytest.fixture(scope="module")
def demo():
    return make_demo_dataset(per_class=25, seed=4)


def test_embed_cli_on_the_demo_set_gives_one_point_per_face(demo_app, capsys):
    assert main(["explore", "embed", "--data", "demo:30", "--split", "Training", "--method", "pca", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"] == "pca" and doc["split"] == "Training"
    from fer_core.data.loading import load_dataset

    n = len(doc["points"])
    assert n == len(load_dataset("demo:30").subset("Training"))  # every face of the split, once
    assert sorted(p["index"] for p in doc["points"]) == list(range(n))
    assert all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 and 0 <= p["confidence"] <= 1 for p in doc["points"])
    assert {p["true"] for p in doc["points"]} <= {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert 0 <= doc["knn_accuracy_2d"] <= 1 and 0 <= doc["knn_accuracy_full"] <= 1
    with pytest.raises(SystemExit):  # argparse: a layout it does not offer
        main(["explore", "embed", "--data", "demo:30", "--method", "umap"])
    assert main(["explore", "embed", "--data", "demo:30", "--split", "Nope"]) == 2


def test_features_of_fer2013_keep_the_classes_apart(real_data_dir, capsys):
    """On 500 real PublicTest faces the shipped model's features put most faces among their own
    class (far above chance, 1/7), and the t-SNE map keeps much of it; the sample is fixed."""
    argv = ["explore", "embed", "--data", str(real_data_dir), "--method", "tsne", "--sample", "500", "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["points"]) == 500 and doc["split"] == "PublicTest" and doc["method"] == "tsne"
    assert doc["knn_accuracy_full"] > 0.55, doc["knn_accuracy_full"]
    assert doc["knn_accuracy_2d"] > 0.4, doc["knn_accuracy_2d"]
    index = [p["index"] for p in doc["points"]]
    assert index == sorted(set(index)) and index[-1] < 3589
    assert main([*argv[:5], "pca", *argv[6:]]) == 0  # another layout, the same faces
    assert [p["index"] for p in json.loads(capsys.readouterr().out)["points"]] == index


def test_features_from_several_threads_match_one_at_a_time(shipped, demo):
    """The feature models are cached per model for the whole server: sessions share them."""
    _, model = shipped
    batches = [demo.images[i * 20:(i + 1) * 20] for i in range(6)]
    alone = [explore.features(model, b) for b in batches]
    together = [None] * len(batches)

    def run(i):
        together[i] = explore.features(model, batches[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together):
        assert b is not None and np.allclose(a, b, atol=1e-5)
    assert alone[0].shape[0] == 20 and alone[0].shape[1] > 64  # the members' features side by side


def test_layers_cli_for_a_photo(shipped, tmp_path, capsys):
    from skimage import data as skimage_data

    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    assert main(["explore", "layers", str(photo), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["layers"]) >= 4
    for layer in doc["layers"]:
        assert len(layer["shape"]) == 3 and layer["top_channels"]
        first = np.asarray(layer["top_channels"][0]["map"])
        assert first.shape == tuple(layer["shape"][:2]) and 0 <= first.min() and first.max() <= 1
        means = [c["mean"] for c in layer["top_channels"]]
        assert means == sorted(means, reverse=True)  # the most active first
    assert len(doc["first_filters"]) > 0 and np.asarray(doc["first_filters"][0]).ndim == 2
    assert sum(doc["probabilities"]) == pytest.approx(1, abs=1e-3)
    assert np.argmax(doc["probabilities"]) == np.argmax(doc["logits"])
    capsys.readouterr()
    assert main(["explore", "layers", str(tmp_path / "missing.png")]) == 2


def test_occlusion_finds_what_matters(shipped, real_data_dir):
    """Covering where the occlusion map is hottest costs the predicted class more than covering
    where it is coldest, on real faces: the map says something true about the model."""
    from fer_core.data.images import read_face

    _, model = shipped
    paths = sorted((real_data_dir / "test" / "happy").iterdir())[:12]
    wins = 0
    for path in paths:
        face = read_face(path)
        heat, note = explain.occlusion(model, face)
        if heat is None:
            assert note
            continue
        assert heat.shape == (48, 48) and heat.max() == pytest.approx(1) and heat.min() >= 0
        target = int(predict_proba(model, face[None])[0].argmax())
        spots = [(y, x) for y in range(0, 41, 4) for x in range(0, 41, 4)]
        score = [heat[y:y + 8, x:x + 8].mean() for y, x in spots]
        hot, cold = spots[int(np.argmax(score))], spots[int(np.argmin(score))]
        probs = []
        for y, x in (hot, cold):
            covered = face.copy()
            covered[y:y + 8, x:x + 8] = explain.GREY
            probs.append(predict_proba(model, covered[None])[0, target])
        wins += probs[0] < probs[1]
    assert wins >= 10, wins


def test_what_if_edits_and_their_probabilities(shipped, demo):
    _, model = shipped
    face = demo.images[0]
    out = explore.what_if(model, face)
    assert list(out) == ["as it is", *explore.EDITS]
    assert np.allclose(out["as it is"], predict_proba(model, face[None])[0], atol=1e-5)
    assert np.allclose(explore.edit(face, "mirror"), face[:, ::-1])
    assert (explore.edit(face, "cover the upper half")[:24] == explain.GREY).all()
    assert (explore.edit(face, "cover the lower half")[:24] == face[:24]).all()
    for p in out.values():
        assert p.shape == (7,) and p.sum() == pytest.approx(1, abs=1e-4)
    with pytest.raises(Exception, match="Unknown edit"):
        explore.edit(face, "paint it blue")


def test_everything_the_page_shows_of_one_face_in_one_typed_view(shipped, demo):
    _, model = shipped
    face = demo.images[0]
    views = explore.face_views(model, face)
    assert isinstance(views, explore.FaceViews)
    target = int(np.argmax(views.proba))
    assert np.allclose(views.proba, views.what_if["as it is"]) and list(views.what_if) == ["as it is", *explore.EDITS]
    assert sum(views.layers["probabilities"]) == pytest.approx(1, abs=1e-3)  # its first member, layer by layer
    for heat, note in (views.gradcam, views.occlusion):  # each a map, or none and why
        assert (heat is None) != (note is None)
        assert heat is None or (heat.shape == (48, 48) and heat.max() == pytest.approx(1))
    assert views.occlusion[0] is None or np.allclose(views.occlusion[0], explain.occlusion(model, face, target)[0])


def test_predict_explain_json_has_occlusion(shipped, tmp_path, capsys):
    from skimage import data as skimage_data

    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    assert main(["predict", str(photo), "--json", "--explain", "--tta", "none"]) == 0
    face = json.loads(capsys.readouterr().out)[0]["faces"][0]
    occ = np.asarray(face["occlusion"])
    assert occ.shape == (48, 48) and occ.max() == pytest.approx(1, abs=1e-3) and "occlusion_note" not in face
    assert np.asarray(face["gradcam"]).shape == (48, 48)


def test_training_records_dynamics_and_the_cli_maps_them(data_dir, capsys):
    run = train(TrainConfig.for_model("tiny", data="demo", epochs=4), data_dir / "runs" / "dyn")
    found = read_dynamics(run)
    num_train = rundir.read_info(run)["num_train"]
    assert list(found.epochs) == [1, 2, 3, 4]
    assert found.probabilities.shape == (4, min(num_train, 2000))
    assert np.array_equal(found.index, sample_indices(num_train))
    assert "dynamics_seconds" in rundir.read_metrics(run)[0]
    assert main(["explore", "dynamics", str(run), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["epochs"] == 4 and len(doc["faces"]) == len(found.index)
    assert sum(doc["regions"].values()) == len(doc["faces"])
    for f in doc["faces"]:
        assert 0 <= f["confidence"] <= 1 and 0 <= f["variability"] <= 1 and 0 <= f["correctness"] <= 1
        assert f["true"] in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    # a run that learned (about 90% on the demo set): more followed faces easy to learn than hard
    assert doc["regions"]["easy"] > doc["regions"]["hard"]
    # rows past the committed epoch (a crash between the two writes) are never read
    assert list(read_dynamics(run, up_to=2).epochs) == [1, 2]
    # deleting the run removes the dynamics too (it is one of the run's own files)
    assert rundir.is_own_file(rundir.DYNAMICS)
    assert main(["explore", "dynamics", str(data_dir)]) == 2  # not a run


def test_resumed_run_keeps_one_row_per_epoch(tmp_path):
    cfg = TrainConfig.for_model("tiny", data="demo:30", epochs=2, learning_rate=0.01)
    run = train(cfg, tmp_path / "run")
    train(run_dir=run, resume=True, epochs=3)
    assert list(read_dynamics(run).epochs) == [1, 2, 3]


def test_explore_page_map_layers_why_and_dynamics(demo_app, capsys):
    train(TrainConfig.for_model("tiny", data="demo", epochs=3), demo_app / "runs" / "dyn-run")
    at = AppTest.from_file(EXPLORE, default_timeout=300).run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    knn = float(metrics["10-NN accuracy, all features"].rstrip("%"))
    assert 0 <= knn <= 100 and "10-NN accuracy on this map" in metrics
    assert {"easy to learn", "ambiguous", "hard to learn"} <= set(metrics)
    assert sum(int(metrics[k].replace(",", "")) for k in ("easy to learn", "ambiguous", "hard to learn")) > 0
    captions = [i.proto.imgs[0].caption for i in at.get("image")]
    assert "the face (48x48)" in captions  # layer by layer
    assert any(c.startswith("Grad-CAM:") for c in captions) and any(c.startswith("Occlusion:") for c in captions)
    assert len(at.get("vega_lite_chart")) == 3  # the map, the what-if bars, the cartography
    at.selectbox(key="ex_method").set_value("tsne").run()
    assert not at.exception
    at.multiselect(key="exw_edits").select("mirror").unselect("cover the eyes").run()
    assert not at.exception

    runs = AppTest.from_file(str(ROOT / "pages" / "runs.py"), default_timeout=300).run()
    assert not runs.exception and not {m.label for m in runs.metric} & {"easy to learn"}  # off until asked
    runs.toggle(key="runs_dyn_on_dyn-run").set_value(True).run()
    assert not runs.exception
    assert {"easy to learn", "ambiguous", "hard to learn"} <= {m.label for m in runs.metric}  # the same map there


def test_what_the_review_broke_is_refused_or_shown_right(data_dir, capsys):
    """Regressions: a damaged dynamics file, a sample under 3, a softmax after batch norm, a network
    without convolutions, duplicate faces in k-NN."""
    from fer_core.models.build import create_model

    run = train(TrainConfig.for_model("tiny", data="demo:30", epochs=1), data_dir / "runs" / "r")
    good = (run / rundir.DYNAMICS).read_bytes()
    (run / rundir.DYNAMICS).write_bytes(good[:300])  # cut short: not a zip any more
    assert read_dynamics(run) is None
    assert main(["explore", "dynamics", str(run)]) == 2 and "no training dynamics" in capsys.readouterr().err
    train(run_dir=run, resume=True, epochs=2)  # a resume records them anew
    assert list(read_dynamics(run).epochs) == [2]
    assert main(["explore", "embed", "--data", "demo:30", "--sample", "0"]) == 2
    face = make_demo_dataset(per_class=1, seed=2).images[0]
    for arch in ("CP-FBDFB", "FBDF"):  # the scores pass a batch norm before the softmax; no convolution at all
        model = create_model(arch, 7, conv_widths=[16])
        doc = explore.layers(model, face)
        assert np.allclose(doc["probabilities"], predict_proba(model, face[None])[0], atol=2e-3), arch
    assert explore.layers(create_model("FBDF", 7, conv_widths=[16]), face)["note"]
    x = np.repeat(np.random.default_rng(0).normal(size=(10, 4)), 2, axis=0)  # every point twice
    idx = explore.neighbours(x, 3)
    assert not (idx == np.arange(len(x))[:, None]).any()  # never its own neighbour, even beside its twin
