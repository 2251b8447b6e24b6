"""Predict page: upload photos or use the camera; every face found, classified and explained.

Three modes, one function each (:func:`photos_section`, :func:`video_section`,
:func:`live_section`), given the model and the sidebar's :class:`Options`; :func:`main` runs them.
"""

import bootstrap  # noqa: F401  (first: the app's own navigation on a deep link, before the heavy imports)
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from fer_core.errors import FerError
from fer_core.inference.explain import overlay
from fer_core.inference.faces import DEFAULT_DETECTOR, DETECTORS
from fer_core.fmt import fmt_seconds
from fer_core.inference.loader import ModelRef, resolve_model
from fer_core.inference.live import LiveAnalyser, camera_allowed, page_url
from fer_core.inference.photo import PHOTO_TYPES, ImageResult, max_photos, within_limits
from fer_core.inference.forward import DEFAULT_TTA, TTA_MODES
from fer_core.inference.video import DEFAULT_FPS, VIDEO_TYPES, analyse_video_bytes, probe_video
from ui import (analysis_slot, cached_analysis, cached_model, chart, example_faces, model_choices, model_select,
                presenting, speed_index, stop_on_error, use_app_navigation)

DETECTOR_NAMES = {"yunet": "YuNet", "haar": "Haar cascades"}
DETECT = {"auto": "Find the faces (small images are taken as one face)", "always": "Always run the face detector",
          "never": "The whole image is the face"}
MODES = ["Photos", "A video", "Live camera"]
SPEED_FIRST = ("A video", "Live camera")  # modes where every frame counts: the fast model by default
PROBABILITY_ROW = 26  # px per class in the probability chart: room for every label at any width
TIMELINE_HEIGHT = 240  # px of the timeline's plot: lines 1% apart stay apart
FPS_CHOICES = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0]
MAX_TIMELINES = 8  # timelines drawn (the longest tracks); short flickers stay in the table


@dataclass
class Options:
    """What the sidebar chose; the live camera leaves those it ignores None."""

    spec: str | None  # the model, as resolve_model takes it (None: the app's model)
    detector: str
    tta: str | None = None
    detect: str | None = None
    explain: bool | None = None
    occlude: bool | None = None


def sidebar(choices: dict[str, str], mode: str | None) -> Options:
    """The sidebar's model and options for ``mode`` (the mode radio's value from the last run)."""
    with st.sidebar:
        st.header("Model")
        if mode in SPEED_FIRST:
            spec = model_select("Model for video and the live camera", choices, "pr_model_speed",
                                speed_index(choices, st.session_state.get("pr_model")), persist_state="page",
                                help="Speed first: the shipped fast model, when there is one, is the default here; "
                                     "photos keep their own choice (the most accurate model by default).")
        else:
            spec = model_select("Model", choices, "pr_model", persist_state="page")
        # the live camera uses the model and the detector only (no TTA: speed first); the options it
        # ignores are hidden there and keep their values for the other modes (persist_state)
        live = mode == "Live camera"
        tta = detect = explain = occlude = None
        if not live:
            tta = st.selectbox("Test-time augmentation", TTA_MODES, index=TTA_MODES.index(DEFAULT_TTA), key="pr_tta",
                               persist_state="page",
                               help="Average the predictions over mirrored (flip) or ten shifted and mirrored crops "
                                    "(tencrop).")
            detect = st.radio("Faces", list(DETECT), format_func=DETECT.get, key="pr_detect", persist_state="page")
        detector = st.radio("Face detector", DETECTORS, index=DETECTORS.index(DEFAULT_DETECTOR), key="pr_detector",
                            format_func=DETECTOR_NAMES.get, horizontal=True,
                            help="YuNet (a small CNN) finds turned, tilted, small and large faces and turns each one "
                                 "upright before the model sees it; Haar is OpenCV's classic cascade detector.")
        if not live:
            explain = st.checkbox("Show what the model looked at (Grad-CAM)", value=True, key="pr_explain",
                                  persist_state="page")
            occlude = st.checkbox("And what covering each part does (occlusion)", value=False, key="pr_occlude",
                                  persist_state="page",
                                  help="A grey square slides over the 48x48 face; red where hiding it lowers the "
                                       "predicted class's probability most. A second opinion on Grad-CAM; about a "
                                       "second per face.")
        else:
            st.caption("The live camera uses no test-time augmentation and draws no explanations (speed first): "
                       "those options show in the other modes.")
    return Options(spec, detector, tta, detect, explain, occlude)


