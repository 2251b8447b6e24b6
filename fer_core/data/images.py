"""Decoding any image a user has into the model's input: a 48x48 uint8 grayscale face.

Shared by the folder data loader and by prediction, so both treat odd files alike:
EXIF orientation, palette/CMYK/alpha/16-bit modes, animated files (first frame) and
decompression bombs.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fer_core.errors import DataError
from fer_core.files import check_readable

#: Larger images are refused: a 16-bit 100-megapixel upload would need gigabytes.
MAX_PIXELS = 60_000_000


def open_image(src: str | Path | bytes, name: str | None = None, max_side: int | None = None) -> Image.Image:
    """Open and fully decode an image, upright, as 8-bit grayscale or RGB.

    Args:
        src: a path or the file's bytes.
        name: how to call the file in error messages (defaults to the path).
        max_side: decode no larger than this (longest side): JPEGs are decoded at a reduced
            scale by the decoder itself (a 7600x7600 photo never exists at full size in
            memory), other formats are reduced right after decoding, before any conversion.

    Returns:
        A PIL image in mode ``"L"`` or ``"RGB"`` with its EXIF orientation applied; its
        ``info["original_size"]`` is the upright size of the full image.

    Raises:
        DataError: the file is empty, truncated, not an image, or too large.
    """
    label = name or (str(src) if not isinstance(src, bytes) else "upload")
    try:
        with warnings.catch_warnings():
            # A bomb warning (between MAX_PIXELS and twice that) becomes an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if isinstance(src, bytes):
                if not src:
                    raise DataError(f"{label}: the file is empty.")
                im = Image.open(io.BytesIO(src))
            else:
                check_readable(src, label)
                im = Image.open(src)
            with im:
                if im.width * im.height > MAX_PIXELS:
                    raise DataError(
                        f"{label}: {im.width}x{im.height} pixels is too large "
                        f"(limit {MAX_PIXELS // 1_000_000} megapixels); downscale it first."
                    )
                im.seek(0)  # first frame of a GIF/WebP animation
                full, orientation = im.size, im.getexif().get(0x0112, 1)
                if max_side and max(full) > max_side:
                    k = max_side / max(full)
                    if im.format == "JPEG":
                        im.draft(im.mode if im.mode in ("L", "RGB") else "RGB",
                                 (max(1, round(full[0] * k)), max(1, round(full[1] * k))))
                    im.load()
                    factor = max(1, int(max(im.size) // max_side))
                    if factor > 1:
                        try:
                            im = im.reduce(factor)
                        except (ValueError, NotImplementedError):  # 16-bit and float modes: every f-th pixel
                            im = Image.fromarray(np.ascontiguousarray(np.asarray(im)[::factor, ::factor]))
                else:
                    im.load()
                upright = im.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else im
                out = _normalise_mode(upright)
                if max_side and max(out.size) > max_side:
                    out.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
                turned = orientation in (5, 6, 7, 8)  # EXIF orientations that swap the sides
                out.info["original_size"] = (full[1], full[0]) if turned else full
                return out
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{label}: the image is too large to decode safely; downscale it first.") from None
    except UnidentifiedImageError:
        raise DataError(f"{label}: not an image file PIL can read (JPEG, PNG, WebP, BMP, GIF...).") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DataError(f"{label}: cannot decode the image ({exc}); the file may be truncated.") from None


#: How to turn an image upright for each EXIF orientation (what ImageOps.exif_transpose does),
#: applied after any reduction, which drops the EXIF data.
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to ``L`` or ``RGB`` without clipping 16-bit or float data."""
    if im.mode in ("L", "RGB"):
        return im.copy()
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.round().astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode == "1":
        return im.convert("L")
    return im.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV


def to_face_array(im: Image.Image, size: int = 48) -> np.ndarray:
    """Center-crop an image to a square and resize it to a ``size`` x ``size`` uint8 array."""
    gray = im if im.mode == "L" else im.convert("L")
    w, h = gray.size
    if w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        gray = gray.crop((left, top, left + side, top + side))
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(gray, dtype=np.uint8)


def read_face(src: str | Path | bytes, name: str | None = None, size: int = 48) -> np.ndarray:
    """Read an image file as a ``size`` x ``size`` grayscale face array.

    A file that already is one (8-bit grayscale, ``size`` x ``size``, no EXIF block: every
    FER2013 image) is decoded by OpenCV directly, ten times faster than the general path and
    pixel for pixel the same; anything else goes through :func:`open_image`.

    Raises:
        DataError: the file cannot be read as an image.
    """
    if not isinstance(src, bytes):
        fast = read_plain_face(src, size)
        if fast is not None:
            return fast
    return to_face_array(open_image(src, name), size)


#: JPEG and PNG files start with these bytes; only they take the fast path.
_PLAIN_MAGIC = (b"\xff\xd8\xff", b"\x89PNG")


def read_plain_face(path: str | Path, size: int = 48) -> np.ndarray | None:
    """The face in ``path`` when it is a plain ``size`` x ``size`` 8-bit grayscale JPEG or PNG
    without EXIF (whose orientation the general path would apply), else None."""
    import cv2

    try:
        data = np.fromfile(path, np.uint8)
    except (OSError, ValueError):
        return None  # the general path says what is wrong
    head = data[:256].tobytes()
    if not head.startswith(_PLAIN_MAGIC) or b"Exif" in head or len(data) > 64 * size * size:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None or img.dtype != np.uint8 or img.shape != (size, size):
        return None
    return img
