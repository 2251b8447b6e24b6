import io
import zipfile

import pytest
from PIL import Image

from fer_core.data import uploads as up
from fer_core.data.loading import load_dataset, write_csv
from fer_core.data.uploads import add_upload, safe_name, save_upload
from fer_core.errors import DataError


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return buf.getvalue()


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (48, 48), 90).save(buf, "PNG")
    return buf.getvalue()


def test_csv_upload_is_kept_under_data(data_dir, demo_small, tmp_path):
    content = write_csv(demo_small, tmp_path / "x.csv").read_bytes()
    path = save_upload("../../my fer.csv", content)
    assert path.parent == data_dir / "datasets" / "uploads" and path.name.startswith("my_fer-")
    assert path.suffix == ".csv" and save_upload("my fer.csv", content) == path  # the same file again: the same upload
    assert len(load_dataset(path)) == len(demo_small)


def test_zip_upload_is_extracted_and_loadable(data_dir):
    path = save_upload("faces.zip", _zip({"fer/train/happy/Training_1.png": _png(),
                                          "fer/test/sad/PublicTest_2.png": _png()}))
    ds = load_dataset(path)
    assert len(ds) == 2 and sorted(ds.splits.tolist()) == ["PublicTest", "Training"]


@pytest.mark.parametrize("entries,match", [
    ({"../evil.txt": b"x"}, "outside"),
    ({"/abs/evil.txt": b"x"}, "outside"),
])
def test_zip_slip_is_refused(data_dir, entries, match):
    with pytest.raises(DataError, match=match):
        save_upload("evil.zip", _zip(entries))
    assert not (data_dir / "datasets" / "evil.txt").exists()


def test_bad_uploads(data_dir):
    with pytest.raises(DataError, match="empty"):
        save_upload("a.csv", b"")
    with pytest.raises(DataError, match="not a valid zip"):
        save_upload("a.zip", b"PK not really")
    with pytest.raises(DataError, match="upload a FER2013 CSV"):
        save_upload("a.exe", b"MZ")


def test_safe_name():
    assert safe_name("C:\\x\\..\\fer 2013.csv") == "fer_2013.csv" and safe_name("...") == "upload"


def _patched(archive: bytes, *, flags: int | None = None, method: int | None = None) -> bytes:
    """The same zip with its central directory claiming encryption (flag bit 0) or another
    compression method (9 is Deflate64, 99 AES), as archivers other than Python's write them."""
    data = bytearray(archive)
    at = data.find(b"PK\x01\x02")
    while at != -1:
        if flags is not None:
            data[at + 8:at + 10] = (int.from_bytes(data[at + 8:at + 10], "little") | flags).to_bytes(2, "little")
        if method is not None:
            data[at + 10:at + 12] = method.to_bytes(2, "little")
        at = data.find(b"PK\x01\x02", at + 4)
    return bytes(data)