# ------------------------------------------------------------------------------------ photos
def probability_chart(probs: pd.DataFrame, winner: str) -> alt.LayerChart:
    """One bar per class with every class name shown (Vega would drop overlapping labels: each
    row gets room, and labels never overlap-hide), the winner in red and labelled with its share."""
    base = alt.Chart(probs).encode(
        y=alt.Y("class:N", sort=list(probs["class"]), title=None,
                axis=alt.Axis(labelOverlap=False, labelLimit=300, labelFontSize=13)))
    bars = base.mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title=None),
        color=alt.condition(alt.datum["class"] == winner, alt.value("#e45756"), alt.value("#4c78a8")),
        tooltip=["class", alt.Tooltip("probability:Q", format=".1%")])
    text = base.mark_text(align="left", dx=4, fontWeight="bold").encode(
        x="probability:Q", text=alt.Text("probability:Q", format=".0%")).transform_filter(
        alt.datum["class"] == winner)
    return (bars + text).properties(height=PROBABILITY_ROW * len(probs))


def photo_inputs() -> list[tuple[str, bytes]]:
    """The photos to analyse: the uploads (within the limits, the rest refused with a warning), the
    camera's picture, else an example face once one is tried."""
    uploads = st.file_uploader("Photos", type=list(PHOTO_TYPES), accept_multiple_files=True, key="pr_upload",
                               help="JPEG (also .jfif), PNG, WebP, BMP, GIF (first frame) or TIFF; phone photos are "
                                    f"turned upright. At most {max_photos()} photos at a time.")
    images, refused = within_limits([(u.name, u.getvalue()) for u in uploads or []])
    if refused:
        st.warning(refused)
    if st.toggle("Use the camera", key="pr_camera_on"):
        shot = st.camera_input("Take a picture", key="pr_camera")
        if shot is not None:
            images.append(("camera", shot.getvalue()))
    if not images:
        st.caption("No photo? Try one of these faces (drawn by FER Studio, or from your FER2013 when it is set up):")
        examples = example_faces()
        cols = st.columns(len(examples))
        for col, (name, png) in zip(cols, examples.items()):
            col.image(png, caption=name, width=96)
            if col.button("Try it", key=f"pr_ex_{name}"):
                st.session_state["pr_example"] = name
        if st.session_state.get("pr_example") in examples:
            name = st.session_state["pr_example"]
            images = [(name, examples[name])]
    return images


def face_cards(res: ImageResult, n: int, classes: tuple[str, ...], opts: Options) -> None:
    """One card per face of photo number ``n``: its crop, its probabilities and its explanations."""
    for i, face in enumerate(res.faces, 1):
        with st.container(border=True, key=f"face_card_{n}_{i}"):  # stacks when narrow (ui.SCREEN_CSS)
            left, mid, right = st.columns([1, 3, 1])
            left.image(face.crop, caption=f"face {i}: what the model saw (48x48)", width=144)
            probs = pd.DataFrame({"class": list(classes), "probability": face.proba})
            mid.markdown(f"**Face {i}: {face.label}** ({face.proba.max():.0%}) · box {face.box.as_list()}"
                         + (f" · turned {face.angle:+.0f}° upright" if abs(face.angle) >= 1 else ""))
            with mid:
                chart(probability_chart(probs, face.label), width="stretch")
            if face.cam is not None:
                right.image(overlay(face.crop, face.cam), caption=f"Grad-CAM for '{face.label}'", width=144)
            elif opts.explain:
                right.caption(face.cam_note or "No heat map for this face.")
            if face.occlusion is not None:
                right.image(overlay(face.crop, face.occlusion), caption="Occlusion: covering these parts costs "
                            f"'{face.label}' most", width=144)
            elif opts.occlude:
                right.caption(face.occlusion_note or "No occlusion map for this face.")


