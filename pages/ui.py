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


@st.cache_data(show_spinner="Counting parameters…")
def model_table() -> dict[str, dict]:
    """The registry: ``{name: {"description", "params"}}`` (builds every model once)."""
    from fer_core.models import list_models

    return {m["name"]: m for m in list_models()}


@st.cache_data(show_spinner=False, max_entries=64)
def arch_params(arch: str, conv_widths: tuple, dense_widths: tuple, dropout: float, padding: str, crop: int) -> int:
    """Parameter count of a notation network (raises ConfigError when it cannot be built)."""
    from fer_core.models import create_model

    return int(create_model(arch, 7, crop=crop, conv_widths=list(conv_widths), dense_widths=list(dense_widths),
                            dropout=dropout, padding=padding).count_params())


def fmt_seconds(value) -> str:
    """``h:mm:ss`` for a duration in seconds, ``-`` when unknown."""
    if value is None:
        return "-"
    value = int(value)
    return f"{value // 3600}:{value // 60 % 60:02d}:{value % 60:02d}"
