"""Training engine: run directories, resume, schedules, the CLI."""

import json

import numpy as np
import pytest

from fer_core.cli import main
from fer_core.errors import ConfigError
from fer_core.runs import rundir
from fer_core.runs.rundir import read_metrics
from fer_core.runs.trainconfig import TrainConfig
from fer_core.training.pipeline import aug_strength, make_input
from fer_core.training.trainer import train

SMALL = "demo:30"  # 30 faces per class: 168 training, 21 validation images


def test_two_epoch_run_writes_a_complete_run_directory(tmp_path):
    cfg = TrainConfig.for_model("tiny", data=SMALL, epochs=2, batch_size=32, flip=True, erase=0.2)
    seen = []
    run = train(cfg, tmp_path / "run", on_epoch=lambda e, n, m: seen.append((e, n)))
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "metrics.jsonl", "state.json", "model.keras", "classes.json", "run.json",
            "versions.json", "last-e0002.keras"} <= names
    assert rundir.checkpoint(run, "best") is not None and not [n for n in names if ".tmp" in n]
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2] and seen == [(1, 2), (2, 2)]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds"} <= set(rows[0])
    # the config as given, with the backend it ran under filled in
    assert TrainConfig.load(run / "config.json") == TrainConfig.parse({**cfg.to_dict(), "backend": "tensorflow"})
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["epochs_done"] == 2 and "CPU" in info["device"]
    assert json.loads((run / "classes.json").read_text())[0] == "angry"


def test_stop_and_resume_continues_history_exactly(tmp_path):
    cfg = TrainConfig.for_model("tiny", data=SMALL, epochs=3, batch_size=16)
    done = []
    run = train(cfg, tmp_path / "run", on_epoch=lambda e, n, m: done.append(e), should_stop=lambda: len(done) >= 1)
    first = read_metrics(run)
    assert [r["epoch"] for r in first] == [1]
    assert json.loads((run / "run.json").read_text())["status"] == "stopped"
    assert not (run / "model.keras").exists()
    train(run_dir=run, resume=True)
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[0] == first[0]
    assert (run / "model.keras").exists()


def test_run_directory_is_not_overwritten(tmp_path):
    cfg = TrainConfig.for_model("tiny", data=SMALL, epochs=1)
    run = train(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg, run)


def test_schedules():
    from fer_core.training.keras_callbacks import scheduled_lr

    cos = TrainConfig(learning_rate=0.1, schedule="cosine", epochs=10, warmup_epochs=2)
    lrs = [scheduled_lr(cos, e) for e in range(10)]
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(0.1) and lrs[-1] < 0.01
    step = TrainConfig(learning_rate=0.1, schedule="step", step_epochs=3, step_gamma=0.5)
    assert [scheduled_lr(step, e) for e in (0, 3, 6)] == pytest.approx([0.1, 0.05, 0.025])
    assert scheduled_lr(TrainConfig(), 5) is None


def test_config_validation_names_fields():
    with pytest.raises(ConfigError, match="optimizer: one of sgd, adam, adamw.*epochs") as made:
        TrainConfig(optimizer="rmsprop", epochs=0)
    assert set(made.value.fields) == {"optimizer", "epochs"}
    with pytest.raises(ConfigError, match="Unknown training option"):
        TrainConfig.parse({"colour": 1})
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig.parse({"learning_rate": "fast"})
    with pytest.raises(ConfigError, match="set of named options"):  # config.json holding a list, say
        TrainConfig.parse([1, 2])
    pk = TrainConfig.for_model("pk-vgg")
    assert (pk.optimizer, pk.learning_rate, pk.momentum, pk.batch_size) == ("sgd", 0.1, 0.9, 128)


def test_balanced_class_weights():
    from fer_core.training.trainer import class_weights

    w = class_weights(np.array([0, 0, 0, 1]), 2)
    assert w[1] == pytest.approx(2.0) and w[0] == pytest.approx(4 / 6)


def test_cli_models_json(capsys):
    assert main(["models", "--json"]) == 0
    models = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert models["study-h"]["params"] == 397_287 and models["fer-vgg"]["description"]


def test_cli_train_and_resume(tmp_path, capsys):
    out = tmp_path / "cli-run"
    assert main(["train", "--data", SMALL, "--arch", "CCP-CCP-FF", "--epochs", "1", "--out", str(out),
                 "--set", "conv_widths=8,8", "--set", "dense_widths=16"]) == 0
    assert "best val_accuracy" in capsys.readouterr().out
    assert main(["train", "--resume", str(out)]) == 0
    assert len(read_metrics(out)) == 1
    assert main(["train", "--arch", "tiny", "--set", "nonsense=1"]) == 2


