"""The data layer: every loader path and every bad-input case, on tiny files written here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fer_core.config import CLASS_NAMES
from fer_core.data import loading, readers
from fer_core.data.loading import load_dataset, merge_classes, write_csv
from fer_core.errors import DataError


def _row(label, pixels, usage="Training"):
    return f"{label},{' '.join(str(p) for p in pixels)},{usage}\n"


def _csv(path, rows, header="emotion,pixels,Usage\n"):
    path.write_text(header + "".join(rows))
    return path


GOOD = [_row(i % 7, np.full(2304, i * 10)) for i in range(10)]


# ------------------------------------------------------------------------ CSV
def test_csv_roundtrip_matches_source(tmp_path, demo_small):
    path = write_csv(demo_small, tmp_path / "fer2013.csv")
    ds = load_dataset(path, use_cache=False)
    assert np.array_equal(ds.images, demo_small.images)
    assert np.array_equal(ds.labels, demo_small.labels)
    assert np.array_equal(ds.splits, demo_small.splits)
    assert ds.class_names == CLASS_NAMES and ds.source == str(path)
    assert ds.origins[0] == "row 1"


@pytest.mark.parametrize("name,icml", [("icml_face_data.csv", True), ("fer2013.csv.gz", False),
                                        ("icml_face_data.csv.gz", True)])
def test_csv_variants(tmp_path, demo_small, name, icml):
    path = write_csv(demo_small, tmp_path / name, icml=icml)
    ds = load_dataset(path, use_cache=False)
    assert np.array_equal(ds.images, demo_small.images) and np.array_equal(ds.splits, demo_small.splits)


def test_gzipped_csv_without_gz_suffix_is_detected(tmp_path, demo_small):
    gz = write_csv(demo_small, tmp_path / "a.csv.gz")
    renamed = tmp_path / "fer2013.csv"
    renamed.write_bytes(gz.read_bytes())
    assert len(load_dataset(renamed, use_cache=False)) == len(demo_small)


def test_header_with_leading_spaces_and_any_column_order(tmp_path):
    path = _csv(tmp_path / "x.csv", [f"PublicTest, {' '.join(['5'] * 2304)}, 3\n"], header="Usage, pixels, emotion\n")
    ds = load_dataset(path, use_cache=False)
    assert ds.labels.tolist() == [3] and ds.splits.tolist() == ["PublicTest"] and ds.images.max() == 5


def test_csv_without_usage_gets_stratified_split(tmp_path):
    rows = [f"{i % 7},{' '.join(['1'] * 2304)}\n" for i in range(7 * 20)]
    ds = load_dataset(_csv(tmp_path / "x.csv", rows, "emotion,pixels\n"), use_cache=False)
    counts = ds.counts()
    assert all(counts["Training"][c] == 16 and counts["PublicTest"][c] == 2 for c in CLASS_NAMES)
    again = load_dataset(tmp_path / "x.csv", use_cache=False)
    assert np.array_equal(ds.splits, again.splits)  # fixed seed


@pytest.mark.parametrize("bad_row,expected", [
    (_row(1, np.zeros(2303, int)), "2303 values, expected 2304"),
    (_row(1, [*np.zeros(2303, int), 300]), "outside 0..255"),
    (_row(1, [*np.zeros(2303, int), -1]), "other than digits"),
    ("1," + "1.5 " * 2304 + ",Training\n", "other than digits"),
    ("1,,Training\n", "0 values"),
    (_row(9, np.zeros(2304, int)), "field 'emotion' is '9'"),
    (_row("x", np.zeros(2304, int)), "field 'emotion' is 'x'"),
    (_row(2, np.zeros(2304, int), "Validation"), "field 'Usage' is 'Validation'"),
    ("1,2,3,4\n", "wrong number of fields"),
])
def test_bad_rows_are_named_or_skipped(tmp_path, bad_row, expected):
    path = _csv(tmp_path / "bad.csv", GOOD[:4] + [bad_row] + GOOD[4:])
    with pytest.raises(DataError) as err:
        load_dataset(path, use_cache=False)
    msg = str(err.value)
    assert "bad.csv" in msg and expected in msg and ("row 5" in msg or "line 6" in msg)
    ds = load_dataset(path, skip_bad=True, use_cache=False)
    assert len(ds) == 10 and ds.skipped == 1 and expected in ds.problems[0]
    # a malformed line never becomes a row, so the rows after it keep consecutive numbers
    assert ds.origins.tolist()[4] == ("row 5" if "fields" in expected else "row 6")
    assert ds.labels.tolist() == [i % 7 for i in range(10)]


def test_many_bad_rows_are_listed_and_counted(tmp_path):
    bad = [_row(8, np.zeros(2304, int)) for _ in range(12)]
    with pytest.raises(DataError, match=r"12 bad rows: row 1 \(line 2\).*and 7 more"):
        load_dataset(_csv(tmp_path / "bad.csv", bad + GOOD), use_cache=False)


@pytest.mark.parametrize("content,expected", [
    ("", "empty"),
    ("emotion,pixels,Usage\n", "no data rows"),
    ("label,image\n1,2\n", "missing column(s) 'emotion', 'pixels'"),
    ("emotion,Usage\n1,Training\n", "missing column(s) 'pixels'"),
])
def test_unusable_csv_files(tmp_path, content, expected):
    path = tmp_path / "f.csv"
    path.write_text(content)
    with pytest.raises(DataError, match="f.csv") as err:
        load_dataset(path, skip_bad=True, use_cache=False)
    assert expected in str(err.value)


def test_binary_garbage_csv_is_a_clear_error(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b"emotion,pixels,Usage\n" + bytes(range(256)) * 20)
    with pytest.raises(DataError, match="f.csv"):
        load_dataset(path, use_cache=False)


def test_vectorised_parser_matches_python(rng=np.random.default_rng(0)):
    rows, expect = [], []
    for _ in range(50):
        px = rng.integers(0, 256, 2304)
        sep = " " if rng.random() < 0.5 else "  "  # the general path handles double spaces too
        rows.append(sep.join(map(str, px)))
        expect.append(px)
    arr, bad = readers.parse_pixel_rows(rows)
    assert bad == {} and np.array_equal(arr, np.array(expect, np.uint8))


# ---------------------------------------------------------------- image folders
def _img(path, value=128, mode="L", size=(48, 48), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode in ("L", "P") else ((value,) * len(mode) if mode != "I;16" else value * 256)
    Image.new(mode, size, color).save(path, format=fmt)


def test_folder_layout_with_prefixes(tmp_path):
    root = tmp_path / "fer"
    _img(root / "train/angry/Training_1.jpg", 10)
    _img(root / "train/happy/Training_2.png", 20, mode="RGB", size=(96, 64))
    _img(root / "test/happy/PublicTest_3.png", 30, mode="RGBA")
    _img(root / "test/sad/PrivateTest_4.bmp", 40, size=(30, 30), fmt="BMP")
    _img(root / "test/surprise/PrivateTest_5.gif", 50, mode="P", fmt="GIF")
    _img(root / "test/neutral/PublicTest_6.tif", 60, mode="I;16", fmt="TIFF")
    (root / "train/angry/.DS_Store").write_text("ignored")
    ds = load_dataset(root, use_cache=False)
    assert ds.images.shape == (6, 48, 48) and ds.images.dtype == np.uint8
    by_origin = {o: (ds.class_names[label], s) for o, label, s in zip(ds.origins, ds.labels, ds.splits)}
    assert by_origin["train/angry/Training_1.jpg"] == ("angry", "Training")
    assert by_origin["test/happy/PublicTest_3.png"] == ("happy", "PublicTest")
    assert by_origin["test/sad/PrivateTest_4.bmp"] == ("sad", "PrivateTest")
    assert by_origin["test/surprise/PrivateTest_5.gif"] == ("surprise", "PrivateTest")
    i = list(ds.origins).index("train/happy/Training_2.png")
    assert abs(int(ds.images[i].mean()) - 20) <= 1


def test_folder_without_prefixes_halves_test_and_splits_flat_layout(tmp_path):
    root = tmp_path / "fer"
    for k in range(10):
        _img(root / f"train/fear/a{k}.png", k)
        _img(root / f"test/fear/b{k}.png", k)
    ds = load_dataset(root, use_cache=False)
    assert ds.counts()["Training"]["fear"] == 10
    assert ds.counts()["PublicTest"]["fear"] == 5 and ds.counts()["PrivateTest"]["fear"] == 5
    flat = tmp_path / "flat"
    for k in range(20):
        _img(flat / f"Happiness/{k}.png", k)  # alias of 'happy'
    counts = load_dataset(flat, use_cache=False).counts()
    assert (counts["Training"]["happy"], counts["PublicTest"]["happy"], counts["PrivateTest"]["happy"]) == (16, 2, 2)


def test_unknown_class_folders_are_named(tmp_path):
    root = tmp_path / "fer"
    _img(root / "train/angry/1.png")
    _img(root / "train/contempt/2.png")
    with pytest.raises(DataError, match=r"unknown class folder\(s\) train/contempt"):
        load_dataset(root, use_cache=False)


def test_unreadable_files_are_named_or_skipped(tmp_path):
    root = tmp_path / "fer"
    _img(root / "train/angry/Training_1.png")
    (root / "train/angry/notes.txt").write_text("not an image")
    (root / "train/angry/empty.jpg").write_bytes(b"")
    good = root / "train/angry/Training_2.png"
    _img(good)
    (root / "train/angry/cut.png").write_bytes(good.read_bytes()[:40])
    with pytest.raises(DataError) as err:
        load_dataset(root, use_cache=False)
    msg = str(err.value)
    assert "3 bad files" in msg and "notes.txt" in msg and "empty.jpg" in msg and "cut.png" in msg
    ds = load_dataset(root, skip_bad=True, use_cache=False)
    assert len(ds) == 2 and ds.skipped == 3


def test_empty_or_missing_sources(tmp_path):
    (tmp_path / "empty/train/angry").mkdir(parents=True)
    with pytest.raises(DataError, match="no image files"):
        load_dataset(tmp_path / "empty", use_cache=False)
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "misc").mkdir()
    (tmp_path / "misc/readme.md").write_text("x")
    with pytest.raises(DataError, match="neither a FER2013 CSV"):
        load_dataset(tmp_path / "misc")


def test_a_users_file_is_checked_one_way_for_photos_videos_and_the_cli(tmp_path):
    """One check (fer_core.files.check_readable), the same sentences wherever a file is given."""
    from fer_core.cli.analysis import unreadable
    from fer_core.data.images import open_image
    from fer_core.inference.video import open_video

    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for path, why in ((tmp_path / "missing.jpg", "no such file."), (tmp_path, "not a regular file (a folder or a device)."),
                      (empty, "the file is empty.")):
        for read in (open_image, open_video):
            with pytest.raises(DataError) as caught:
                read(path)
            assert str(caught.value) == f"{path}: {why}", read
        assert unreadable(str(path)) == f"{path}: {why}"


def test_folder_holding_one_csv_or_a_wrapped_layout(tmp_path, demo_small):
    (tmp_path / "a").mkdir()
    write_csv(demo_small, tmp_path / "a/fer2013.csv")
    assert len(load_dataset(tmp_path / "a", use_cache=False)) == len(demo_small)
    _img(tmp_path / "b/fer2013/train/sad/x.png")
    assert load_dataset(tmp_path / "b", use_cache=False).class_names == CLASS_NAMES


# ----------------------------------------------------------- cache and merging
def test_second_load_comes_from_cache_and_edits_invalidate(tmp_path, data_dir, demo_small, monkeypatch):
    path = write_csv(demo_small, tmp_path / "fer2013.csv")
    first = load_dataset(path)
    calls = []
    real = readers.read_csv
    monkeypatch.setattr(readers, "read_csv", lambda p: calls.append(p) or real(p))
    second = load_dataset(path)
    assert calls == [] and np.array_equal(first.images, second.images)
    text = path.read_text().splitlines()
    text[1] = "3" + text[1][1:]  # edit one label
    path.write_text("\n".join(text) + "\n")
    third = load_dataset(path)
    assert calls == [path] and third.labels[0] == 3


def test_damaged_cache_is_rebuilt(data_dir):
    load_dataset("demo", demo_per_class=5)
    for f in (data_dir / "cache").glob("*.npz"):
        f.write_bytes(b"junk")
    assert len(load_dataset("demo", demo_per_class=5)) == 35


def test_merge_disgust_into_angry(demo_small):
    merged = merge_classes(demo_small, "disgust=angry")
    assert merged.class_names == ("angry", "fear", "happy", "sad", "surprise", "neutral")
    assert merged.num_classes == 6 and merged.merge == "disgust=angry"
    before, after = demo_small.counts(), merged.counts()
    for split in before:
        assert after[split]["angry"] == before[split]["angry"] + before[split]["disgust"]
        assert after[split]["neutral"] == before[split]["neutral"]
    assert load_dataset("demo", merge="disgust->angry", demo_per_class=5).num_classes == 6


@pytest.mark.parametrize("spec,match", [("disgust", "from=into"), ("disgust=joy", "unknown class 'joy'"),
                                        ("angry=angry", "itself"), ("a=b=c", "unknown class")])
def test_bad_merge_specs(spec, match):
    with pytest.raises(DataError, match=match):
        loading.parse_merge(spec)


def test_summary_json_shape(demo_small):
    s = demo_small.summary()
    assert json.loads(json.dumps(s)) == s
    assert s["num_images"] == 140 and s["classes"] == list(CLASS_NAMES)
    assert sum(sum(v.values()) for v in s["counts"].values()) == 140


def test_empty_pixel_rows_after_a_valid_one_are_reported_not_crashing(tmp_path):
    # found by the fuzzer: the fast path indexed past the buffer when the last rows were empty
    from fer_core.data.readers import parse_pixel_rows

    good = " ".join(["7"] * 2304)
    pixels, bad = parse_pixel_rows([good, "", ""])
    assert pixels.shape == (1, 2304) and sorted(bad) == [1, 2]
    pixels, bad = parse_pixel_rows(["", "", "0"])  # a one-byte buffer
    assert pixels.shape == (0, 2304) and sorted(bad) == [0, 1, 2]


def test_check_allowed_keeps_typed_paths_inside_the_configured_folders(data_dir, tmp_path, monkeypatch):
    from fer_core.config import datasets_dir
    from fer_core.data.loading import check_allowed

    monkeypatch.delenv("FER2013_DIR", raising=False)
    inside = datasets_dir() / "fer.csv"
    assert check_allowed("demo") == "demo" and check_allowed("demo:20") == "demo:20"
    assert check_allowed(str(inside)) == str(inside)
    for outside in ("/etc/passwd", str(datasets_dir() / ".." / ".." / "x.csv"), str(tmp_path / "other")):
        with pytest.raises(DataError, match="outside the folders this server may read"):
            check_allowed(outside)
    monkeypatch.setenv("FER_DATA_ROOTS", str(tmp_path / "other"))
    assert check_allowed(str(tmp_path / "other" / "fer.csv"))
    monkeypatch.setenv("FER2013_DIR", "/srv/fer2013")
    assert check_allowed("/srv/fer2013/train")


def test_both_pixel_parsers_agree_on_separators_other_than_spaces():
    """The fast path once took any single non-digit as a separator ('x', the '.' of floats)."""
    from fer_core.data.readers import parse_pixel_rows

    good = " ".join(["7"] * 2304)
    rows = [good, "x".join(["7"] * 2304), " ".join(["7.5"] * 1152), good]
    pixels, bad = parse_pixel_rows(rows)
    assert len(pixels) == 2 and set(bad) == {1, 2}
    assert all("other than digits and spaces" in why for why in bad.values())
    assert parse_pixel_rows(["x".join(["7"] * 2304)] * 3)[1].keys() == {0, 1, 2}  # alone in a chunk too


def test_garbage_fields_give_a_short_message_naming_the_first_bad_row(tmp_path):
    path = tmp_path / "nul.csv"
    path.write_bytes(b"emotion,pixels,Usage\n" + b"\0" * 262_144 + b",1 2,Training\n")
    with pytest.raises(DataError, match="row 1") as err:
        load_dataset(path, use_cache=False)
    assert len(str(err.value)) < 2000


def test_devices_and_missing_files_are_one_line_errors(capsys, data_dir, tmp_path):
    from fer_core.cli import main

    assert main(["data", "summary", "/dev/zero"]) == 2
    assert "neither a regular file nor a folder" in capsys.readouterr().err
    assert main(["jobs", "show", "99999999999999999999"]) == 2
    assert "There is no job 99999999999999999999" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "missing.jpg"), "--no-detect"]) == 1
    out = capsys.readouterr().out
    assert "missing.jpg: error:" in out and "no such file" in out and "truncated" not in out
