"""Exports: a model as ONNX, TFLite or a TensorFlow SavedModel, and the runtimes that load them.

Every export takes what the ``.keras`` model takes, a batch of 48x48 grayscale faces, as
``uint8`` of shape (N, 48, 48, 1) under the input name ``faces``, and returns the class
probabilities (N, classes) under ``probabilities``; the preprocessing (rescaling, centre crop)
stays inside the graph. An export is a folder::

    model.onnx | model.tflite | saved_model/     the graph
    classes.json                                 the class names, in output order
    export.json                                  format, quantization, input and output, source model

The graph is traced from a wrapper that calls the model with ``training=False``: a model whose
saved graph marks a layer's call ``training=True`` (the fine-tuned v1 network has one) would
otherwise export with batch-norm in training mode. Keras 3's ``model.export`` writes ONNX
(through tf2onnx) and the SavedModel; TFLite is converted from that SavedModel. Quantization:
``dynamic`` stores weights as int8, ``float16`` as half floats; a SavedModel stays float32.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_core import __version__, files
from fer_core.device import TENSORFLOW_ONLY, configured_backend, quiet_stderr
from fer_core.errors import ModelError
from fer_core.inference.engine import convert
from fer_core.inference.loader import ModelRef, load_model, resolve_model
from fer_core.runs import rundir

FORMATS = ("onnx", "tflite", "saved_model")
QUANTIZE = ("none", "dynamic", "float16")
#: The graph's file (or folder) inside an export, per format.
GRAPH = {"onnx": "model.onnx", "tflite": "model.tflite", "saved_model": "saved_model"}
META = "export.json"
INPUT, OUTPUT = "faces", "probabilities"
#: What each format needs installed (pip names), beyond TensorFlow (see requirements-optional.txt).
NEEDS = {"onnx": ("tf2onnx", "onnx", "onnxruntime"), "tflite": (), "saved_model": ()}


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote."""

    folder: Path
    graph: Path
    format: str
    quantize: str
    size_bytes: int  # the graph's size on disk
    seconds: float


def check_options(fmt: str, quantize: str = "none") -> None:
    """Raise ModelError for an unknown format or quantization, or one the format cannot do."""
    if fmt not in FORMATS:
        raise ModelError(f"{fmt!r} is not an export format; choose one of {', '.join(FORMATS)}.")
    if quantize not in QUANTIZE:
        raise ModelError(f"{quantize!r} is not a quantization; choose one of {', '.join(QUANTIZE)}.")
    if fmt == "saved_model" and quantize != "none":
        raise ModelError("A SavedModel export is float32 only: use --quantize none, or export ONNX or TFLite to "
                         "quantize.")


def missing_runtime(fmt: str) -> str | None:
    """Why ``fmt`` cannot be exported here (a library is not installed, or Keras runs on another
    backend than TensorFlow, which every exporter goes through), or None when it can."""
    backend = configured_backend()
    if backend != "tensorflow":
        return TENSORFLOW_ONLY.format(what=f"Exporting {fmt}", backend=backend)
    absent = [name for name in NEEDS[fmt] if importlib.util.find_spec(name) is None]
    if absent:
        return (f"Exporting {fmt} needs {', '.join(absent)}, which is not installed: "
                "pip install -r requirements-optional.txt")
    return None


def default_out(ref: ModelRef, fmt: str, quantize: str = "none") -> Path:
    """Where ``export`` writes when not told: ``<model>-<format>[-<quantize>]`` here."""
    stem = Path(ref.name).stem if ref.name.endswith(".keras") else ref.name
    return Path(f"{stem}-{fmt}" + ("" if quantize == "none" else f"-{quantize}"))


def serving_model(model):
    """A functional model that takes uint8 faces named :data:`INPUT` and calls ``model`` with
    ``training=False`` (whatever flags its saved graph carries)."""
    import keras

    faces = keras.Input((48, 48, 1), dtype="uint8", name=INPUT)
    probs = model(keras.ops.cast(faces, "float32"), training=False)
    wrapper = keras.Model(faces, probs, name="fer_studio")
    wrapper(np.zeros((1, 48, 48, 1), np.uint8))  # Keras exports only a model that has been called
    return wrapper


