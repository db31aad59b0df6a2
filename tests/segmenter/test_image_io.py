"""load_rgb: numpy arrays, PIL images of every mode, and files, against the rules in image_io's docstring."""

import io
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from segmenter.image_io import ImageError, load_rgb

u8, u16 = np.uint8, np.uint16


def rgb(*pixels):
    """A 1xN uint8 RGB row; an int pixel is a gray level."""
    return np.array([[(p, p, p) if isinstance(p, int) else p for p in pixels]], dtype=u8)


# ---------------------------------------------------------------- numpy arrays

GRAY = np.array([[0, 77], [128, 255]], dtype=u8)
STRIDED = np.arange(24, dtype=u8).reshape(2, 4, 3)[:, ::-1]  # not C-contiguous
ARRAY_CASES = [  # (id, input, expected output; its dtype is the expected dtype)
    ("gray-HxW", GRAY, np.repeat(GRAY[..., None], 3, axis=2)),
    ("gray-HxWx1", GRAY[..., None], np.repeat(GRAY[..., None], 3, axis=2)),
    ("rgba-alpha-dropped", np.array([[[10, 20, 30, 0], [200, 100, 50, 128]]], u8), rgb((10, 20, 30), (200, 100, 50))),
    ("uint16-rounded", np.array([[0, 257, 65535, 384, 386, 32896]], u16), rgb(0, 1, 255, 1, 2, 128)),
    ("uint16-rgb", np.array([[[65535, 0, 257]]], u16), rgb((255, 0, 1))),
    ("uint16-big-endian", np.array([[0, 257, 65535]], ">u2"), rgb(0, 1, 255)),
    ("uint16-rgba", np.array([[[257, 514, 771, 0]]], u16), rgb((1, 2, 3))),
    ("float64-unit-range", np.array([[0.0, 0.25, 1.0]]), np.array([[[0.0] * 3, [0.25] * 3, [1.0] * 3]], np.float32)),
    ("float32-rgb", np.array([[[0.1, 0.5, 0.9]]], np.float32), np.array([[[0.1, 0.5, 0.9]]], np.float32)),
    ("float16-gray", np.array([[0.5]], np.float16), np.full((1, 1, 3), 0.5, np.float32)),
    ("float-rgba-alpha-ignored", np.array([[[0.2, 0.4, 0.6, 7.0]]]), np.array([[[0.2, 0.4, 0.6]]], np.float32)),
    ("uint8-non-contiguous", STRIDED, STRIDED.copy()),
]


@pytest.mark.parametrize("array, expected", [c[1:] for c in ARRAY_CASES], ids=[c[0] for c in ARRAY_CASES])
def test_array_conversion(array, expected):
    out = load_rgb(array)
    assert out.shape == array.shape[:2] + (3,)
    assert out.dtype == expected.dtype
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


def test_uint8_rgb_array_returned_unchanged():
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=u8)
    out = load_rgb(array.copy())
    assert out.dtype == u8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, array)


ARRAY_ERRORS = [  # (id, input, substring of the message)
    ("float-above-1", np.array([[0.0, 1.5]]), r"\[0, 1\].*max 1.5"),
    ("float-0-255", np.full((2, 2, 3), 255.0, np.float32), r"pass uint8"),
    ("float-negative", np.array([[-0.1, 0.5]]), r"min -0.1"),
    ("float-nan", np.array([[0.5, np.nan]]), r"must hold values in \[0, 1\]"),
    ("float-inf", np.array([[0.5, np.inf]]), r"max inf"),
    ("int64", np.zeros((2, 2, 3), np.int64), r"unsupported image dtype int64"),
    ("bool", np.ones((2, 2), bool), r"unsupported image dtype bool"),
    ("uint32", np.zeros((2, 2), np.uint32), r"unsupported image dtype uint32"),
    ("HxWx2", np.zeros((2, 2, 2), u8), r"got shape \(2, 2, 2\)"),
    ("HxWx5", np.zeros((2, 2, 5), u8), r"got shape \(2, 2, 5\)"),
    ("4-D", np.zeros((1, 2, 2, 3), u8), r"got shape \(1, 2, 2, 3\)"),
    ("1-D", np.zeros(6, u8), r"got shape \(6,\)"),
    ("zero-height", np.zeros((0, 4, 3), u8), r"no pixels"),
    ("zero-width-gray", np.zeros((4, 0), u8), r"no pixels"),
]


@pytest.mark.parametrize("array, match", [c[1:] for c in ARRAY_ERRORS], ids=[c[0] for c in ARRAY_ERRORS])
def test_array_errors(array, match):
    with pytest.raises(ImageError, match=match):
        load_rgb(array)


# ---------------------------------------------------------------- PIL images


