"""The Runs page as trackers do it: best/last values, smoothing, time axis, differences, groups,
learning-rate curves, export downloads and TensorBoard event logs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fer_core.errors import ConfigError
from fer_core.runs import rundir
from fer_core.training import catalog, tblog
from fer_core.training.validation import clean_tags

ROOT = Path(__file__).resolve().parent.parent
RUNS = str(ROOT / "pages" / "runs.py")
TIMEOUT = 300


def _run(name: str, rows: list[dict], arch="tiny", seed=0, tags=(), sweep=None, **config) -> catalog.RunSummary:
    from fer_core.runs.trainconfig import TrainConfig

    info = {rundir.TAGS: list(tags)} | ({rundir.SWEEP: sweep} if sweep else {})
    return catalog.RunSummary(Path(name), config=TrainConfig.for_model(arch, seed=seed, **config), info=info, metrics=rows)


def _rows(accs: list[float], seconds=60.0) -> list[dict]:
    return [{"epoch": i + 1, "accuracy": a, "val_accuracy": a - 0.05, "loss": 2 - a, "val_loss": 2.1 - a,
             "lr": 0.01 / (i + 1), "epoch_seconds": seconds} for i, a in enumerate(accs)]


def test_smoothing_is_tensorboards_debiased_average():
    assert catalog.smooth([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    assert catalog.smooth([5.0, 5.0, 5.0], 0.9) == pytest.approx([5.0, 5.0, 5.0])  # no pull towards zero
    out = catalog.smooth([0.0, 1.0, float("nan"), 1.0], 0.5)
    assert out[0] == 0.0 and out[1] == pytest.approx(0.5 / 0.75) and np.isnan(out[2])
    assert out[3] == pytest.approx(0.75 / 0.875)  # the nan did not enter the average
    with pytest.raises(ValueError):
        catalog.smooth([1.0], 1.0)


def test_best_and_last_values_with_their_epochs():
    run = _run("a", _rows([0.5, 0.8, 0.7]))
    table = {r["metric"]: r for r in catalog.metric_summary([run])}
    assert table["val_accuracy"]["best"] == pytest.approx(0.75) and table["val_accuracy"]["best epoch"] == 2
    assert table["val_accuracy"]["last"] == pytest.approx(0.65) and table["val_accuracy"]["last epoch"] == 3
    assert table["loss"]["best"] == pytest.approx(1.2) and table["loss"]["best epoch"] == 2  # lowest loss


def test_curves_smoothed_with_raw_values_and_minutes():
    rows = catalog.curves([_run("a", _rows([0.2, 0.6, 0.4], seconds=90))], smoothing=0.6)
    val = [r for r in rows if r["metric"] == "accuracy" and r["split"] == "validation"]
    assert [r["raw"] for r in val] == pytest.approx([0.15, 0.55, 0.35])
    assert [r["value"] for r in val] == pytest.approx(catalog.smooth([0.15, 0.55, 0.35], 0.6))
    assert [r["minutes"] for r in val] == [1.5, 3.0, 4.5]
    assert catalog.elapsed_minutes([{"epoch_seconds": 60}, {"epoch": 2}]) == [1.0, None]
    lr = catalog.lr_curve([_run("a", _rows([0.2, 0.6]))])
    assert [r["lr"] for r in lr] == [0.01, 0.005]


def test_only_the_differences():
    a, b = _run("a", [], seed=0), _run("b", [], seed=1)
    full = catalog.config_table([a, b])
    diff = catalog.config_table([a, b], only_differences=True)
    assert len(full) > 20 and diff == [{"setting": "seed", "a": "0", "b": "1"}]
    assert catalog.config_table([a], only_differences=True) == catalog.config_table([a])  # one run: all of it


def test_groups_mean_and_spread():
    members = [_run("s0", _rows([0.55, 0.65]), tags=["ls"], sweep=3), _run("s1", _rows([0.6, 0.75]), tags=["ls", "x"],
                                                                              sweep=3),
               _run("other", _rows([0.5]), arch="pk-vgg")]
    table = {r["group"]: r for r in catalog.group_table(members, "tag")}
    assert set(table) == {"ls", "x", "(untagged)"}
    assert table["ls"]["runs"] == 2 and table["ls"]["best val_acc mean"] == pytest.approx(0.65)
    assert table["ls"]["± std"] == pytest.approx(np.std([0.6, 0.7], ddof=1))
    assert (table["ls"]["min"], table["ls"]["max"]) == pytest.approx((0.6, 0.7))
    assert {r["group"] for r in catalog.group_table(members, "sweep")} == {"sweep 3", "(not in a sweep)"}
    assert {r["group"] for r in catalog.group_table(members, "architecture")} == {"tiny", "pk-vgg"}
    curve = [r for r in catalog.group_curves(members, "tag") if r["group"] == "ls" and r["metric"] == "accuracy"
             and r["split"] == "validation"]
    assert [(r["epoch"], r["runs"]) for r in curve] == [(1, 2), (2, 2)]
    assert curve[1]["mean"] == pytest.approx(0.65) and (curve[1]["low"], curve[1]["high"]) == pytest.approx((0.6, 0.7))


def test_tags_are_checked():
    assert clean_tags("ls, seed-1,ls,,") == ["ls", "seed-1"]
    assert clean_tags(["a,b", "c"]) == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="tag 'two words'") as err:
        clean_tags(["two words"])
    assert err.value.field == "tags"


def test_a_run_writes_tensorboard_events_matching_its_metrics(trained_run):
    assert tblog.enabled(), "tensorboard is in requirements-optional.txt: CI tests it"
    import tensorflow as tf

    events = {}
    for split in ("train", "validation"):
        for f in (rundir.tensorboard_dir(trained_run) / split).iterdir():
            for e in tf.compat.v1.train.summary_iterator(str(f)):
                for v in e.summary.value:
                    events[(split, v.tag, e.step)] = float(tf.make_ndarray(v.tensor))
    for row in rundir.read_metrics(trained_run):
        assert events[("validation", "epoch_accuracy", row["epoch"])] == pytest.approx(row["val_accuracy"])
        assert events[("train", "epoch_loss", row["epoch"])] == pytest.approx(row["loss"])
        assert events[("train", "epoch_learning_rate", row["epoch"])] == pytest.approx(row["lr"])


def test_without_tensorboard_nothing_is_written(monkeypatch, tmp_path):
    from fer_core.runs.trainconfig import TrainConfig
    from fer_core.training.trainer import train

    monkeypatch.setattr(tblog, "enabled", lambda: False)
    run = train(TrainConfig.for_model("tiny", data="demo", epochs=1, seed=0), tmp_path / "r")
    assert rundir.read_metrics(run) and not rundir.tensorboard_dir(run).exists()


@pytest.fixture
def two_runs(run_in_data) -> tuple[Path, Path]:
    """The tiny run (tagged 'base') and a copy of it with another seed, tagged 'base' and 'seed1'."""
    other = Path(shutil.copytree(run_in_data, run_in_data.parent / "tiny-seed1"))
    cfg = rundir.read_config(other)
    cfg.seed = 1
    rundir.write_config(other, cfg)
    rundir.update_info(run_in_data, tags=["base"])
    rundir.update_info(other, tags=["base", "seed1"])
    return run_in_data, other


def test_runs_page_compares_runs_as_trackers_do(demo_app, two_runs):
    first, second = two_runs
    at = AppTest.from_file(RUNS, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    at.multiselect(key="runs_chosen").set_value([first.name, second.name]).run()
    assert not at.exception
    tables = [d.value for d in at.dataframe]
    (summary,) = [t for t in tables if "best epoch" in t.columns and "metric" in t.columns]
    assert set(summary["run"]) == {first.name, second.name} and "val_accuracy" in set(summary["metric"])
    (config,) = [t for t in tables if "setting" in t.columns]
    assert list(config["setting"]) == ["seed"]  # only the differences, by default
    at.toggle(key="curves_diff").set_value(False).run()
    (config,) = [d.value for d in at.dataframe if "setting" in d.value.columns]
    assert len(config) > 20
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    titles = [s.get("title") for s in specs]
    assert "Learning rate" in titles
    at.slider(key="curves_smooth").set_value(0.8).run()
    at.radio(key="curves_x").set_value("wall-clock time").run()
    assert not at.exception
    spec = next(json.loads(c.proto.spec) for c in at.get("vega_lite_chart") if '"Accuracy"' in c.proto.spec)
    assert len(spec["layer"]) == 3  # the faint raw line, the smoothed line, its points
    assert spec["layer"][1]["encoding"]["x"]["field"] == "minutes"

    at.radio(key="groups_by").set_value("tag").run()
    (groups,) = [d.value for d in at.dataframe if "group" in d.value.columns]
    assert dict(zip(groups["group"], groups["runs"])) == {"base": 2, "seed1": 1}
    assert groups.set_index("group").loc["base", "± std"] == pytest.approx(0.0)  # the same model twice
    assert any("mean and range" in json.dumps(json.loads(c.proto.spec).get("title")) for c in at.get("vega_lite_chart"))


def test_runs_page_exports_a_run(demo_app, run_in_data):
    at = AppTest.from_file(RUNS, default_timeout=TIMEOUT).run()
    key = f"export_{run_in_data.name}"
    at.selectbox(key=f"{key}_fmt").set_value("tflite").run()
    at.button(key=f"{key}_go").click().run()
    assert not at.exception and not at.error
    (button,) = [b for b in at.get("download_button") if "-tflite.zip" in b.proto.label]
    assert f"{run_in_data.name}-tflite.zip" in button.proto.label
    at.selectbox(key="export_default_fmt").set_value("saved_model").run()
    quant = [s for s in at.selectbox if s.key == "export_default_quant_saved_model"][0]
    assert quant.options == ["none"]  # a SavedModel is not quantized


TRAIN = str(ROOT / "pages" / "train.py")


def test_train_page_submits_a_sweep_and_sets_the_cluster(demo_app, monkeypatch):
    from fer_core import jobs

    monkeypatch.setattr(jobs.LocalRunner, "slots", lambda self: [])  # queue only: nothing starts here
    monkeypatch.delenv("FER_RAY_ADDRESS", raising=False)
    at = AppTest.from_file(TRAIN, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    assert any("**Runner:** this machine" in m.value for m in at.markdown)
    at.text_input(key="tr_sweep_seeds").set_value("0,x")
    at.button(key="tr_sweep_submit").click().run()
    assert any("whole numbers" in e.value for e in at.error)
    at.text_input(key="tr_sweep_seeds").set_value("3,4")
    at.text_input(key="tr_tags").set_value("seeds")
    at.button(key="tr_sweep_submit").click().run()
    assert not at.exception and any(s.value == "Sweep 1: jobs 1, 2 queued." for s in at.success)
    with jobs.JobStore() as store:
        listed = store.list(sweep=1)
    assert sorted(j.config["seed"] for j in listed) == [3, 4] and {j.runner for j in listed} == {"local"}
    assert all(rundir.read_info(j.run_dir)["tags"] == ["seeds"] for j in listed)

    at.radio(key="tr_sweep_kind").set_value("study").run()
    at.text_input(key="tr_sweep_seeds").set_value("0")
    at.button(key="tr_sweep_submit").click().run()
    with jobs.JobStore() as store:
        study = store.list(sweep=2)
    assert sorted(j.config["arch"] for j in study) == [f"study-{x}" for x in "abcdefgh"]

    at.text_input(key="tr_ray_address").set_value("head:8265")
    at.button(key="tr_ray_save").click().run()
    assert any("http://HOST:PORT" in e.value for e in at.error)
    at.text_input(key="tr_ray_address").set_value("http://127.0.0.1:9")  # nothing listens there
    at.button(key="tr_ray_save").click().run()
    assert any("Ray cluster at http://127.0.0.1:9" in s.value for s in at.success)
    at.run()
    assert at.radio(key="tr_runner").value == "ray"  # new jobs go to the cluster by default now
    assert not at.exception
    at.text_input(key="tr_ray_address").set_value("")
    at.button(key="tr_ray_save").click().run()
    assert any("this machine" in s.value for s in at.success)


def test_groups_never_mix_data_sets():
    """Regression: the Groups tab averaged a demo run and a FER2013 run together."""
    members = [_run("demo-run", _rows([0.9]), data="demo"), _run("fer-a", _rows([0.6]), data="/srv/fer2013"),
               _run("fer-b", _rows([0.7]), data="/home/x/fer2013.csv")]
    table = {r["group"]: r for r in catalog.group_table(members, "architecture")}
    assert set(table) == {"tiny · on demo", "tiny · on FER2013"}
    assert table["tiny · on FER2013"]["runs"] == 2 and table["tiny · on FER2013"]["best val_acc mean"] == pytest.approx(0.6)
    assert {r["group"] for r in catalog.group_curves(members, "architecture")} == set(table)


def test_a_read_only_server_offers_no_export(demo_app, run_in_data, monkeypatch):
    """A student's click must not take a core for a minute (nor 20 MB per student): on the
    read-only server the Downloads tab says where exports are made and offers none."""
    monkeypatch.setenv("FER_READ_ONLY", "1")
    at = AppTest.from_file(RUNS, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    assert not [s for s in at.selectbox if (s.key or "").startswith("export_")]
    assert not [b for b in at.button if (b.key or "").startswith("export_")]
    assert any("read-only server offers none" in c.value for c in at.caption)
    from fer_core.config import check_writable  # and the helper refuses, whoever calls it
    from fer_core.errors import ConfigError
    import ui

    with pytest.raises(ConfigError, match="read-only"):
        ui.cached_export(run_in_data.name, "tflite", "none")
    with pytest.raises(ConfigError):
        check_writable("Exporting a model")
