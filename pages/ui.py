"""Helpers shared by the pages: cached loaders and the active settings (UI side only)."""

from __future__ import annotations

import streamlit as st

from fer_core.config import load_settings
from fer_core.data import Dataset, load_dataset


@st.cache_data(show_spinner="Loading the data set…", max_entries=4)
def cached_dataset(source: str, merge: str = "", skip_bad: bool = False) -> Dataset:
    """Load a data set once per (source, merge, skip_bad) and session-independent."""
    return load_dataset(source, merge=merge, skip_bad=skip_bad)


def active_source() -> str:
    """The data source the app uses when a page is not told otherwise."""
    return load_settings().active_source()
