"""Reading the images to label: RGB uint8 pixels as the labels will refer to them."""

from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from segmenter.image_io import load_rgb

ImageInput = Union[str, Path, np.ndarray, Image.Image]
EXIF_ORIENTATION = 0x0112


def to_rgb_uint8(image: ImageInput, rgb: bool = False) -> np.ndarray:
    """An HxWx3 RGB uint8 array from a path (EXIF orientation applied), a PIL image or a numpy
    array. Numpy arrays are BGR (as ``cv2.imread`` returns them and autodistill passes them)
    unless ``rgb=True``."""
    if isinstance(image, np.ndarray) and not rgb and image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[:, :, 2::-1]
    array = load_rgb(image)
    if array.dtype != np.uint8:
        array = (array * 255.0).round().astype(np.uint8)
    return array


def is_stored_rotated(path: Path) -> bool:
    """True for an image file whose pixels are stored rotated (an EXIF orientation other than
    1): its upright pixels, which the labels refer to, differ from the file's."""
    try:
        with Image.open(path) as img:
            orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    except OSError:
        return True
    return orientation not in (None, 1)
