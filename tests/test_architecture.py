"""Code structure: one owner per contract, no import cycles, one validation, one default TTA."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from fer_core.errors import ConfigError
from fer_core.models import registry
from fer_core.runs.trainconfig import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "fer_core"
# imported inside functions to keep start-up fast (pyarrow: the CSV parser, needed only to read a CSV)
# h5py: 0.1 s, needed only to write a release
HEAVY = {"tensorflow", "keras", "cv2", "sklearn", "pyarrow", "h5py", "ai_edge_litert",
         # optional (requirements-optional.txt): imported only where used, so their absence costs nothing else
         "onnx", "onnxruntime", "tf2onnx", "tensorboard", "ray", "jax", "torch"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in CORE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]):
    """Yield (imported fer_core module, at function level?, imported names) for every import in a module."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        inner = id(node) in nested
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, inner, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in modules else base), inner, [alias.name]


def test_no_import_cycles_in_fer_core():
    modules = _modules()
    graph = {m: {dep for dep, _, _ in _imports(m, p, modules) if dep in modules and dep != m
                 and not m.startswith(dep + ".")}  # a submodule's parent package is not a dependency
             for m, p in modules.items()}
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for dep in sorted(graph[m]):
            visit(dep)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    assert not cycles, cycles


#: The layers, lowest first: a module imports only from its own layer and those below it. The base
#: modules (errors, files, config, device, fmt, shared) sit directly in ``fer_core``.
LAYERS = ("base", "data", "models", "runs", "inference", "training", "shipping", "jobs", "quiz", "cli")


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[1:] == ["__main__"]:  # ``python -m fer_core``: the command line's entry point
        return "cli"
    if len(parts) == 1 or parts[1] not in LAYERS:
        return "base"
    return parts[1]


def test_each_layer_imports_only_its_own_and_lower_layers():
    modules = _modules()
    upward = [f"{m} ({_layer(m)}) imports {dep} ({_layer(dep)})"
              for m, p in modules.items() for dep, _, _ in _imports(m, p, modules)
              if dep in modules and LAYERS.index(_layer(dep)) > LAYERS.index(_layer(m))]
    assert not upward, upward
    assert {m.split(".")[1] for m in modules if m.count(".") >= 2} <= set(LAYERS)  # no package outside the layers


def test_the_tree_shows_the_layers_and_no_module_does_too_much():
    top = sorted(p.name for p in CORE.glob("*.py"))
    assert len(top) <= 8, top
    long = {str(p.relative_to(ROOT)): n for p in CORE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long


def _heavy_modules(modules: dict[str, Path]) -> set[str]:
    """The fer_core modules that import a heavy library at their top (the Keras classes of training)."""
    return {name for name, path in modules.items()
            if any(not inner and dep.split(".")[0] in HEAVY for dep, inner, _ in _imports(name, path, modules))}


def test_function_level_imports_are_only_for_heavy_libraries_and_no_private_names_cross_modules():
    modules = _modules()
    heavy = _heavy_modules(modules)
    assert heavy <= {"fer_core.training.augment", "fer_core.training.distill", "fer_core.training.keras_callbacks"}
    bad, private = [], []
    for name, path in modules.items():
        for dep, inner, names in _imports(name, path, modules):
            # a module that imports Keras at its top is itself a heavy library, imported only inside functions
            heavy_dep = dep.split(".")[0] in HEAVY or dep in heavy
            if inner and not heavy_dep or not inner and dep in heavy and name not in heavy:
                bad.append(f"{name}: {dep} ({'inside a function' if inner else 'at the top'})")
            # dunders (``__version__``) are public by convention
            if dep.startswith("fer_core") and any(n.startswith("_") and not n.endswith("__") for n in names):
                private.append(f"{name}: {dep} {names}")
    assert not bad, bad
    assert not private, private


RUN_FILES = ("config.json", "run.json", "state.json", "classes.json", "metrics.jsonl", "last.keras", "best.keras",
             "model.keras", "versions.json", "log.txt", "metrics.json", "MODEL_CARD.md")


def test_run_directory_file_names_are_spelled_only_by_their_owner():
    sources = [*CORE.rglob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "ui.py", ROOT / "app.py"]
    found = [f"{p.relative_to(ROOT)}: {name}" for p in sources if p.name not in ("rundir.py", "model_folder.py")
             for name in RUN_FILES if re.search(rf"[\"'/]{re.escape(name)}[\"']", p.read_text())]
    assert not found, found


#: The app's code: the core package and the Streamlit side.
APP_SOURCES = [*CORE.rglob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "ui.py", ROOT / "app.py", ROOT / "bootstrap.py"]
#: A setting's name: ``FER_SOMETHING`` (not a prefix such as ``FER_QUIZ_*``) or ``FER2013_DIR``.
SETTING_NAME = re.compile(r"\bFER(?:_[A-Z0-9]+)+\b|\bFER2013_DIR\b")


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name)
            and node.value.id == "os") or (isinstance(node, ast.Name) and node.id == "environ")