def test_same_config_and_seed_give_the_same_metrics(tmp_path):
    cfg = TrainConfig.for_model("tiny", data=SMALL, epochs=2, batch_size=32, flip=True, rotation=10,
                                translate=0.1, zoom=0.1, erase=0.5, seed=7)
    a = read_metrics(train(cfg, tmp_path / "a"))
    b = read_metrics(train(cfg, tmp_path / "b"))
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    assert [r[k] for r in a for k in keys] == pytest.approx([r[k] for r in b for k in keys], abs=1e-5)


def test_inverse_time_schedule_is_keras2_decay_per_iteration(tmp_path):
    # 168 training images, batch 32: 6 iterations per epoch
    cfg = TrainConfig.for_model("tiny", data=SMALL, epochs=2, batch_size=32, optimizer="sgd",
                                learning_rate=0.1, schedule="inverse-time", lr_decay=0.01)
    rows = read_metrics(train(cfg, tmp_path / "run"))
    assert [r["lr"] for r in rows] == pytest.approx([0.1 / (1 + 0.01 * 6), 0.1 / (1 + 0.01 * 12)])
    study_c = TrainConfig.for_model("study-c")
    assert (study_c.schedule, study_c.lr_decay, study_c.weight_decay) == ("inverse-time", 1e-4, 0.0)
    with pytest.raises(ConfigError, match="warmup_epochs"):
        TrainConfig(schedule="inverse-time", warmup_epochs=1, epochs=5)


def test_plateau_schedule_resumes_its_patience(tmp_path):
    cfg = TrainConfig.for_model("tiny", data=SMALL, epochs=3, batch_size=32, schedule="plateau",
                                plateau_patience=1, learning_rate=1e-9)  # nothing improves after epoch 1
    done = []
    run = train(cfg, tmp_path / "run", on_epoch=lambda e, n, m: done.append(e), should_stop=lambda: len(done) >= 2)
    rows = read_metrics(run)
    assert len(rows) == 2
    train(run_dir=run, resume=True)
    rows = read_metrics(run)
    # with a rate of 1e-9 the score never moves, so with patience 1 every epoch after the first
    # halves the rate; a fresh plateau counter after the resume would skip the cut after epoch 3
    assert rows[0]["val_accuracy"] == rows[1]["val_accuracy"] == rows[2]["val_accuracy"]
    assert [r["lr"] for r in rows] == pytest.approx([1e-9, 0.5e-9, 0.25e-9], rel=1e-3)


@pytest.mark.real_data
@pytest.mark.slow
def test_small_slice_of_real_data_learns_above_chance(real_data_dir, tmp_path):
    from fer_core.data.loading import load_dataset, write_csv

    real = load_dataset(real_data_dir)
    rng = np.random.default_rng(0)
    keep = np.zeros(len(real), bool)
    for split, n in (("Training", 6000), ("PublicTest", 1000)):
        keep[rng.choice(np.flatnonzero(real.splits == split), n, replace=False)] = True
    part = real.select(keep)
    path = write_csv(part, tmp_path / "slice.csv")
    cfg = TrainConfig.for_model("tiny", data=str(path), epochs=4, batch_size=64, seed=0)
    rows = read_metrics(train(cfg, tmp_path / "run"))
    val = part.subset("PublicTest")
    majority = np.bincount(val.labels).max() / len(val)  # always answering "happy"
    print(f"slice val_accuracy {rows[-1]['val_accuracy']:.3f}, majority {majority:.3f}")
    assert rows[-1]["val_accuracy"] > majority + 0.05, (rows[-1], majority)


def test_init_from_starts_from_a_trained_models_weights(tmp_path):
    import keras

    from fer_core.models.build import create_model
    from fer_core.training.trainer import _init_weights

    cfg = TrainConfig.for_model("tiny", data=SMALL, epochs=2, batch_size=16)
    first = train(cfg, tmp_path / "first")
    model = create_model("tiny", 7)
    _init_weights(model, str(first))  # a run directory: its final (best) model
    trained = keras.saving.load_model(first / "model.keras")
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), trained.get_weights()))

    # a second schedule from those weights starts where the first run ended, not from scratch
    second = train(TrainConfig.for_model("tiny", data=SMALL, epochs=1, batch_size=16, init_from=str(first)),
                   tmp_path / "second")
    assert TrainConfig.load(second / "config.json").init_from == str(first)
    assert read_metrics(second)[0]["loss"] < read_metrics(first)[0]["loss"]

    with pytest.raises(ConfigError, match="init_from.*differs"):
        train(TrainConfig.for_model("study-h", data=SMALL, epochs=1, init_from=str(first)), tmp_path / "other")
    with pytest.raises(ConfigError, match="init_from.*no such model"):
        train(TrainConfig.for_model("tiny", data=SMALL, epochs=1, init_from=str(tmp_path / "nope")),
              tmp_path / "missing")


