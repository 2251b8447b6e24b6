"""Fuzzing the CSV loader and the image decoder with hypothesis: thousands of generated bad
inputs, each either loads or raises our own DataError; never another exception, never a hang.

The number of examples per test is ``FER_FUZZ_EXAMPLES`` (default 600; the same inputs on every run).
"""

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fer_core.data.images import open_image, read_face
from fer_core.data.loading import load_dataset
from fer_core.errors import DataError

EXAMPLES = int(os.environ.get("FER_FUZZ_EXAMPLES", "600"))
FUZZ = settings(max_examples=EXAMPLES, deadline=2000, suppress_health_check=list(HealthCheck), derandomize=True,
                database=None)
COUNTS = {"csv": 0, "csv_ok": 0, "image": 0, "image_ok": 0}

# -------------------------------------------------------------------- CSV
pixel = st.one_of(st.integers(0, 255).map(str), st.sampled_from(["-1", "256", "1.5", "x", "", "0x10", "1e2"]))
def _row_of(seed: int, n: int, bad: list[tuple[int, str]]) -> str:
    """n random pixel values (cheap to generate, unlike 2304 drawn one by one), some replaced."""
    values = np.random.default_rng(seed).integers(0, 256, n).astype(str)
    for pos, text in bad:
        if n:
            values[pos % n] = text
    return " ".join(values)


pixels = st.one_of(
    st.builds(_row_of, st.integers(0, 2**32), st.just(2304), st.just([])),  # valid
    st.builds(_row_of, st.integers(0, 2**32), st.integers(2300, 2310), st.lists(st.tuples(st.integers(0, 3000), pixel),
                                                                                  max_size=3)),
    st.lists(pixel, min_size=0, max_size=40).map(" ".join),
)
label = st.one_of(st.integers(-2, 9).map(str), st.sampled_from(["", "happy", "3.0", " 4", "NaN"]))
usage = st.sampled_from(["Training", "PublicTest", "PrivateTest", "training", "", "Test", "Usage"])
row = st.tuples(label, pixels, usage)
header = st.sampled_from(["emotion,pixels,Usage", "emotion, Usage, pixels", "emotion,pixels", "pixels,emotion",
                          "Emotion,Pixels,Usage", "a,b,c", "", "emotion,pixels,Usage,extra"])


def csv_text(head, rows, mangle):
    lines = [head] if head else []
    for lab, pix, use in rows:
        fields = {"emotion": lab, "pixels": pix, "usage": use}
        order = [h.strip().lower() for h in head.split(",")] if head else ["emotion", "pixels", "usage"]
        lines.append(",".join(f'"{fields[o]}"' if o == "pixels" and mangle % 3 else fields.get(o, "1") for o in order))
    text = "\n".join(lines)
    if mangle % 5 == 0:
        text = text[: len(text) * (mangle % 7 + 1) // 8]  # cut anywhere
    if mangle % 11 == 0:
        text = text.replace(",", ";", 1)
    return text


# pyarrow cannot hand a row that is not UTF-8 to our invalid-row handler and says so on stderr;
# the load still ends in our DataError, which is what the test checks.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@FUZZ
@given(head=header, rows=st.lists(row, min_size=0, max_size=6), mangle=st.integers(0, 1000),
       garbage=st.binary(max_size=64), gz=st.booleans())
def fuzz_csv(head, rows, mangle, garbage, gz):
    import gzip

    data = csv_text(head, rows, mangle).encode() + (garbage if mangle % 13 == 0 else b"")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("f.csv.gz" if gz else "f.csv")
        path.write_bytes(gzip.compress(data) if gz else data)
        COUNTS["csv"] += 1
        try:
            ds = load_dataset(path, use_cache=False)
        except DataError as exc:
            assert str(path) in str(exc) or "f.csv" in str(exc)  # it says where
            return
        COUNTS["csv_ok"] += 1
        assert ds.images.shape[1:] == (48, 48) and ds.images.dtype == np.uint8 and len(ds) == len(ds.labels)
        assert ds.labels.min() >= 0 and ds.labels.max() < 7


# ------------------------------------------------------------------- images
def _valid_images():
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8))
    out = []
    for fmt, im in [("PNG", base), ("JPEG", base), ("GIF", base.convert("P")), ("BMP", base), ("WEBP", base),
                    ("TIFF", base), ("PNG", base.convert("LA")), ("PNG", base.convert("I;16"))]:
        buf = io.BytesIO()
        im.save(buf, fmt)
        out.append(buf.getvalue())
    return out


VALID = _valid_images()


@FUZZ
@given(which=st.integers(0, len(VALID) - 1), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                            max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 10_000)), raw=st.one_of(st.none(), st.binary(max_size=300)))
def fuzz_image(which, flips, cut, raw):
    if raw is not None:
        data = raw
    else:
        data = bytearray(VALID[which])
        for pos, value in flips:
            data[pos % len(data)] = value
        data = bytes(data[:cut] if cut is not None else data)
    COUNTS["image"] += 1
    try:
        im = open_image(data, name="fuzz.img")
    except DataError as exc:
        assert "fuzz.img" in str(exc)
        return
    COUNTS["image_ok"] += 1
    assert im.mode in ("L", "RGB")
    face = read_face(data, name="fuzz.img")
    assert face.shape == (48, 48) and face.dtype == np.uint8


def report(kind: str, capsys) -> None:
    """Print how many inputs one fuzzer tried (quoted in the closing note) and check it really ran
    and met both outcomes: some inputs load, the rest are refused with our DataError."""
    with capsys.disabled():
        print(f"\nfuzz: {COUNTS[kind]} {kind} inputs ({COUNTS[kind + '_ok']} loaded, the rest DataError)")
    assert COUNTS[kind] >= EXAMPLES and 0 < COUNTS[kind + "_ok"] < COUNTS[kind]


def test_csv_loader(capsys):
    COUNTS.update(csv=0, csv_ok=0)
    fuzz_csv()
    report("csv", capsys)


def test_image_decoder(capsys):
    COUNTS.update(image=0, image_ok=0)
    fuzz_image()
    report("image", capsys)
