"""Batch-norm recalibration: exact statistics, dropout off, and the run-level keep-if-not-worse rule."""

import json
import shutil

import numpy as np
import pytest

from fer_core.cli import main
from fer_core.errors import ConfigError
from fer_core.runs import commands, rundir
from fer_core.runs.rundir import BN_RECORD as RECORD
from fer_core.training import calibrate
from fer_core.training.calibrate import recalibrate_bn, recalibrate_run
from fer_core.training.catalog import summarize


def _bn_model():
    import keras

    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    first = keras.layers.BatchNormalization(name="first")(x)
    dropped = keras.layers.Dropout(0.5)(first)
    second = keras.layers.BatchNormalization(name="second")(dropped)
    return keras.Model(inputs, [first, second])


def test_statistics_are_the_average_over_the_faces_with_dropout_off():
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (96, 48, 48), dtype=np.uint8)
    model = _bn_model()
    assert recalibrate_bn(model, faces, batch_size=32) == 2

    first = model.get_layer("first")
    x = faces / 255
    # the mean does not change with mirroring; equal batches weigh equally
    assert float(first.moving_mean.numpy()[0]) == pytest.approx(x.mean(), abs=1e-5)
    batch_vars = []
    order = np.random.default_rng(0).permutation(len(faces))
    for start in range(0, 96, 32):
        batch_vars.append(x[order[start:start + 32]].var())
    assert float(first.moving_variance.numpy()[0]) == pytest.approx(np.mean(batch_vars), rel=1e-3)
    # dropout was off: the second layer saw the normalised output of the first, variance about 1
    assert float(model.get_layer("second").moving_variance.numpy()[0]) == pytest.approx(1.0, abs=0.02)
    # the layers are as they were for training and saving
    assert first.momentum == 0.99 and model.layers[3].rate == 0.5


def test_a_model_without_batch_norm_is_left_alone():
    import keras

    inputs = keras.Input((48, 48, 1))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    before = [w.copy() for w in model.get_weights()]
    assert recalibrate_bn(model, np.zeros((4, 48, 48), np.uint8)) == 0
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.fixture(scope="module")
def bn_run(tmp_path_factory):
    """A small batch-norm network trained 2 epochs on the demo set: too few steps for batch norm's
    moving statistics (momentum 0.99) to settle, so the selected checkpoint is near chance."""
    from fer_core.training.trainer import train

    return train(_bn_config(recalibrate_bn=False), tmp_path_factory.mktemp("bn") / "bn-run")


def _bn_config(**changes):
    from fer_core.runs.trainconfig import TrainConfig

    return TrainConfig(data="demo", arch="CBCBP-CBP-FBD", conv_widths=[8, 16], dense_widths=[32], padding="same",
                       optimizer="adam", learning_rate=0.003, epochs=2, batch_size=32, crop=44, seed=0, **changes)


def test_training_recalibrates_at_the_end_by_default(tmp_path):
    from fer_core.training.trainer import train

    run = train(_bn_config(), tmp_path / "run")
    rec = json.loads((run / "run.json").read_text())[RECORD]
    assert rec["by"] == "train" and rec["layers"] == 4 and rec["tta"] == "none"
    assert rec["kept"] and rec["val_accuracy_after"] > rec["val_accuracy_before"] + 0.2
    assert not _same(run / "model.keras", rundir.checkpoint(run, "best"))
    assert summarize(run).row()["recalibrated val_acc"] == rec["val_accuracy_after"]


def _weights(path):
    import keras

    return keras.saving.load_model(path, compile=False).get_weights()


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_weights(a), _weights(b)))


def test_recalibrating_a_run_fixes_stale_statistics_and_records_it(bn_run, tmp_path):
    run = shutil.copytree(bn_run, tmp_path / "run")
    rec = recalibrate_run(run, tta="none", log=lambda *a: None)

    info = json.loads((run / "run.json").read_text())
    assert info[RECORD] == rec and info["status"] == "finished"  # the rest of run.json is kept
    assert rec["layers"] == 4 and rec["images"] == 2800 and rec["tta"] == "none"
    # the same weights with statistics of the clean faces: far better than the stale ones
    assert rec["kept"] and rec["val_accuracy_after"] > rec["val_accuracy_before"] + 0.2
    assert not _same(run / "model.keras", rundir.checkpoint(run, "best"))  # the checkpoint itself is untouched


