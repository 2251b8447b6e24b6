"""What the app does first, before anything heavy is imported: every start-up step, in one place.

Importing this module runs :func:`start` (``app.py`` and every page import it first; a page can
be run alone, on a fresh server's deep link). Each step is done once per process, in this order:

1. **The app's navigation on a deep link.** With a ``pages/`` folder beside ``app.py``,
   Streamlit serves a fresh server's first request through its older folder discovery until some
   session runs ``st.navigation``: a bookmarked page (``/predict``) then runs alone, under a
   sidebar that lists the folder's files (``app``, ``dataset``...). On such a request this turns
   that discovery off (Streamlit's own flag, guarded in case it goes) and reruns at once, before
   the page's imports take their seconds: ``app.py`` then routes the same URL to the same page.
2. **TensorFlow fenced off under another Keras backend** (``KERAS_BACKEND=jax`` or ``torch``):
   Keras imports TensorFlow by itself when it is installed (:func:`fer_core.device.fence_tensorflow`).
   The command line does the same at its entry (``fer_core.cli.main``); the core package installs
   nothing when it is imported.
3. **aiortc before TensorFlow.** The live camera's WebRTC library must be loaded before
   TensorFlow: loaded after it, the process crashes (aiortc's libsrtp binds to TensorFlow's own
   crypto symbols; aiortc 1.16, TensorFlow 2.21).
4. **TensorFlow imported on a background thread**, quietly (its CUDA probe and oneDNN notes read
   like failures in the server's log), started by the first page once its own imports are done
   (``ui.use_app_navigation``: a thread importing TensorFlow beside a page importing the same
   libraries could leave one of them half-initialised). Pages that need it wait for it
   (:func:`fer_core.device.quiet_tensorflow`, whose lock keeps two first imports from racing).
5. **A "starting" notice:** the first page after a start imports pandas, Altair and the core
   package (seconds on a busy machine); ``app.py`` shows :func:`starting` above the page meanwhile.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from fer_core.device import fence_tensorflow, quiet_tensorflow, tensorflow_ready

#: Imported by every page: while one of them is missing, this process has not shown a page yet.
HEAVY_MODULES = ("pandas", "altair", "ui")
#: The background import's thread (one per process).
TENSORFLOW_THREAD = "tensorflow-import"
_STARTED = threading.Lock()


def start() -> None:
    """Steps 1-3 of the module's docstring, each once per process (safe from any session)."""
    app_navigation()
    with _STARTED:
        fence_tensorflow()
        load_aiortc_first()


def app_navigation() -> None:
    """On a fresh server's folder-discovered request, switch to the app's navigation and rerun."""
    if getattr(PagesManager, "uses_pages_directory", False) and Path(sys.argv[0]).name == "app.py":
        PagesManager.uses_pages_directory = False
        st.rerun()


def load_aiortc_first() -> None:
    """Import aiortc (the live camera) while TensorFlow is not loaded yet; nothing if it is not installed."""
    if "tensorflow" not in sys.modules and "aiortc" not in sys.modules:
        try:
            import aiortc  # noqa: F401
        except ImportError:
            pass


def import_tensorflow_in_background() -> None:
    """Step 4: start the quiet TensorFlow import on a thread, unless done or under way."""
    with _STARTED:
        if tensorflow_ready() or any(t.name == TENSORFLOW_THREAD for t in threading.enumerate()):
            return
        threading.Thread(target=_import_tensorflow, name=TENSORFLOW_THREAD, daemon=True).start()


def _import_tensorflow() -> None:
    try:
        quiet_tensorflow()
    except Exception:  # a broken install shows where TensorFlow is used, with its message
        pass


@contextmanager
def starting() -> Iterator[None]:
    """Around a page's run: a "starting" notice while this process loads the pages' libraries
    for the first time, gone once the page has run."""
    notice = None
    if not all(name in sys.modules for name in HEAVY_MODULES):
        notice = st.empty()
        notice.info("⏳ Starting FER Studio: loading its libraries, a few seconds after a restart…")
    try:
        yield
    finally:
        if notice is not None:
            notice.empty()


start()  # on import: app.py and every page import this module before anything heavy
