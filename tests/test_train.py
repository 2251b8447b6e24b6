"""Training engine: run directories, resume, schedules, the CLI."""

import json

import numpy as np
import pytest

from fer_core.cli import main
from fer_core.errors import ConfigError
from fer_core.train import read_metrics, scheduled_lr, train
from fer_core.trainconfig import TrainConfig

SMALL = "demo:30"  # 30 faces per class: 168 training, 21 validation images


def test_two_epoch_run_writes_a_complete_run_directory(tmp_path):
    cfg = TrainConfig.for_model("tiny", data=SMALL, epochs=2, batch_size=32, flip=True, erase=0.2)
    seen = []
    run = train(cfg, tmp_path / "run", on_epoch=lambda e, n, m: seen.append((e, n)))
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "metrics.jsonl", "last.keras", "best.keras", "model.keras", "classes.json",
            "run.json", "versions.json"} <= names
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2] and seen == [(1, 2), (2, 2)]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds"} <= set(rows[0])
    assert TrainConfig.load(run / "config.json") == cfg
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
    cos = TrainConfig(learning_rate=0.1, schedule="cosine", epochs=10, warmup_epochs=2)
    lrs = [scheduled_lr(cos, e) for e in range(10)]
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(0.1) and lrs[-1] < 0.01
    step = TrainConfig(learning_rate=0.1, schedule="step", step_epochs=3, step_gamma=0.5)
    assert [scheduled_lr(step, e) for e in (0, 3, 6)] == pytest.approx([0.1, 0.05, 0.025])
    assert scheduled_lr(TrainConfig(), 5) is None


def test_config_validation_names_fields():
    with pytest.raises(ConfigError, match="optimizer: one of sgd, adam, adamw.*epochs"):
        TrainConfig(optimizer="rmsprop", epochs=0).validate()
    with pytest.raises(ConfigError, match="Unknown training option"):
        TrainConfig.from_dict({"colour": 1})
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": "fast"})
    pk = TrainConfig.for_model("pk-vgg")
    assert (pk.optimizer, pk.learning_rate, pk.momentum, pk.batch_size) == ("sgd", 0.1, 0.9, 128)


def test_balanced_class_weights():
    from fer_core.train import class_weights

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