def _environment_reads(tree: ast.AST):
    """The key of every read of the environment: ``os.environ.get(K)`` (``pop``, ``setdefault``),
    ``os.getenv(K)``, ``os.environ[K]`` read (an assignment is a write) and ``K in os.environ``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            f = node.func
            if (f.attr in ("get", "pop", "setdefault") and _is_environ(f.value)) or (
                    f.attr == "getenv" and isinstance(f.value, ast.Name) and f.value.id == "os"):
                yield node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
            yield node.slice
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            yield node.left


def test_settings_are_read_only_by_their_owner():
    """No module but ``fer_core/config.py`` reads a ``FER_*`` setting (or ``FER2013_DIR``) from the
    environment: the others call its readers. A key held in a module's constant counts as spelled
    out; a worker's environment copied from this one (``runners.worker_env``) is passed on, not read."""
    found = []
    for path in APP_SOURCES:
        if path == CORE / "config.py":
            continue
        tree = ast.parse(path.read_text())
        constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                     and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                     for t in n.targets if isinstance(t, ast.Name)}
        for key in _environment_reads(tree):
            name = key.value if isinstance(key, ast.Constant) else constants.get(getattr(key, "id", None))
            if isinstance(name, str) and SETTING_NAME.fullmatch(name):
                found.append(f"{path.relative_to(ROOT)}:{key.lineno}: {name}")
    assert not found, found


def test_every_setting_named_in_the_app_is_registered():
    """A ``FER_*`` name in the app's strings (a reader's call, a message, a docstring) is a setting of
    ``config.SETTINGS``: a typo or a setting that is gone fails here, not at a lecturer's server."""
    from fer_core.config import SETTINGS

    known = {s.name for s in SETTINGS}
    unknown = {f"{path.relative_to(ROOT)}: {name}" for path in APP_SOURCES for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)
               for name in SETTING_NAME.findall(node.value) if name not in known}
    assert not unknown, sorted(unknown)


def test_readmes_tables_of_settings_match_the_registry():
    """README's tables of settings list each registered setting once, with its default, and nothing else."""
    from fer_core.config import SETTINGS

    rows = re.findall(r"^\| `(FER[A-Z0-9_]+)` \| ([^|]+?) \|", (ROOT / "README.md").read_text(), re.M)
    assert len(rows) == len(dict(rows)), "a setting is in README's tables twice"
    assert dict(rows) == {s.name: s.shown_default for s in SETTINGS}
    for s in SETTINGS:  # the default README shows is the one the readers use
        if isinstance(s.default, (int, float)) and not isinstance(s.default, bool):
            assert f"{s.default:,g}" in s.shown_default if isinstance(s.default, float) else f"{s.default:,}" in s.shown_default, s


def test_every_preset_names_only_config_fields_and_builder_options():
    from fer_core.models import build  # noqa: F401  (registers the presets)

    fields = set(TrainConfig.__dataclass_fields__)
    for name in registry.names():
        spec = registry.get_spec(name)
        assert set(spec.train_defaults) <= fields, (name, set(spec.train_defaults) - fields)
        assert set(TrainConfig.for_model(name).arch_options()) <= set(spec.options()), name
    registry.register_model("bogus-preset", "test", colour="red")(lambda x, n: x)
    try:
        with pytest.raises(ConfigError, match="unknown training option"):
            TrainConfig.for_model("bogus-preset")
    finally:
        registry.REGISTRY.pop("bogus-preset", None)


