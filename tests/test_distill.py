"""Knowledge distillation: the loss, the teacher's answers in the pipeline, a resumable run."""

import json

import numpy as np
import pytest

from fer_core.errors import ConfigError
from fer_core.inference.loader import load_model, resolve_model
from fer_core.runs.rundir import read_metrics
from fer_core.runs.trainconfig import TrainConfig
from fer_core.training.pipeline import make_input
from fer_core.training.trainer import train
from fer_core.training.validation import check_world

SMALL = "demo:30"


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    cfg = TrainConfig.for_model("tiny", data=SMALL, epochs=1, batch_size=32)
    return train(cfg, tmp_path_factory.mktemp("teacher") / "teacher")


def _probs(rows):
    p = np.asarray(rows, dtype="float32")
    return p / p.sum(axis=1, keepdims=True)


def test_the_loss_is_cross_entropy_without_soft_weight_and_zero_when_the_student_agrees():
    from fer_core.training.distill import distillation_loss, hard_label_accuracy  # imports Keras

    hard = np.eye(3, dtype="float32")[[0, 2]]
    teacher = _probs([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    student = _probs([[0.5, 0.25, 0.25], [0.1, 0.3, 0.6]])
    y = np.concatenate([hard, teacher], axis=1)
    ce = -np.log(student[[0, 1], [0, 2]]).mean()
    assert float(distillation_loss(3, 4.0, 0.0)(y, student)) == pytest.approx(ce, rel=1e-4)
    assert float(distillation_loss(3, 4.0, 1.0)(y, teacher)) == pytest.approx(0.0, abs=1e-5)
    # soft term: T^2 * KL(softmax(log t / T) || softmax(log s / T)), by hand
    t_ = 2.0
    soft = lambda p: np.exp(np.log(p) / t_) / np.exp(np.log(p) / t_).sum(1, keepdims=True)  # noqa: E731
    kl = (soft(teacher) * (np.log(soft(teacher)) - np.log(soft(student)))).sum(1).mean() * t_ ** 2
    assert float(distillation_loss(3, t_, 1.0)(y, student)) == pytest.approx(kl, rel=1e-4)
    assert float(distillation_loss(3, t_, 0.25)(y, student)) == pytest.approx(0.75 * ce + 0.25 * kl, rel=1e-4)
    acc = hard_label_accuracy(3)
    acc.update_state(y, _probs([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]))
    assert float(acc.result()) == pytest.approx(0.5)


def test_each_augmented_batch_carries_the_teachers_flip_averaged_answer_for_exactly_those_faces(teacher_run):
    teacher = load_model(resolve_model(str(teacher_run)))
    cfg = TrainConfig(data=SMALL, batch_size=16, flip=True, rotation=10, erase=0.5, translate=0.1)
    rng = np.random.default_rng(0)
    faces, labels = rng.integers(0, 256, (40, 48, 48), dtype=np.uint8), rng.integers(0, 7, 40)
    batches = list(make_input(faces, labels, cfg, 7, training=True, teacher=teacher))
    assert [b[1].shape[1] for b in batches] == [14, 14, 14] and sum(len(b[0]) for b in batches) == 40
    for x, y in batches:
        x, y = np.asarray(x), np.asarray(y)
        want = (np.asarray(teacher(x)) + np.asarray(teacher(x[:, :, ::-1])))/ 2
        np.testing.assert_allclose(y[:, 7:], want, atol=1e-5)
        assert np.isin(y[:, :7], (0.0, 1.0)).all() and (y[:, :7].sum(1) == 1).all()


def test_a_distilled_run_stops_resumes_and_leaves_a_student_that_loads_like_any_model(teacher_run, tmp_path):
    cfg = TrainConfig.for_model("mini-xception", data=SMALL, epochs=2, batch_size=32, teacher=str(teacher_run),
                                temperature=3.0, soft_weight=0.8, flip=True)
    done = []
    run = train(cfg, tmp_path / "student", on_epoch=lambda e, n, m: done.append(e), should_stop=lambda: len(done) >= 1)
    first = read_metrics(run)
    assert [r["epoch"] for r in first] == [1] and not (run / "model.keras").exists()
    train(run_dir=run, resume=True)
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0] == first[0]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[1])
    assert all(0 <= r["accuracy"] <= 1 and 0 <= r["val_accuracy"] <= 1 for r in rows)
    saved = json.loads((run / "config.json").read_text())
    assert (saved["teacher"], saved["temperature"], saved["soft_weight"]) == (str(teacher_run), 3.0, 0.8)
    student = load_model(resolve_model(str(run)))
    assert student.count_params() < load_model(resolve_model("default")).count_params()


def test_a_teacher_is_checked_like_any_model_the_config_names(teacher_run):
    with pytest.raises(ConfigError) as bad:
        check_world(TrainConfig.parse({"data": SMALL, "teacher": "no-such-run"}))
    assert "teacher" in bad.value.fields and "no-such-run" in bad.value.fields["teacher"]
    with pytest.raises(ConfigError) as bad:
        TrainConfig.parse({"data": SMALL, "teacher": str(teacher_run), "class_weight": "balanced", "soft_weight": 2,
                           "temperature": 0})
    assert {"class_weight", "soft_weight", "temperature"} <= set(bad.value.fields)
    cfg = TrainConfig.for_model("tiny", data=SMALL, merge="disgust=angry", epochs=1, teacher=str(teacher_run))
    with pytest.raises(ConfigError, match="7 classes; this run's data has 6") as err:
        train(cfg, teacher_run.parent / "merged")
    assert err.value.field == "teacher"