def export_model(spec: str | Path | None, fmt: str, out: str | Path | None = None, quantize: str = "none",
                 log=lambda line: None) -> ExportResult:
    """Export the model ``spec`` names (see :func:`fer_core.inference.loader.resolve_model`) to the folder ``out``.

    The folder is built beside ``out`` and moved into place when complete, so a failed export
    leaves nothing half-written; an earlier export in ``out`` is replaced, any other content
    is refused.

    Raises:
        ModelError: a bad option, a missing library, an unusable model or ``out``, or a
            converter failure (its message).
    """
    check_options(fmt, quantize)
    problem = missing_runtime(fmt)
    if problem:
        raise ModelError(problem)
    ref = resolve_model(spec)
    out = Path(os.path.abspath(out if out else default_out(ref, fmt, quantize)))  # "." is a folder like any other
    earlier = check_out(out)
    started = time.monotonic()
    log(f"loading {ref.name}")
    model = load_model(ref)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        work = Path(tmp) / "export"
        work.mkdir()
        graph = work / GRAPH[fmt]
        log(f"exporting {ref.name} as {fmt}" + ("" if quantize == "none" else f" ({quantize} quantization)")
            + ": the converter's step, the longest")
        try:
            _WRITERS[fmt](serving_model(model), graph, quantize, Path(tmp), ref.classes)
        except ModelError:
            raise
        except Exception as exc:  # converters raise many types; all mean "this export failed"
            raise ModelError(f"{ref.name}: the {fmt} export failed ({type(exc).__name__}: {str(exc)[:300]}).") from None
        rundir.write_classes(work, ref.classes)
        files.write_json(work / META, {
            "format": fmt, "quantize": quantize, "model": ref.name,
            "input": {"name": INPUT, "dtype": "uint8", "shape": [None, 48, 48, 1],
                      "meaning": "48x48 grayscale faces, 0-255; the model rescales and crops them itself"},
            "output": {"name": OUTPUT, "dtype": "float32", "shape": [None, len(ref.classes)],
                       "meaning": "class probabilities, in the order of classes.json"},
            "classes": list(ref.classes), "fer_studio": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        if out.exists():  # the folder stays (it may be someone's current folder): only its files change
            old = Path(tmp) / "earlier"
            old.mkdir()
            if earlier:  # the earlier export's own files step aside, then go
                for p in list(out.iterdir()):
                    if is_export_file(p.name):
                        p.rename(old / p.name)
            for p in list(work.iterdir()):
                p.rename(out / p.name)
            remove_export(old)
        else:
            work.rename(out)
    graph = out / GRAPH[fmt]
    size = sum(p.stat().st_size for p in graph.rglob("*") if p.is_file()) if graph.is_dir() else graph.stat().st_size
    return ExportResult(out, graph, fmt, quantize, size, round(time.monotonic() - started, 2))


def is_export_file(name: str) -> bool:
    """True for the names an export folder holds (see the module's docstring)."""
    return name in (META, rundir.CLASSES, *GRAPH.values())


#: What TensorFlow writes inside ``saved_model/`` (paths relative to it). Our models have no assets
#: (no vocabulary files), so a file under ``assets/`` is someone else's and is never removed.
_SAVED_MODEL_FILES = re.compile(r"^(saved_model\.pb|fingerprint\.pb|variables/variables\.(index|data-\d+-of-\d+))$")


def _foreign(out: Path) -> list[str]:
    """What in an export folder an export does not write (relative paths)."""
    found = []
    for p in sorted(out.iterdir()):
        if not is_export_file(p.name) or p.is_symlink():
            found.append(p.name)
        elif p.name == GRAPH["saved_model"]:
            if not p.is_dir():
                found.append(p.name)
                continue
            found += [f"{p.name}/{q.relative_to(p).as_posix()}" for q in sorted(p.rglob("*"))
                      if (q.is_file() or q.is_symlink()) and not _SAVED_MODEL_FILES.match(q.relative_to(p).as_posix())]
        elif p.is_dir():
            found.append(p.name)  # a graph file's name, but a folder: not something we wrote
    return found


def check_out(out: Path) -> bool:
    """Whether ``out`` holds an earlier export to replace (False: it is new or an empty folder).

    Raises:
        ModelError: ``out`` holds anything an export does not write (or its export.json is not
            ours): nothing of the user's is ever replaced or deleted.
    """
    if not out.parent.is_dir():
        raise ModelError(f"{out}: its folder {out.parent} " + ("is a file" if out.parent.exists() else "does not exist")
                         + "; choose an --out in an existing folder.")
    if not os.access(out.parent, os.W_OK):
        raise ModelError(f"{out}: its folder {out.parent} is not writable; choose another --out.")
    if not out.exists() and not out.is_symlink():
        return False
    if out.is_symlink() or not out.is_dir():
        raise ModelError(f"{out}: already exists and is not a folder; choose another --out (a new or empty folder).")
    if not any(out.iterdir()):
        return False
    foreign = _foreign(out)
    try:
        ours = json.loads((out / META).read_text()).get("fer_studio") is not None
    except (OSError, ValueError, AttributeError):
        ours = False
    if foreign or not ours:
        what = f"holds {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}" if foreign else \
            "is not a FER Studio export (its export.json is missing or not ours)"
        raise ModelError(f"{out}: {what}; an export only replaces a folder that holds an earlier export and nothing "
                         "else, and never deletes your files. Choose another --out (a new or empty folder).")
    return True


def remove_export(folder: Path) -> None:
    """Remove an export's own files (inside ``saved_model/`` too, only what TensorFlow writes
    there), then the folders left empty."""
    for p in folder.iterdir():
        if p.name == GRAPH["saved_model"] and p.is_dir() and not p.is_symlink():
            files.remove_files(p, lambda rel: bool(_SAVED_MODEL_FILES.match(rel)))
        elif is_export_file(p.name) and not p.is_dir():
            p.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


def _write_saved_model(model, path: Path, quantize: str, scratch: Path, classes) -> None:
    with quiet_stderr():
        model.export(str(path), format="tf_saved_model", verbose=False)


def _write_tflite(model, path: Path, quantize: str, scratch: Path, classes) -> None:
    path.write_bytes(convert(None, quantize, graph=model))  # the inference engine's converter


def _write_onnx(model, path: Path, quantize: str, scratch: Path, classes) -> None:
    import onnx

    plain = scratch / "plain.onnx"
    with quiet_stderr():
        model.export(str(plain), format="onnx", verbose=False)
    graph = onnx.load(str(plain))
    _name_output(graph, OUTPUT)
    graph.doc_string = "FER Studio: 48x48 uint8 grayscale faces -> class probabilities"
    for key, value in (("classes", json.dumps(list(classes))), ("fer_studio", __version__)):
        graph.metadata_props.add(key=key, value=value)
    if quantize == "float16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        graph = convert_float_to_float16(graph, keep_io_types=True)  # half weights, float32 output
    if quantize == "dynamic":
        from onnxruntime.quantization import quantize_dynamic

        onnx.save(graph, str(plain))
        quantize_dynamic(str(plain), str(path))  # int8 weights, activations quantized at run time
    else:
        onnx.save(graph, str(path))


def _name_output(graph, name: str) -> None:
    """Rename the graph's one output (tf2onnx calls it ``Identity:0``) to ``name``."""
    old = graph.graph.output[0].name
    for node in graph.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
        node.input[:] = [name if i == old else i for i in node.input]
    graph.graph.output[0].name = name


_WRITERS = {"onnx": _write_onnx, "tflite": _write_tflite, "saved_model": _write_saved_model}


# ------------------------------------------------------------------ loading
def read_meta(folder: str | Path) -> dict:
    """An export folder's ``export.json``.

    Raises:
        ModelError: the folder is not an export.
    """
    meta = files.read_json(Path(folder) / META, None)
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
        raise ModelError(f"{folder}: not a FER Studio export (no valid {META}); export one with "
                         "'python -m fer_core export'.")
    return meta


class ExportedModel:
    """An export loaded in its own runtime (onnxruntime, LiteRT or TensorFlow), to compare with Keras."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.meta = read_meta(folder)
        self.format = self.meta["format"]
        self.classes = rundir.read_classes(self.folder) or tuple(self.meta["classes"])
        graph = self.folder / GRAPH[self.format]
        if self.format == "onnx":
            import onnxruntime as ort

            self._session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        elif self.format == "tflite":
            self._interpreter = _tflite_interpreter(graph)
        else:
            import tensorflow as tf

            self._loaded = tf.saved_model.load(str(graph))  # held: the signature needs its variables alive
            self._serve = self._loaded.signatures["serving_default"]

    def predict(self, faces: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) of uint8 faces (N, 48, 48) or (N, 48, 48, 1)."""
        x = np.ascontiguousarray(np.asarray(faces, np.uint8).reshape(-1, 48, 48, 1))
        if self.format == "onnx":
            return self._session.run([OUTPUT], {INPUT: x})[0]
        if self.format == "tflite":
            it = self._interpreter
            inp, outp = it.get_input_details()[0], it.get_output_details()[0]
            if tuple(inp["shape"]) != x.shape:
                it.resize_tensor_input(inp["index"], x.shape)
                it.allocate_tensors()
            it.set_tensor(inp["index"], x)
            it.invoke()
            return it.get_tensor(outp["index"]).copy()
        out = self._serve(**{INPUT: x})
        return next(iter(out.values())).numpy()


def _tflite_interpreter(path: Path):
    """LiteRT's interpreter (``ai-edge-litert``) when installed, else TensorFlow's own."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    return it


def zip_export(folder: str | Path) -> bytes:
    """The export folder as one zip (what the Runs page's download buttons give)."""
    folder = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, Path(folder.name) / path.relative_to(folder))
    return buf.getvalue()


def export_zip(spec: str | Path | None, fmt: str, quantize: str = "none", log=lambda line: None) -> tuple[str, bytes]:
    """Export into a temporary folder and return ``(file name, zip bytes)`` for a download;
    ``log(line)`` hears each step as it starts."""
    ref = resolve_model(spec)
    name = default_out(ref, fmt, quantize).name
    with tempfile.TemporaryDirectory() as tmp:
        result = export_model(spec, fmt, Path(tmp) / name, quantize, log=log)
        log(f"zipping {result.size_bytes / 1e6:.1f} MB")
        return f"{name}.zip", zip_export(result.folder)