def _deflated(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return buf.getvalue()


@pytest.mark.parametrize("kind,expected", [
    ("encrypted", "encrypted"), ("deflate64", "compression method"), ("aes", "compression method"),
    ("corrupt", "damaged"), ("truncated", "not a valid zip")])
def test_every_broken_archive_is_a_clear_error_and_leaves_nothing_behind(data_dir, kind, expected):
    good = _deflated({f"train/happy/Training_{i}.png": _png() + bytes(200) for i in range(3)})
    if kind == "encrypted":
        archive = _patched(good, flags=0x1)
    elif kind == "deflate64":
        archive = _patched(good, method=9)
    elif kind == "aes":
        archive = _patched(good, method=99)
    elif kind == "corrupt":
        data = bytearray(good)
        start = data.find(b"PK\x03\x04") + 30 + len("train/happy/Training_0.png")
        data[start:start + 40] = b"\xff" * 40  # the first entry's deflate stream
        archive = bytes(data)
    else:
        archive = good[: len(good) // 2]
    with pytest.raises(DataError, match=expected) as err:
        save_upload("faces.zip", archive)
    assert str(err.value).startswith("faces.zip: ")
    uploads = data_dir / "datasets" / "uploads"
    assert not list(uploads.iterdir())  # nothing half-extracted is left


def test_two_uploads_of_the_same_name_are_both_kept(data_dir, demo_small, tmp_path):
    """Regression: a second upload called fer.csv replaced the first."""
    first = write_csv(demo_small, tmp_path / "a.csv").read_bytes()
    second = write_csv(demo_small.subset("Training"), tmp_path / "b.csv").read_bytes()
    a, b = save_upload("fer.csv", first), save_upload("fer.csv", second)
    assert a != b and a.read_bytes() == first and b.read_bytes() == second
    za = save_upload("faces.zip", _zip({"train/happy/Training_1.png": _png()}))
    zb = save_upload("faces.zip", _zip({"train/sad/Training_2.png": _png()}))
    assert za != zb and (za / "train" / "happy").is_dir() and (zb / "train" / "sad").is_dir()


def test_a_refused_upload_leaves_nothing(data_dir):
    """Regression: a zip of thousands of tiny non-images was refused as a data set, but its
    extracted files stayed under data/datasets/uploads."""
    archive = _zip({f"junk/{i}.bin": b"x" for i in range(2000)})
    with pytest.raises(DataError):
        add_upload("junk.zip", archive, lambda p: load_dataset(p))
    assert not list((data_dir / "datasets" / "uploads").iterdir())
    good = add_upload("ok.zip", _zip({"train/happy/Training_1.png": _png()}), lambda p: load_dataset(p))
    assert good.is_dir()


def test_entry_count_and_size_are_checked_before_extracting(data_dir, monkeypatch):
    monkeypatch.setattr(up, "MAX_MEMBERS", 100)
    with pytest.raises(DataError, match="101 entries is more than the limit of 100.*Nothing was extracted"):
        save_upload("many.zip", _zip({f"{i}.png": b"x" for i in range(101)}))
    monkeypatch.setattr(up, "MAX_EXTRACTED_BYTES", 50 * up.BLOCK)
    with pytest.raises(DataError, match="would expand"):  # 60 one-byte files take 60 blocks on disk
        save_upload("tiny.zip", _zip({f"{i}.png": b"x" for i in range(60)}))
    assert not list((data_dir / "datasets" / "uploads").iterdir())


def test_a_refused_re_upload_never_removes_the_same_upload_in_use(data_dir, demo_small, tmp_path):
    """A second session uploading the same file, whose check fails (or is interrupted), must not
    remove the first session's upload (the same stored file)."""
    content = write_csv(demo_small, tmp_path / "x.csv").read_bytes()
    first = add_upload("fer.csv", content, lambda p: load_dataset(p))

    def interrupted(path):
        raise DataError("the page went away")

    with pytest.raises(DataError):
        add_upload("fer.csv", content, interrupted)
    assert first.is_file() and len(load_dataset(first)) == len(demo_small)


def test_one_upload_of_photos_is_bounded_in_bytes_as_well_as_count(monkeypatch):
    """Regression: FER_MAX_PHOTOS counted files, not bytes: two sessions each uploading two 300 MB
    .jpg files took a class server from 1.5 to 4 GB. The photos over the budget are refused by name."""
    from fer_core.inference.photo import within_limits

    monkeypatch.setenv("FER_MAX_PHOTO_MB", "10")
    monkeypatch.setenv("FER_MAX_PHOTOS", "3")
    photos = [("a.jpg", b"x" * 4_000_000), ("huge.jpg", b"x" * 9_000_000), ("b.jpg", b"x" * 5_000_000),
              ("c.jpg", b"x" * 100), ("d.jpg", b"x" * 100)]
    kept, why = within_limits(photos)
    assert [n for n, _ in kept] == ["a.jpg", "b.jpg", "c.jpg"]  # in order, within 10 MB and 3 photos
    assert "huge.jpg (9.0 MB)" in why and "d.jpg" in why and "FER_MAX_PHOTO_MB" in why
    assert within_limits(photos[:1]) == (photos[:1], None)
