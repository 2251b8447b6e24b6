"""Dataset page: choose a source, see its class distribution, browse faces, mean faces."""

import altair as alt
import pandas as pd
import streamlit as st

from fer_core import stats
from fer_core.config import DEMO_SOURCE, SPLITS, Settings, load_settings, save_settings
from fer_core.data import known_sources
from fer_core.errors import FerError
from fer_core.uploads import save_upload
from ui import active_source, cached_dataset, use_app_navigation

use_app_navigation()
st.title("Dataset")

# ------------------------------------------------------------------ source choice
known = known_sources()
current = active_source()

with st.sidebar:
    st.header("Source")
    kinds = ["Demo data set", "Found data sets", "Path", "Upload"]
    default_kind = 0 if current == DEMO_SOURCE else (1 if current in known else 2)
    kind = st.radio("Where from", kinds, index=default_kind, key="source_kind")
    source = None
    if kind == "Demo data set":
        source = DEMO_SOURCE
    elif kind == "Found data sets":
        if known:
            source = st.selectbox("Data set", known, index=known.index(current) if current in known else 0)
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
            try:
                source = str(save_upload(upload.name, upload.getvalue()))
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

try:
    ds = cached_dataset(source, merge, skip_bad)
except FerError as exc:
    st.error(str(exc))
    st.stop()

st.caption(f"Source: **{ds.source}** · {len(ds):,} images · {ds.num_classes} classes"
           + (f" · merged: {ds.merge}" if ds.merge else ""))
if ds.skipped:
    st.warning(f"Skipped {ds.skipped:,} bad rows/files. First: " + "; ".join(ds.problems[:3]))
settings = load_settings()
if source != settings.active_source() or merge != settings.merge:
    if st.button("Use this data set in the app", type="primary"):
        save_settings(Settings(data_source="" if source == DEMO_SOURCE else source, merge=merge, model=settings.model))
        st.success("Saved: the other pages now use this data set.")
else:
    st.caption("This is the app's active data set.")

tab_dist, tab_samples, tab_mean = st.tabs(["Class distribution", "Samples", "Mean faces & histogram"])

with tab_dist:
    counts = pd.DataFrame(stats.counts_table(ds))
    chart = alt.Chart(counts).mark_bar().encode(
        x=alt.X("class:N", sort=list(ds.class_names), title="class"),
        xOffset=alt.XOffset("split:N", sort=list(SPLITS)),
        y=alt.Y("count:Q", title="images"),
        color=alt.Color("split:N", sort=list(SPLITS)),
        tooltip=["class", "split", "count"],
    )
    st.altair_chart(chart, width="stretch")
    table = counts.pivot(index="class", columns="split", values="count").reindex(index=list(ds.class_names),
                                                                               columns=list(SPLITS))
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    st.dataframe(table, width="stretch")

with tab_samples:
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
    else:
        cols = st.columns(12)
        for k, i in enumerate(idx):
            cols[k % 12].image(ds.images[i], caption=f"#{i} {ds.class_names[ds.labels[i]]}", width="stretch")
        chosen = st.selectbox("Inspect image", [int(i) for i in idx],
                              format_func=lambda i: f"#{i} · {ds.class_names[ds.labels[i]]}", key="inspect")
        big, info = st.columns([1, 2])
        big.image(ds.images[chosen], width=240, clamp=True)
        info.markdown(
            f"**Index** {chosen}  \n**Label** {ds.class_names[ds.labels[chosen]]} ({ds.labels[chosen]})  \n"
            f"**Split** {ds.splits[chosen]}  \n**From** {ds.origins[chosen]}  \n"
            f"**Mean intensity** {ds.images[chosen].mean():.1f}"
        )

with tab_mean:
    msplit = st.selectbox("Split", ["all", *SPLITS], key="mean_split")
    sub = ds if msplit == "all" else ds.subset(msplit)
    faces = stats.mean_faces(sub)
    if faces:
        cols = st.columns(len(faces))
        for col, (name, face) in zip(cols, faces.items()):
            col.image(face, caption=name, width="stretch")
    hist = pd.DataFrame(stats.pixel_histogram(sub)) if len(sub) else pd.DataFrame(columns=["intensity", "fraction"])
    st.altair_chart(alt.Chart(hist).mark_bar().encode(
        x=alt.X("intensity:Q", bin=alt.Bin(step=8), title="pixel intensity"),
        y=alt.Y("fraction:Q", title="fraction of pixels"),
    ), width="stretch")
