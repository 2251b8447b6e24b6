"""Evaluation: metrics against hand-checked cases, filters, the cache, the CLI."""

import json
import os
import warnings

import numpy as np
import pytest

from fer_core.cli import main
from fer_core.data.loading import load_dataset
from fer_core.errors import DataError
from fer_core.inference.evaluate import EvalResult, compute_metrics, disagreements, evaluate_cached, select_predictions
from fer_core.inference.loader import load_model, resolve_model


def test_metrics_by_hand_including_a_class_never_predicted():
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UndefinedMetricWarning noise for class c
        m = compute_metrics(y_true, y_pred, ("a", "b", "c"))
    assert m["accuracy"] == pytest.approx(3 / 5) and m["num_images"] == 5
    assert m["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0) / 3)
    assert m["weighted_f1"] == pytest.approx((2 * 0.5 + 2 * 0.8) / 5)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def fake_result(proba, y_true, index=None):
    proba = np.asarray(proba, float)
    classes = ("a", "b", "c")
    y_true = np.asarray(y_true)
    return EvalResult(classes, "PrivateTest", "none", "m", y_true, proba,
                      np.arange(len(y_true)) if index is None else np.asarray(index),
                      compute_metrics(y_true, proba.argmax(1), classes))


def test_selecting_predictions():
    res = fake_result([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]], [0, 0, 0, 2])
    # predictions: a (0.9, right), b (0.7, wrong), a (0.4, right), c (0.8, right)
    assert list(select_predictions(res)) == [0, 3, 1, 2]
    assert list(select_predictions(res, descending=False)) == [2, 1, 3, 0]
    assert list(select_predictions(res, view="most confident mistakes")) == [1]
    assert list(select_predictions(res, view="least confident correct")) == [2, 3, 0]
    assert list(select_predictions(res, true=["a"], predicted=["a"])) == [0, 2]
    assert list(select_predictions(res, correct=True, confidence=(0.5, 0.85))) == [3]
    other = fake_result([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8]], [0, 0, 0, 2])
    assert list(disagreements(res, other)) == [1, 2]
    with pytest.raises(DataError, match="same images"):
        disagreements(res, fake_result(other.proba, other.y_true, index=[4, 5, 6, 7]))


def test_cache_is_reused_and_invalidated(trained_run, data_dir):
    ref = resolve_model(trained_run)
    ds = load_dataset("demo:30")
    loads = []

    def load(r):
        loads.append(r)
        return load_model(r)

    first, cached = evaluate_cached(ref, ds, "PublicTest", "none", load=load)
    assert not cached and len(loads) == 1 and first.metrics["num_images"] == 21
    again, cached = evaluate_cached(ref, ds, "PublicTest", "none", load=load)
    assert cached and len(loads) == 1 and again.metrics == first.metrics
    assert np.array_equal(again.proba, first.proba)
    assert list((trained_run / "eval").glob("*.npz"))  # stored in the run directory
    assert not evaluate_cached(ref, ds, "PublicTest", "flip", load=load)[1]  # other TTA
    assert not evaluate_cached(ref, load_dataset("demo:31"), "PublicTest", "none", load=load)[1]  # other data
    st = ref.path.stat()
    os.utime(ref.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # the model file changed
    assert not evaluate_cached(resolve_model(trained_run), ds, "PublicTest", "none", load=load)[1]
    assert len(loads) == 4


def test_cli_json(no_default_model, run_in_data, capsys):
    assert main(["evaluate", "--model", str(run_in_data), "--data", "demo", "--split", "PrivateTest", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"accuracy", "macro_f1", "weighted_f1", "classes", "per_class", "confusion_matrix", "num_images",
            "split", "model"} <= set(out)
    assert out["num_images"] == 350 and out["split"] == "PrivateTest" and len(out["classes"]) == 7
    assert sum(map(sum, out["confusion_matrix"])) == 350
    assert out["accuracy"] == pytest.approx(np.trace(out["confusion_matrix"]) / 350)
    assert out["accuracy"] > 0.5  # the tiny model learned the demo faces
    assert set(out["per_class"]["happy"]) == {"precision", "recall", "f1", "support"}
    # without --model: the newest finished run (no default model in a bare data dir); text output
    assert main(["evaluate", "--data", "demo", "--split", "PublicTest", "--tta", "tencrop"]) == 0
    assert "confusion matrix" in capsys.readouterr().out
    assert main(["evaluate", "--model", "/nonexistent.keras", "--data", "demo"]) == 2
    assert "no such model" in capsys.readouterr().err


def test_merged_classes(tmp_path, capsys):
    from fer_core.runs.trainconfig import TrainConfig
    from fer_core.training.trainer import train

    run = train(TrainConfig.for_model("tiny", data="demo:30", merge="disgust=angry", epochs=1), tmp_path / "merged")
    assert main(["evaluate", "--model", str(run), "--data", "demo:30", "--split", "PublicTest", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "disgust" not in out["classes"] and len(out["classes"]) == 6
    assert out["per_class"]["angry"]["support"] == 6  # 3 angry + 3 disgust faces


def test_corrupt_model_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["evaluate", "--model", str(bad), "--data", "demo:30"]) == 2
    assert "cannot load this model" in capsys.readouterr().err
