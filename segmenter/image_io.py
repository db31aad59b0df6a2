"""Turning user images into RGB arrays: numpy arrays, PIL images of any mode, and file paths.

Channel order is always RGB. Conversions are deliberate:
- uint8 arrays are used as they are; uint16 arrays and 16-bit images (PIL modes I;16*, I) are
  scaled by 1/257 to 8 bits; float arrays must already be in [0, 1] (Meta's convention).
- Grayscale (HxW, HxWx1, modes L, 1, I;16...) is repeated to three channels.
- An alpha channel (HxWx4, modes RGBA, LA, PA, P with transparency) is dropped: colour values
  are used as stored, not composited onto a background.
- CMYK is converted with its embedded ICC profile when it has one (PIL's formula otherwise).
- File paths are decoded with EXIF orientation applied; PIL images passed in are used as given.
"""

import io
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from .errors import GroundedSAM2Error

ImageInput = Union[np.ndarray, Image.Image, str, Path]


class ImageError(GroundedSAM2Error, ValueError):
    """An input that cannot be used as an image."""


def _from_array(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 array, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"image has no pixels (shape {array.shape})")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    array = array[:, :, :3]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype.kind == "u" and array.dtype.itemsize == 2:  # uint16 of either byte order
        return np.ascontiguousarray((array.astype(np.float32) / 257.0).round().astype(np.uint8))
    if np.issubdtype(array.dtype, np.floating):
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
        if np.isnan(array).any() or lo < 0.0 or hi > 1.0:
            raise ImageError(
                f"float images must hold values in [0, 1] (got min {lo}, max {hi}); pass uint8 for 0-255 data"
            )
        return np.ascontiguousarray(array, dtype=np.float32)
    raise ImageError(f"unsupported image dtype {array.dtype}; use uint8, uint16 or float in [0, 1]")


def _from_pil(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image)
    if mode.startswith("I;16") or mode == "I":
        wide = np.asarray(image).astype(np.float32)
        return _from_array(np.clip(wide, 0, 65535).astype(np.uint16))
    if mode == "CMYK":
        profile = image.info.get("icc_profile")
        if profile:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            srgb = ImageCms.createProfile("sRGB")
            return np.asarray(ImageCms.profileToProfile(image, source, srgb, outputMode="RGB"))
        return np.asarray(image.convert("RGB"))
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if mode == "La":
        image = image.convert("LA")  # Pillow converts La only to LA
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or image.mode == "RGBA":
        return np.asarray(image.convert("RGBA"))[:, :, :3].copy()
    try:
        return np.asarray(image.convert("RGB"))
    except (ValueError, OSError) as e:
        raise ImageError(f"cannot convert a PIL image of mode {mode} to RGB: {e}") from e


def load_rgb(image: ImageInput) -> np.ndarray:
    """An HxWx3 RGB array (uint8, or float32 in [0, 1]) from an array, a PIL image or a path.

    A numpy array is taken to be RGB already (HxWxC, channels last)."""
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, Image.Image):
        return _from_pil(image)
    if isinstance(image, (str, Path)):
        path = Path(image)
        try:
            with Image.open(path) as opened:
                opened.load()
                return _from_pil(ImageOps.exif_transpose(opened))
        except FileNotFoundError as e:
            raise ImageError(f"image file not found: {path}") from e
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"cannot read image {path}: {e}") from e
    raise ImageError(f"unsupported image type {type(image).__name__}; pass a numpy array, a PIL image or a path")
