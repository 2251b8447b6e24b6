"""Dataset page: choose a source, see its class distribution, browse faces, mean faces."""

import bootstrap  # noqa: F401  (first: the app's own navigation on a deep link, before the heavy imports)
import altair as alt
import pandas as pd
import streamlit as st

from fer_core.data import stats
from fer_core.config import DEMO_SOURCE, SPLITS, Settings, load_settings, read_only, save_settings
from fer_core.data.loading import describe_source, known_sources
from fer_core.errors import FerError
from fer_core.data.uploads import add_upload
from ui import active_source, cached_dataset, chart, stop_on_error, use_app_navigation

use_app_navigation(tensorflow=False)
st.title("Dataset")

@st.cache_data(show_spinner=False, ttl=300)
def source_label(source: str) -> str:
    """"fer2013 · 35,887 images": a short name and a count (files are counted, not decoded)."""
    return describe_source(source)


# ------------------------------------------------------------------ source choice
known = known_sources()
current = active_source()

with st.sidebar:
    st.header("Source")
    kinds = ["Demo data set", "Found data sets"] + ([] if read_only() else ["Path", "Upload"])
    default_kind = 0 if current == DEMO_SOURCE else (1 if current in known or read_only() else 2)
    kind = st.radio("Where from", kinds, index=default_kind, key="source_kind")
    source = None
    if kind == "Demo data set":
        source = DEMO_SOURCE
    elif kind == "Found data sets":
        if known:
            source = st.selectbox("Data set", known, index=known.index(current) if current in known else 0,
                                  format_func=source_label, help="Data sets in data/datasets and FER2013_DIR.")
            st.caption(source)  # the full path, under its short name
        else:
            st.caption("Nothing under data/datasets yet: upload one, or type a path.")
    elif kind == "Path":
        typed = st.text_input("CSV file or image folder",
                              value="" if current == DEMO_SOURCE else current,
                              placeholder="/path/to/fer2013.csv or /path/to/fer2013")
        source = typed.strip() or None
    else:
        upload = st.file_uploader("FER2013 CSV (.csv, .csv.gz) or zip of image folders",
                                  type=["csv", "gz", "zip"])
        if upload is not None:
            try:  # a data set that cannot be loaded is removed again at once
                source = str(add_upload(upload.name, upload.getvalue(),
                                        lambda p: cached_dataset(str(p), "", skip_bad=True)))
                st.caption(f"Stored as {source}")
            except FerError as exc:
                st.error(str(exc))
    merge = st.selectbox("Class merging", ["", "disgust=angry"],
                         format_func=lambda m: m or "none (7 classes)", key="merge")
    skip_bad = st.checkbox("Skip bad rows/files", value=False, help="Skip and count invalid rows or files "
                           "instead of refusing the whole data set.")

if source is None:
    st.info("Choose a data source in the sidebar.")
    st.stop()

with stop_on_error():
    ds = cached_dataset(source, merge, skip_bad)

st.caption(f"Source: **{ds.source}** · {len(ds):,} images · {ds.num_classes} classes"
           + (f" · merged: {ds.merge}" if ds.merge else ""))
if ds.skipped:
    st.warning(f"Skipped {ds.skipped:,} bad rows/files. First: " + "; ".join(ds.problems[:3]))
settings = load_settings()
if read_only():
    pass  # the lecturer chooses the app's data set; students browse what is there
elif source != settings.active_source() or merge != settings.merge:
    if st.button("Use this data set in the app", type="primary"):
        save_settings(Settings(data_source="" if source == DEMO_SOURCE else source, merge=merge, model=settings.model))
        st.success("Saved: the other pages now use this data set.")
else:
    st.caption("This is the app's active data set.")

tab_dist, tab_samples, tab_mean = st.tabs(["Class distribution", "Samples", "Mean faces & histogram"])