def test_a_config_is_checked_in_two_steps_keyed_by_field_once_where_it_enters(data_dir, capsys):
    from fer_core.cli import main
    from fer_core.training.validation import check_world

    with pytest.raises(ConfigError) as parsed:  # one: the raw values, typed
        TrainConfig.parse({"arch": "CBCBPD-CBCBPD-CBCBPD-FBDF", "conv_widths": "32, 64", "epochs": "ten", "colour": 1})
    assert set(parsed.value.fields) == {"unknown", "conv_widths", "epochs"}
    assert "3 convolution block" in parsed.value.fields["conv_widths"]
    with pytest.raises(ConfigError) as world:  # two: what it names, found here
        check_world(TrainConfig.parse({"data": "/etc", "init_from": "no-such-run"}))
    assert set(world.value.fields) == {"data", "init_from"}
    assert "outside the folders this server may read" in world.value.fields["data"]
    assert "no such model file" in world.value.fields["init_from"]
    with pytest.raises(ConfigError, match="epochs"):  # a TrainConfig is valid however it is made
        TrainConfig(epochs=0)
    # the CLI refuses the same way, and a refused submit leaves no run folder behind
    assert main(["jobs", "submit", "--arch", "tiny", "--data", "/etc", "--epochs", "1"]) == 2
    assert "data: /etc: found neither a FER2013 CSV" in capsys.readouterr().err  # the CLI reads any path: none here
    assert main(["train", "--arch", "tiny", "--data", "demo", "--init-from", "nope", "--epochs", "1"]) == 2
    assert "init_from: nope: no such model file" in capsys.readouterr().err
    runs = data_dir / "runs"
    assert not runs.exists() or not any(runs.iterdir())
    # each step once, where raw input enters; what takes the typed config (job store, trainer) checks nothing again
    sources = {str(p.relative_to(ROOT)): p.read_text() for p in [*CORE.rglob("*.py"), *ROOT.glob("pages/*.py")]}
    assert {f for f, text in sources.items() if "check_world(" in text} == {
        "fer_core/training/validation.py", "fer_core/cli/training.py", "fer_core/jobs/sweep.py", "pages/train.py"}
    for old in ("check_config", "validate_config", ".problems()", ".validate()", ".from_dict(", "TrainConfig.check("):
        assert not [f for f, text in sources.items() if old in text], old


def test_one_default_tta_everywhere():
    from fer_core.cli import build_parser
    from fer_core.inference.forward import DEFAULT_TTA
    from fer_core.inference.loader import DEFAULT_MODEL_DIR
    from fer_core.runs.model_folder import read_model_metrics

    parser = build_parser()
    for argv in (["evaluate"], ["predict", "x.jpg"], ["recalibrate", "RUN"]):
        assert parser.parse_args(argv).tta == DEFAULT_TTA, argv
    # the pages' TTA boxes start on it too: tests/test_pages.py (evaluate, predict)
    metrics = read_model_metrics(DEFAULT_MODEL_DIR)
    assert metrics["default_tta"] == DEFAULT_TTA
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    headline = metrics["results"][f"PrivateTest/{DEFAULT_TTA}"]["accuracy"]
    assert f"**{DEFAULT_TTA}**" in card and f"{headline * 100:.2f}%" in card


def test_recipes_spell_out_every_stage_of_the_shipped_model():
    """Every member of the shipped ensemble, every stage of each, is a named recipe whose
    command is in the card and in README."""
    from fer_core.inference.loader import DEFAULT_MODEL_DIR
    from fer_core.runs.recipes import find_recipe, get_recipe, list_recipes
    from fer_core.runs.model_folder import read_model_metrics
    from fer_core.runs.trainconfig import TrainConfig

    recipes = {r.name: r for r in list_recipes()}
    metrics = read_model_metrics(DEFAULT_MODEL_DIR)
    assert len(metrics["members"]) >= 2, "the shipped model is an ensemble"
    # v1's stages chain: each starts from the run of the stage before it, by that recipe's run name
    chain = [get_recipe(f"default-v1-stage{i}") for i in range(1, 6)]
    assert chain[0].config["init_from"] == ""
    assert [r.config["init_from"] for r in chain[1:]] == [r.run for r in chain[:-1]]
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for member in metrics["members"]:
        # each member is v1 (its five stages) or one run of its own default-v2-memberN recipe
        last = find_recipe(TrainConfig.parse(member["config"]))
        stages = chain if last.name == "default-v1-stage5" else [last]
        assert last.name == "default-v1-stage5" or last.name.startswith("default-v2-member")
        assert [st["recipe"] for st in member["stages"]] == [r.name for r in stages]
        for recipe in stages:
            assert recipe.command() in card and recipe.command() in readme
    assert "fer-vgg-v2" in recipes and "--set" not in readme.split("## Training the shipped model")[1].split("##")[0]