def test_a_worse_recalibration_is_not_kept(bn_run, tmp_path, monkeypatch):
    run = shutil.copytree(bn_run, tmp_path / "run")
    recalibrate_run(run, tta="none", log=lambda *a: None)
    shutil.copy(run / "model.keras", rundir.checkpoint(run, "best"))  # a checkpoint whose statistics are already right
    real = calibrate.recalibrate_bn

    def ruin(model, images, **kw):  # statistics far off: accuracy falls
        n = real(model, images, **kw)
        for layer in model.layers:
            if hasattr(layer, "moving_mean"):
                layer.moving_mean.assign(layer.moving_mean + 50.0)
        return n

    monkeypatch.setattr(calibrate, "recalibrate_bn", ruin)
    rec = recalibrate_run(run, tta="none", log=lambda *a: None)
    assert not rec["kept"] and rec["val_accuracy_after"] < rec["val_accuracy_before"]
    assert _same(run / "model.keras", rundir.checkpoint(run, "best"))

    monkeypatch.setattr(calibrate, "recalibrate_bn", lambda model, images, **kw: 4)  # changes nothing: not worse
    again = recalibrate_run(run, tta="none", log=lambda *a: None)
    assert again["kept"] and again["val_accuracy_after"] == again["val_accuracy_before"] == rec["val_accuracy_before"]


def test_an_unfinished_run_is_refused_with_what_to_do(bn_run, tmp_path):
    run = shutil.copytree(bn_run, tmp_path / "run")
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "stopped"}))
    with pytest.raises(ConfigError, match="recalibrate a finished run; this one is stopped.*--resume"):
        recalibrate_run(run, log=lambda *a: None)
    with pytest.raises(ConfigError, match="not a run directory"):
        recalibrate_run(tmp_path / "nothing", log=lambda *a: None)


def test_cli_and_release_use_the_recalibrated_model(bn_run, tmp_path, capsys):
    from fer_core.shipping.release import release

    run = shutil.copytree(bn_run, tmp_path / "run")
    assert main(["recalibrate", str(run), "--tta", "none", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["kept"] and summarize(run).row()["recalibrated val_acc"] == rec["val_accuracy_after"]
    assert summarize(bn_run).row()["recalibrated val_acc"] is None

    # mark the recalibrated model so that the release can be seen to ship it, not best.keras
    import keras

    model = keras.saving.load_model(run / "model.keras", compile=False)
    bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    bn.moving_mean.assign(bn.moving_mean + 0.125)
    model.save(run / "model.keras")
    metrics = release(run, "demo", target=tmp_path / "default_model", log=lambda *a: None)
    shipped = _weights(tmp_path / "default_model" / "model.keras")
    # kernels ship rounded to float16 (fer_core.shipping.compact); batch-norm statistics exactly
    expected = [w.astype(np.float16).astype(np.float32) if w.ndim >= 2 else w for w in model.get_weights()]
    assert len(shipped) == len(expected) and all(np.array_equal(a, b) for a, b in zip(shipped, expected))
    assert metrics["bn_recalibration"]["kept"] and metrics["stages"][-1]["then"] == [commands.on_run("recalibrate", "run")]
    card = (tmp_path / "default_model" / "MODEL_CARD.md").read_text()
    assert commands.on_run("recalibrate", "run") in card and "batch-norm statistics were then re-estimated" in card


def test_recalibrating_a_model_without_batch_norm_says_so_in_text_and_json(run_in_data, capsys):
    """Regression: the tiny preset has no batch-norm layer; the CLI used to crash (KeyError) on
    the accuracies that are never measured for it."""
    assert main(["recalibrate", str(run_in_data), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["kept"] is False and rec["layers"] == 0 and "val_accuracy_before" not in rec
    assert main(["recalibrate", str(run_in_data)]) == 0
    assert "has no batch-norm layer" in capsys.readouterr().out