def test_augmentation_strength_ramps_up_over_the_first_epochs():
    ramp = TrainConfig(aug_warmup_epochs=4)
    assert [aug_strength(ramp, e) for e in range(6)] == pytest.approx([0, 0.25, 0.5, 0.75, 1, 1])
    assert aug_strength(TrainConfig(), 0) == 1.0  # no ramp: full strength from the first epoch
    with pytest.raises(ConfigError) as bad:
        TrainConfig.parse({"aug_warmup_epochs": -1})
    assert "aug_warmup_epochs" in bad.value.fields


def test_input_pipeline_reads_the_strength_at_every_new_epoch():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, 32)
    cfg = TrainConfig(rotation=10.0, translate=0.1, zoom=0.1, erase=0.5, crop=40, batch_size=8)  # no flips
    strength = tf.Variable(0.0, trainable=False)
    ds = make_input(images, labels, cfg, 7, True, strength)
    originals = {im.tobytes() for im in images.astype(np.float32)}

    def unchanged():
        batches = [x.numpy()[..., 0] for x, _ in ds]  # one epoch: a new iterator, as Keras makes
        return sum(im.tobytes() in originals for b in batches for im in b)

    assert unchanged() == 32  # strength 0: every face as it is (only reshuffled)
    strength.assign(1.0)
    assert unchanged() == 0
    strength.assign(0.0)
    assert unchanged() == 32


def test_a_run_with_an_augmentation_ramp_records_it_and_resumes_on_it(tmp_path):
    cfg = TrainConfig.for_model("tiny", data=SMALL, epochs=3, batch_size=32, rotation=10.0, erase=0.5,
                                aug_warmup_epochs=2)
    done = []
    run = train(cfg, tmp_path / "run", on_epoch=lambda e, n, m: done.append(e), should_stop=lambda: len(done) >= 1)
    train(run_dir=run, resume=True)
    rows = read_metrics(run)
    assert [r["aug_strength"] for r in rows] == pytest.approx([0, 0.5, 1])
    # strength 0 is no augmentation at all: the first epoch is that of a run without any
    plain = train(TrainConfig.for_model("tiny", data=SMALL, epochs=1, batch_size=32), tmp_path / "plain")
    first = read_metrics(plain)[0]
    assert "aug_strength" not in first
    assert rows[0]["loss"] == pytest.approx(first["loss"], rel=1e-4)
    assert rows[0]["val_accuracy"] == pytest.approx(first["val_accuracy"])


def test_a_preset_that_takes_a_dropout_rate_gets_the_configs(tmp_path):
    import keras

    cfg = TrainConfig.for_model("fer-vgg", data="demo:10", epochs=1, warmup_epochs=0, width=8, dropout=0.6,
                                aug_warmup_epochs=0, recalibrate_bn=False)
    assert TrainConfig.for_model("fer-vgg").dropout == 0.25  # the recipe's own rate
    run = train(cfg, tmp_path / "run")
    model = keras.saving.load_model(run / "model.keras")
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.6, 0.6]


@pytest.mark.parametrize("seed", ["-1", str(2 ** 70)])
def test_a_bad_seed_is_refused_where_it_is_typed(tmp_path, capsys, data_dir, seed):
    """Regression: `train --seed -1` (or 2**70) printed a traceback and left a run folder holding only
    config.json; `jobs submit --seed -1` was queued and failed in the worker."""
    from fer_core.jobs import JobStore

    out = tmp_path / "run"
    assert main(["train", "--data", "demo:30", "--arch", "tiny", "--epochs", "1", "--seed", seed, "--out", str(out)]) == 2
    assert "seed: an integer from 0 to 4294967295" in capsys.readouterr().err and not out.exists()
    assert main(["jobs", "submit", "--data", "demo:30", "--arch", "tiny", "--epochs", "1", "--seed", seed]) == 2
    assert "seed: an integer from 0" in capsys.readouterr().err
    with JobStore() as store:
        assert store.list() == []


def test_output_paths_that_cannot_be_written_give_one_line_before_any_work(tmp_path, capsys, data_dir):
    """Regression: `train --out FILE`, `train --out FILE/run` and `export --out FILE/x` printed tracebacks
    (the export after loading the model); every such case is one line, exit 2, and writes nothing."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = [(["train", "--data", "demo:30", "--arch", "tiny", "--epochs", "1", "--out", str(blocker)],
              "already exists and is not a folder"),
             (["train", "--data", "demo:30", "--arch", "tiny", "--epochs", "1", "--out", str(blocker / "run")],
              "Not a directory"),
             (["export", "default", "--format", "tflite", "--out", str(blocker / "x")], "is a file")]
    for argv, why in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert why in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert blocker.read_text() == "x" and {p.name for p in tmp_path.iterdir()} <= {"a-file", "data"}
