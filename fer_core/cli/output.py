"""The one way a command prints its result: JSON with ``--json``, else lines for people."""

from __future__ import annotations

import argparse
import json
from typing import Callable


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def emit(args: argparse.Namespace, doc, text: Callable[[], None] | str, one_line: bool = False) -> None:
    """Print ``doc`` as JSON when the command was given ``--json``, else ``text`` (a string, or a
    function that prints the human-readable form). ``one_line``: the JSON on one line (what a
    script reads line by line: a submitted job, a sweep)."""
    if getattr(args, "json", False):
        print(json.dumps(doc) if one_line else json.dumps(doc, indent=2))
    elif callable(text):
        text()
    else:
        print(text)