def test_model_card_describes_any_architecture():
    from fer_core.models.build import create_model
    from fer_core.shipping.card import describe_network

    study_b = describe_network(create_model("study-b", 7))
    assert study_b.startswith("4 convolution layers (3x3, 32-64 filters)") and "1 hidden dense layer of 1024 units" in study_b
    tiny = describe_network(create_model("tiny", 7))
    assert "3 convolution layers" in tiny and "batch-norm" not in tiny and "dense layer" not in tiny
    resnet = describe_network(create_model("resnet18", 7))
    assert "residual connections" in resnet and "global average pooling" in resnet


def test_study_table_shows_the_layer_notation_of_a_study_preset(tmp_path):
    from fer_core.runs import rundir
    from fer_core.training.catalog import summarize

    for arch, notation in (("study-b", "CBCBPD-CBCBPD-FBDF"), ("cbcbpd-cbcbpd-fbdf", "CBCBPD-CBCBPD-FBDF"), ("tiny", "CP-CP-CP-F"), ("resnet18", "")):
        run = tmp_path / arch
        run.mkdir()
        rundir.write_config(run, TrainConfig.for_model(arch))
        row = summarize(run).study_row()
        assert row["architecture"] == notation, (arch, row)
        assert row["decay"] is not None and row["weight decay"] is not None  # numbers, never "None"


def test_the_server_listens_on_loopback_by_default():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] in ("127.0.0.1", "localhost", "::1")
    assert "Serving a class safely" in (ROOT / "README.md").read_text()


def test_study_table_reference_points_beside_the_runs(tmp_path):
    from fer_core.inference.loader import DEFAULT_MODEL_DIR
    from fer_core.runs.model_folder import read_model_metrics
    from fer_core.training.catalog import STUDY_COLUMNS, reference_rows

    rows = reference_rows()
    assert all(tuple(r) == STUDY_COLUMNS for r in rows)  # every row has every column
    published = {r["run"].split(",")[0]: r for r in rows if r["kind"] == "published"}
    assert published["Pramerdorfer & Kampel 2016"]["test accuracy"] == 0.727
    assert published["Pramerdorfer & Kampel 2016"]["architecture"] == "CBCBPD-CBCBPD-CBCBPD-CBCBPD-FBDFB"
    assert published["Kaggle FER2013 challenge winner (Tang 2013"]["test accuracy"] == 0.7116
    (shipped,) = [r for r in rows if r["kind"] == "shipped model"]
    metrics = read_model_metrics(DEFAULT_MODEL_DIR)
    tta = metrics["default_tta"]
    assert shipped["test accuracy"] == metrics["results"][f"PrivateTest/{tta}"]["accuracy"]  # read, not typed in
    assert shipped["architecture"] and shipped["parameters"] == metrics["params"]
    assert [r["kind"] for r in reference_rows(tmp_path)] == ["published", "published"]  # no shipped model there


def test_importing_the_core_package_installs_nothing_and_start_up_steps_live_in_bootstrap():
    """Start-up tricks (an import finder, aiortc before TensorFlow, a TensorFlow thread, Streamlit's
    private page flag) are :mod:`bootstrap`'s steps; importing ``fer_core`` under another backend
    changes neither the import machinery nor the threads."""
    import os
    import subprocess
    import sys

    script = ("import sys, threading; finders = list(sys.meta_path); threads = threading.active_count()\n"
              "import fer_core, fer_core.config, fer_core.device, fer_core.inference.loader, fer_core.jobs\n"
              "assert sys.meta_path == finders, sys.meta_path\n"
              "assert threading.active_count() == threads\n"
              "from fer_core.device import fence_tensorflow\n"
              "fence_tensorflow()\n"
              "assert len(sys.meta_path) == len(finders) + 1  # the fence is there to install, when asked\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    tricks = ("import aiortc", "PagesManager", "threading.Thread(", "sys.meta_path.insert")
    places = {trick: sorted(str(p.relative_to(ROOT)) for p in [*CORE.rglob("*.py"), *ROOT.glob("*.py"),
                                                                 *(ROOT / "pages").glob("*.py")]
                            if trick in p.read_text()) for trick in tricks}
    assert places["import aiortc"] == ["bootstrap.py"] and places["PagesManager"] == ["bootstrap.py"], places
    assert places["sys.meta_path.insert"] == ["fer_core/device.py"], places  # defined there, called by bootstrap and the CLI
    assert "ui.py" not in places["threading.Thread("], places


#: The longest a function in fer_core may be: longer ones are split into named steps.
MAX_FUNCTION_LINES = 80


def test_no_function_in_the_core_package_is_longer_than_a_screen():
    long = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