with tab_dist:
    counts = pd.DataFrame(stats.counts_table(ds))
    bars = alt.Chart(counts).mark_bar().encode(
        x=alt.X("class:N", sort=list(ds.class_names), title="class"),
        xOffset=alt.XOffset("split:N", sort=list(SPLITS)),
        y=alt.Y("count:Q", title="images"),
        color=alt.Color("split:N", sort=list(SPLITS)),
        tooltip=["class", "split", "count"],
    )
    chart(bars, width="stretch")
    table = counts.pivot(index="class", columns="split", values="count").reindex(index=list(ds.class_names),
                                                                               columns=list(SPLITS))
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    st.dataframe(table, width="stretch")

@st.dialog("Face", width="large")
def show_face(i: int) -> None:
    """One face, large, with where it comes from."""
    big, info = st.columns([1, 1])
    big.image(ds.images[i], width=288, clamp=True)
    info.markdown(f"**Index** {i}  \n**Label** {ds.class_names[ds.labels[i]]} ({ds.labels[i]})  \n"
                  f"**Split** {ds.splits[i]}  \n**From** {ds.origins[i]}  \n"
                  f"**Mean intensity** {ds.images[i].mean():.1f}")


@st.fragment
def samples() -> None:
    """The sample grid: its filters rerun only this part of the page."""
    c1, c2, c3 = st.columns(3)
    split = c1.selectbox("Split", ["all", *SPLITS], key="grid_split")
    cls = c2.selectbox("Class", ["all", *ds.class_names], key="grid_class")
    per_page = c3.selectbox("Per page", [24, 48, 96], index=1, key="grid_per_page")
    split_arg = None if split == "all" else split
    cls_arg = None if cls == "all" else cls
    _, pages = stats.page_indices(ds, split_arg, cls_arg, 1, per_page)
    page = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, key="grid_page")
    idx, _ = stats.page_indices(ds, split_arg, cls_arg, int(page), per_page)
    if len(idx) == 0:
        st.info("No images match this filter.")
        return
    st.caption("Click a face's label to see it large.")
    for row in range(0, len(idx), GRID_COLUMNS):  # one row of columns at a time: rows wrap on narrow screens
        with st.container(key=f"grid_row_{row}"):
            cols = st.columns(GRID_COLUMNS)
            for col, i in zip(cols, idx[row:row + GRID_COLUMNS]):
                col.image(ds.images[i], width="stretch")
                if col.button(f"#{i} {ds.class_names[ds.labels[i]]}", key=f"face{i}", type="tertiary"):
                    show_face(int(i))


@st.cache_data(show_spinner="Averaging the faces…", max_entries=4)
def class_means(key: tuple, _ds) -> dict[str, tuple[dict, list[dict]]]:
    """Per split (and "all"): the mean face of each class and the pixel histogram, all at once,
    so that switching splits costs nothing (``key`` names the data set)."""
    out = {}
    for split in ("all", *SPLITS):
        sub = _ds if split == "all" else _ds.subset(split)
        out[split] = stats.mean_faces(sub), stats.pixel_histogram(sub) if len(sub) else []
    return out


@st.fragment
def means() -> None:
    """Mean faces and the histogram: the split choice reruns only this part."""
    msplit = st.selectbox("Split", ["all", *SPLITS], key="mean_split")
    faces, hist = class_means((source, merge, skip_bad), ds)[msplit]
    if faces:
        cols = st.columns(len(faces))
        for col, (name, face) in zip(cols, faces.items()):
            col.image(face, caption=name, width="stretch")
    chart(alt.Chart(pd.DataFrame(hist, columns=["intensity", "fraction"])).mark_bar().encode(
        x=alt.X("intensity:Q", bin=alt.Bin(step=8), title="pixel intensity"),
        y=alt.Y("fraction:Q", title="fraction of pixels"),
    ), width="stretch")


GRID_COLUMNS = 8  # per row on a wide screen; fewer where it is narrow (ui.SCREEN_CSS)
with tab_samples:
    samples()
with tab_mean:
    means()
