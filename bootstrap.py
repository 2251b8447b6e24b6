"""What runs first, before anything heavy is imported: the app's own navigation at once, and a
"starting" notice while a fresh server loads its libraries.

- **The app's navigation on a deep link.** With a ``pages/`` folder beside ``app.py``, Streamlit
  serves a fresh server's first request through its older folder discovery until some session
  runs ``st.navigation``: a bookmarked page (``/predict``) then runs alone, under a sidebar that
  lists the folder's files (``app``, ``dataset``...). Every page imports this module first, so on
  such a request it turns that discovery off (Streamlit's own flag, guarded in case it goes) and
  reruns at once, before the page's imports take their seconds: ``app.py`` then routes the same
  URL to the same page, under the app's navigation.
- **A "starting" notice.** The first page after a start imports pandas, Altair and the core
  package (seconds on a busy machine): ``app.py`` shows :func:`starting` above the page meanwhile.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

#: Imported by every page: while one of them is missing, this process has not shown a page yet.
HEAVY_MODULES = ("pandas", "altair", "ui")


def app_navigation() -> None:
    """On a fresh server's folder-discovered request, switch to the app's navigation and rerun."""
    if getattr(PagesManager, "uses_pages_directory", False) and Path(sys.argv[0]).name == "app.py":
        PagesManager.uses_pages_directory = False
        st.rerun()


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


app_navigation()  # on import: every page imports this module before anything heavy