def palette_image(mode="P", data=bytes([2, 0, 1]), **info):
    image = Image.frombytes(mode, (3 if mode == "P" else len(data) // 2, 1), data)
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    image.info.update(info)
    return image


PAL_BRG = rgb((0, 0, 255), (255, 0, 0), (0, 255, 0))  # palette_image's pixels: indices 2, 0, 1
PIL_CASES = [  # (id, factory, expected uint8 output)
    ("RGB", lambda: Image.frombytes("RGB", (2, 1), bytes([10, 20, 30, 200, 100, 0])), rgb((10, 20, 30), (200, 100, 0))),
    ("L", lambda: Image.frombytes("L", (3, 1), bytes([0, 77, 255])), rgb(0, 77, 255)),
    ("1", lambda: Image.frombytes("L", (3, 1), bytes([0, 255, 0])).convert("1"), rgb(0, 255, 0)),
    ("P", palette_image, PAL_BRG),
    ("P-transparency-index", lambda: palette_image(transparency=0), PAL_BRG),
    ("P-transparency-bytes", lambda: palette_image(transparency=b"\x00\x80\xff"), PAL_BRG),
    ("PA", lambda: palette_image("PA", bytes([2, 0, 0, 255])), rgb((0, 0, 255), (255, 0, 0))),
    ("RGBA", lambda: Image.frombytes("RGBA", (2, 1), bytes([10, 20, 30, 0, 200, 100, 50, 128])),
     rgb((10, 20, 30), (200, 100, 50))),
    ("LA", lambda: Image.frombytes("LA", (2, 1), bytes([77, 0, 200, 255])), rgb(77, 200)),
    # La is premultiplied: Pillow un-premultiplies it (100 at alpha 128 -> 199), as it does for RGBa
    ("La-premultiplied", lambda: Image.frombytes("La", (2, 1), bytes([100, 128, 50, 255])), rgb(199, 50)),
    ("I;16", lambda: Image.fromarray(np.array([[0, 257, 65535, 32896]], u16)), rgb(0, 1, 255, 128)),
    ("I;16B", lambda: Image.frombytes("I;16B", (3, 1), np.array([0, 514, 65535], ">u2").tobytes()), rgb(0, 2, 255)),
    ("I-clipped", lambda: Image.fromarray(np.array([[-5, 257, 70000, 65535]], np.int32)), rgb(0, 1, 255, 255)),
    ("CMYK-no-profile", lambda: Image.frombytes("CMYK", (3, 1), bytes([0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0, 255])),
     rgb(255, (0, 255, 255), 0)),
]


@pytest.mark.parametrize("factory, expected", [c[1:] for c in PIL_CASES], ids=[c[0] for c in PIL_CASES])
def test_pil_modes(factory, expected):
    image = factory()
    out = load_rgb(image)
    assert out.shape == (image.height, image.width, 3)
    assert out.dtype == u8
    np.testing.assert_array_equal(out, expected)


def test_cmyk_without_profile_matches_pil_convert():
    cmyk = Image.fromarray(np.random.default_rng(1).integers(0, 256, (4, 5, 4), dtype=u8), mode="CMYK")
    np.testing.assert_array_equal(load_rgb(cmyk), np.asarray(cmyk.convert("RGB")))


def k_only_cmyk_profile() -> bytes:
    """A v2 CMYK printer profile (A2B0 lut8 to Lab): L* = 100 * (1 - K), a* = b* = 0; C, M, Y are ignored.
    ImageCms.createProfile makes only sRGB/LAB/XYZ profiles, so the bytes are built by hand."""
    ramp = bytes(range(256))
    clut = b"".join(bytes((0 if i & 1 else 255, 128, 128)) for i in range(16))  # K is the fastest axis
    matrix = struct.pack(">9i", 65536, 0, 0, 0, 65536, 0, 0, 0, 65536)
    a2b0 = b"mft1" + bytes(4) + bytes((4, 3, 2, 0)) + matrix + ramp * 4 + clut + ramp * 3
    size = 128 + 4 + 12 + len(a2b0)
    header = struct.pack(">I4sI4s4s4s", size, b"none", 0x02100000, b"prtr", b"CMYK", b"Lab ") + bytes(12)
    header += b"acsp" + bytes(28) + struct.pack(">3i", 63190, 65536, 54061)  # D50 illuminant at offset 68
    header += bytes(128 - len(header))
    return header + struct.pack(">I4sII", 1, b"A2B0", 144, len(a2b0)) + a2b0


@pytest.mark.parametrize("via", ["pil-info", "tiff-file"])
def test_cmyk_with_embedded_icc_profile(tmp_path, via):
    profile = k_only_cmyk_profile()
    assert ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile.xcolor_space.strip() == "CMYK"
    image = Image.frombytes("CMYK", (4, 1), bytes([0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 128]))
    if via == "pil-info":
        image.info["icc_profile"] = profile
        source = image
    else:
        source = tmp_path / "cmyk.tif"
        image.save(source, icc_profile=profile)
    out = load_rgb(source)
    assert out.shape == (1, 4, 3) and out.dtype == u8
    # Cyan ink is ignored by the profile (white), unlike PIL's formula (0, 255, 255); K=128 -> L* 49.8 -> sRGB 118.
    np.testing.assert_allclose(out, rgb(255, 255, 0, 118), atol=2)
    assert not np.array_equal(out, np.asarray(image.convert("RGB")))


# ---------------------------------------------------------------- paths

BLOCKS = np.zeros((20, 40, 3), u8)
BLOCKS[:10, :20] = 255  # white top-left quadrant


def test_png_path_exact_and_str_or_path(tmp_path):
    array = np.random.default_rng(2).integers(0, 256, (6, 9, 3), dtype=u8)
    Image.fromarray(array).save(tmp_path / "a.png")
    for path in (tmp_path / "a.png", str(tmp_path / "a.png")):
        out = load_rgb(path)
        assert out.shape == (6, 9, 3) and out.dtype == u8
        np.testing.assert_array_equal(out, array)


def test_jpeg_path(tmp_path):
    Image.fromarray(BLOCKS).save(tmp_path / "a.jpg", quality=95)
    out = load_rgb(str(tmp_path / "a.jpg"))
    assert out.shape == (20, 40, 3) and out.dtype == u8
    with Image.open(tmp_path / "a.jpg") as opened:
        np.testing.assert_array_equal(out, np.asarray(opened.convert("RGB")))
    np.testing.assert_allclose(out[2:8, 2:18], 255, atol=8)  # lossy, but blocks survive


# orientation -> (rotated shape, (row, col) where the white quadrant ends up)
ORIENTATIONS = {3: ((20, 40), (15, 30)), 6: ((40, 20), (5, 15)), 8: ((40, 20), (35, 5))}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS), ids=lambda o: f"exif-{o}")
def test_exif_orientation_applied_to_paths(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.jpg"
    Image.fromarray(BLOCKS).save(path, exif=exif.tobytes(), quality=95)
    out = load_rgb(path)
    shape, (row, col) = ORIENTATIONS[orientation]
    assert out.shape == shape + (3,)
    assert out[row, col].min() > 200
    with Image.open(path) as opened:
        np.testing.assert_array_equal(out, np.asarray(ImageOps.exif_transpose(opened).convert("RGB")))
        direct = load_rgb(opened)  # a PIL image is used as given: not transposed
    assert direct.shape == (20, 40, 3) and direct[5, 5].min() > 200


def test_16bit_gray_png(tmp_path):
    Image.fromarray(np.array([[0, 257, 65535, 32896, 384]], u16)).save(tmp_path / "g16.png")
    out = load_rgb(tmp_path / "g16.png")
    assert out.dtype == u8
    np.testing.assert_array_equal(out, rgb(0, 1, 255, 128, 1))


def test_16bit_rgb_png_within_one_level(tmp_path):
    # PIL decodes 16-bit RGB PNGs to 8-bit itself (keeping the high byte), so 1/257 rounding is not exact here.
    values = np.array([[[0, 255, 257], [383, 32767, 65535], [65279, 33023, 1000]]], u16)
    cv2.imwrite(str(tmp_path / "c16.png"), values[..., ::-1])
    out = load_rgb(tmp_path / "c16.png")
    assert out.shape == (1, 3, 3) and out.dtype == u8
    np.testing.assert_allclose(out, np.round(values / 257.0), atol=1)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated_png(path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (30, 30, 3), dtype=u8)).save(buf, "PNG")
    return _write(path, buf.getvalue()[: len(buf.getvalue()) // 2])


PATH_ERRORS = [  # (id, make path in tmp_path, substring of the message)
    ("missing", lambda d: d / "nope.png", r"not found"),
    ("missing-str", lambda d: str(d / "nope.jpg"), r"not found"),
    ("zero-bytes", lambda d: _write(d / "empty.png", b""), r"cannot read image"),
    ("truncated-png", lambda d: _truncated_png(d / "half.png"), r"cannot read image"),
    ("text-as-jpg", lambda d: _write(d / "notes.jpg", b"just some text\n" * 20), r"cannot read image"),
    ("directory", lambda d: d, r"cannot read image"),
]


@pytest.mark.parametrize("make, match", [c[1:] for c in PATH_ERRORS], ids=[c[0] for c in PATH_ERRORS])
def test_path_errors(tmp_path, make, match):
    with pytest.raises(ImageError, match=match):
        load_rgb(make(tmp_path))


# ---------------------------------------------------------------- other inputs


@pytest.mark.parametrize(
    "value", [[[0, 0, 0]], 3, None, b"\x89PNG", (1, 2)], ids=["list", "int", "none", "bytes", "tuple"]
)
def test_unsupported_type(value):
    with pytest.raises(ImageError, match=r"unsupported image type"):
        load_rgb(value)