def photos_section(ref: ModelRef, opts: Options, model_label: str) -> None:
    """Photos (uploaded, from the camera, or an example): each one drawn with its faces boxed, a
    card per face (what the model saw, its probabilities, its explanations), and a table of all
    faces when there are several photos."""
    images = photo_inputs()
    if not images:
        return
    analysed = [cached_analysis(name, data, str(ref.path), ref.stamp, opts.detect, opts.tta, opts.explain,
                                opts.detector, opts.occlude) for name, data in images]
    results = [res for res, _ in analysed]
    st.caption(f"Model: {model_label} · {len(ref.classes)} classes · TTA {opts.tta}")
    for n, (res, picture) in enumerate(analysed):
        st.subheader(res.file)
        if res.error:
            st.error(res.error)
            continue
        if not res.faces:
            st.warning(f"No face found in {res.file} ({res.size[0]}x{res.size[1]}). If the photo is a face crop, "
                       "choose 'The whole image is the face' in the sidebar; otherwise try a larger, more frontal "
                       "face.")
            st.image(picture, width=400)
            continue
        st.image(picture, caption=f"{len(res.faces)} face(s)" + (f", found by {DETECTOR_NAMES[res.detector]}"
                                                                 if res.detected else " (the whole image)"),
                 width=min(res.size[0], 800) if res.size[0] > 48 else 192)
        face_cards(res, n, ref.classes, opts)
    if len(results) > 1:
        table = [{"file": r.file, "face": i, "label": f.label, "confidence": float(np.max(f.proba))}
                 for r in results for i, f in enumerate(r.faces, 1)]
        # a long file name takes the room left (and is cut, in full on hover), never the confidence's
        st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch", column_config={
            "file": st.column_config.TextColumn(width="large"), "face": st.column_config.NumberColumn(width="small"),
            "label": st.column_config.TextColumn(width="small"),
            "confidence": st.column_config.NumberColumn(format="percent", width="small")})


# ------------------------------------------------------------------------------------- video
def track_chart(rows: list[dict], classes: tuple[str, ...]) -> alt.Chart:
    """Each class's probability over time for one track: one line per class, each class its own
    colour (tableau10, in class order, as on the Explore page) and named in the legend on the right,
    which takes none of the plot's height."""
    return alt.Chart(pd.DataFrame(rows)).mark_line(point=alt.OverlayMarkDef(size=12)).encode(
        x=alt.X("t:Q", title="time (s)"),
        y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title=None),
        color=alt.Color("class:N", scale=alt.Scale(domain=list(classes), scheme="tableau10"),
                        legend=alt.Legend(orient="right", title=None, labelLimit=0)),
        tooltip=[alt.Tooltip("t:Q", title="time (s)", format=".2f"), "class",
                 alt.Tooltip("probability:Q", format=".1%")]).properties(height=TIMELINE_HEIGHT)


@st.cache_data(max_entries=8, ttl=1800, show_spinner=False)
def video_note(data: bytes, name: str, fps: float) -> str | None:
    """What is said of the video's length before it is analysed (see fer_core.inference.video.limit_note)."""
    return probe_video(data, name, fps)[1]


def shares_text(share: dict[str, float]) -> str:
    """``happy 83% · neutral 17%``: the classes a track was given, largest share first."""
    return " · ".join(f"{c} {v:.0%}" for c, v in sorted(share.items(), key=lambda kv: -kv[1]) if v > 0)


def analyse_video_upload(data: bytes, name: str, fps: float, key: tuple, ref: ModelRef, model,
                         opts: Options) -> dict | None:
    """The Analyse button (greyed out while it runs), a Cancel button and a progress bar; the
    analysis once asked for, kept in the session as ``pr_video_done``. None until there is one."""
    try:
        with analysis_slot():  # the upload is written to a temporary file to be read: gated like the analysis
            note = video_note(data, name, fps)
    except FerError as exc:
        st.error(str(exc))
        return None
    if note:  # said before the work starts
        st.warning(note)
    controls = st.empty()  # the buttons and the progress bar, cleared when the analysis is done
    with controls.container():
        if st.session_state.pop("pr_video_cancelled", False):
            st.info("Analysis cancelled: nothing was kept. Press the button to start again.")
        running = st.session_state.pop("pr_video_started", None) == key  # a click starts one run, once
        # one button, greyed out while it runs (a second click cannot start it again); one key, so the
        # browser updates it in place and never shows it twice
        st.button("Analyse the video", type="primary", key="pr_video_go", disabled=running,
                  on_click=lambda: st.session_state.update(pr_video_started=key))
        if not running:
            return None
        st.button("Cancel", key="pr_video_cancel", on_click=lambda: st.session_state.update(pr_video_cancelled=True))
        bar, started = st.progress(0.0, text="Reading the video…"), time.monotonic()

    def progress(seconds: float, total: float | None) -> None:
        frac = min(seconds / total, 1.0) if total else 0.0
        left = (time.monotonic() - started) * (1 - frac) / frac if frac > 0 else None
        bar.progress(frac, text=f"{seconds:.0f} s" + (f" of {total:.0f} s" if total else "")
                     + f" of video analysed · about {fmt_seconds(left)} left")

    try:
        with analysis_slot():
            result, webm = analyse_video_bytes(data, name, model, ref.classes, fps=fps, tta=opts.tta,
                                               detector=opts.detector, progress=progress, annotated=True,
                                               larger=presenting())
    except FerError as exc:
        controls.empty()
        st.error(str(exc))
        return None
    controls.empty()
    done = st.session_state["pr_video_done"] = {"key": key, "result": result, "webm": webm}
    return done


