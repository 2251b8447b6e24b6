"""What the benchmarks share: their command line and the model they measure (``from common import
...`` in a benchmark run as ``python benchmarks/bench_X.py``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def options(doc: str, **defaults) -> argparse.Namespace:
    """The benchmark's command line, described by the first line of its ``doc``: ``--name N`` for
    each default, of the default's type."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, default in defaults.items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    return parser.parse_args()


def shipped_engine():
    """The shipped default model as the app runs it (its engine), and its classes."""
    from fer_core.inference.engine import load_engine
    from fer_core.inference.loader import resolve_model

    ref = resolve_model("default")
    return load_engine(ref), ref.classes