def show_video_result(result, webm: bytes, name: str, ref: ModelRef, tta: str) -> None:
    """The annotated video, its downloads, a summary per track and the longest tracks' timelines."""
    if result.note:
        st.warning(result.note)
    tracks = result.tracks()
    span = result.frames[-1].t if result.frames else 0.0
    st.caption(f"{name}: {result.size[0]}x{result.size[1]}, {len(result.frames)} frames analysed over {span:.1f} s "
               f"({result.fps:g} per second) · {len(tracks)} face track(s), found by {DETECTOR_NAMES[result.detector]}"
               f" · TTA {tta}")
    left, right = st.columns([3, 2])
    left.video(webm, format="video/webm")
    right.download_button("Annotated video (WebM)", webm, file_name=Path(name).stem + "-annotated.webm",
                          mime="video/webm", key="pr_video_dl")
    right.download_button("Results (JSON)", json.dumps({**result.to_json(), "model": ref.name}, indent=2),
                          file_name=Path(name).stem + ".json", mime="application/json", key="pr_video_json")
    if not tracks:
        st.warning("No face found in the analysed frames. Try more frames per second, or a video with larger, more "
                   "frontal faces.")
        return
    # the classes' shares in one column, largest first: eleven columns were cut at 1,024 px (the JSON has them all)
    table = pd.DataFrame([{"track": tr["track"], "seen (s)": f"{tr['first']:.1f}-{tr['last']:.1f}",
                           "frames": tr["frames"], "mostly": tr["dominant"],
                           "share of its frames": shares_text(tr["share"])} for tr in tracks])
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "track": st.column_config.NumberColumn(width="small"), "seen (s)": st.column_config.TextColumn(width="small"),
        "frames": st.column_config.NumberColumn(width="small"), "mostly": st.column_config.TextColumn(width="small"),
        "share of its frames": st.column_config.TextColumn(width="large")})
    longest = sorted(tracks, key=lambda tr: -tr["frames"])[:MAX_TIMELINES]
    for tr in sorted(longest, key=lambda tr: tr["track"]):
        with st.expander(f"Track {tr['track']}: mostly {tr['dominant']} "
                         f"({tr['share'][tr['dominant']]:.0%} of {tr['frames']} frames)", expanded=tr is longest[0]):
            chart(track_chart(result.timeline(tr["track"]), ref.classes), width="stretch")
    if len(tracks) > MAX_TIMELINES:
        st.caption(f"Timelines of the {MAX_TIMELINES} longest tracks; every track is in the table and the JSON.")


def video_section(ref: ModelRef, model, opts: Options) -> None:
    """Upload a video, analyse it with a progress bar (and a Cancel button), then show the
    annotated video, a summary per track and each track's emotion timeline."""
    up = st.file_uploader("Video", type=list(VIDEO_TYPES), key="pr_video",
                          help="MP4, WebM, MOV, AVI or MKV. Frames are analysed at the rate below, faces followed "
                               "from frame to frame as tracks.")
    fps = st.select_slider("Frames analysed per second of video", FPS_CHOICES, value=DEFAULT_FPS, key="pr_fps")
    if up is None:
        st.caption("Each face is boxed and numbered in an annotated copy of the video, with its emotion over time.")
        return
    data = up.getvalue()
    key = (hashlib.sha1(data).hexdigest(), up.name, fps, str(ref.path), ref.stamp, opts.tta, opts.detector)
    done = st.session_state.get("pr_video_done")
    if done is None or done["key"] != key:
        done = analyse_video_upload(data, up.name, fps, key, ref, model, opts)
        if done is None:
            return
    show_video_result(done["result"], done["webm"], up.name, ref, opts.tta)


# ------------------------------------------------------------------------------- live camera
@st.fragment(run_every=1.0)
def live_readout(analyser, classes: tuple[str, ...]) -> None:
    """What the camera shows now, refreshed every second without rerunning the page."""
    st.markdown(f"**{analyser.readout()}**")
    rows = analyser.timeline()
    if rows:
        chart(alt.Chart(pd.DataFrame(rows)).mark_line(point=alt.OverlayMarkDef(size=10)).encode(
            x=alt.X("seconds ago:Q", scale=alt.Scale(domain=[-30, 0]), title="seconds ago"),
            y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title=None),
            color=alt.Color("emotion:N", sort=list(classes), legend=alt.Legend(orient="bottom", columns=4,
                                                                               title=None)),
            detail="track:N", tooltip=["track", "emotion", alt.Tooltip("probability:Q", format=".0%")],
        ).properties(height=200), width="stretch")
    else:
        st.caption("The readout and the last 30 seconds appear here once the camera runs.")


def live_section(ref: ModelRef, model, detector: str, model_label: str) -> None:
    """The camera, live: every analysed frame's faces boxed and labelled on the returned stream,
    a readout refreshed every second and the last 30 seconds as a timeline."""
    here = page_url(st.context.url, st.context.headers.to_dict())
    if here and not camera_allowed(here):  # the browser would refuse the camera without a word
        st.warning(f"**The camera will not start at this address** ({urlsplit(here).netloc}): browsers give the "
                   "camera only to pages opened over HTTPS, or on the machine itself (`http://localhost:8501`, "
                   "`http://127.0.0.1:8501`). Open FER Studio over HTTPS (ask whoever runs the server), or "
                   "use the live camera on the server's own machine. README, \"Live camera\", says how to serve "
                   "it over HTTPS. Photos and videos work at any address.", icon="🔒")
    if "aiortc" not in sys.modules and "tensorflow" in sys.modules:
        st.error("The live camera needs the server started with `streamlit run app.py` (its WebRTC library must be "
                 "loaded before TensorFlow; here it was not, and loading it now would crash the server).")
        return
    import av
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    key = (str(ref.path), ref.stamp, detector)
    if st.session_state.get("pr_live_key") != key:  # one analyser per viewer and model
        st.session_state["pr_live_key"] = key
        st.session_state["pr_live"] = LiveAnalyser(model, ref.classes, detector=detector, tta="none")
    analyser = st.session_state["pr_live"]

    def on_frame(frame):  # the component's thread: no Streamlit calls here
        return av.VideoFrame.from_ndarray(analyser.process(frame.to_ndarray(format="bgr24")), format="bgr24")

    left, right = st.columns([3, 2])
    with left:
        # no ICE servers: the page and the server are on one machine or network (see README, "Live camera")
        webrtc_streamer(key="pr_live_cam", mode=WebRtcMode.SENDRECV, rtc_configuration={"iceServers": []},
                        media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
                        video_frame_callback=on_frame, async_processing=True)
        st.caption(f"Model: {model_label}, without test-time augmentation "
                   f"(speed first) · faces found by {DETECTOR_NAMES[detector]}. Press START; STOP releases the camera.")
    with right:
        live_readout(analyser, ref.classes)


# -------------------------------------------------------------------------------------- page
def main() -> None:
    use_app_navigation()
    st.title("Predict")
    choices = model_choices()
    opts = sidebar(choices, st.session_state.get("pr_mode"))
    with stop_on_error():
        ref = resolve_model(opts.spec)
        model = cached_model(str(ref.path), ref.stamp)
    if model.note:  # the engine fell back to Keras: slower, and the page says why
        st.info(model.note)
    model_label = choices.get(opts.spec, ref.name) if opts.spec else ref.name
    mode = st.radio("Analyse", MODES, horizontal=True, key="pr_mode", label_visibility="collapsed")
    if mode == "A video":
        video_section(ref, model, opts)
    elif mode == "Live camera":
        live_section(ref, model, opts.detector, model_label)
    else:
        photos_section(ref, opts, model_label)


main()
