"""Pure conversions of one instance (boolean mask and box) into YOLO label rows and COCO annotations.

Format decisions
----------------
Polygons (YOLO segmentation rows, COCO ``mask_format="polygon"``):

* Outer contours only (``cv2.findContours`` with ``RETR_EXTERNAL``): holes are filled, because a YOLO
  polygon cannot express a hole. COCO RLE (the default) keeps them.
* ``CHAIN_APPROX_SIMPLE``: it drops only the vertices inside straight horizontal, vertical or diagonal
  runs, so the polygon is the same shape as with ``CHAIN_APPROX_NONE`` with far fewer points (a
  100 x 100 square has 4 vertices instead of 396), and it is what ultralytics' own ``masks2segments``
  uses. A part that is a single pixel or a one-pixel-wide straight line keeps fewer than 3 vertices; it
  has no area and is dropped.
* Vertices are pixel centres as OpenCV returns them: x is the column, y the row. YOLO values are these
  divided by the image width and height; ultralytics multiplies them back and fills the polygon with
  ``cv2.fillPoly``, which draws the mask's pixels back (holes filled). pycocotools rasterises polygons
  in continuous coordinates (pixel i covers [i, i + 1)), so there a polygon comes out about half a
  pixel smaller on each side: RLE is the exact COCO format.
* One instance is one YOLO row (several rows would be several instances). A mask in several parts
  becomes one polygon joined by zero-width seams between closest vertices, as ultralytics'
  ``merge_multi_segment`` does. The order is deterministic: parts sorted by polygon area, largest
  first (ties: by starting vertex, topmost then leftmost); the polygon starts as the largest part, and
  each next part is the one closest to the polygon built so far (the first on ties), entered from its
  closest vertex, walked all round and left back along the same seam. A seam encloses no area; a
  rasteriser draws it as a one-pixel line.
* COCO polygons are one per part in the same order, without seams.

YOLO rows: ``<class> v1 v2 ...`` with the values normalised to [0, 1] and written with 6 decimals. A
mask without a polygon gives no row, never a box row instead: ultralytics rejects a label file that
mixes box and segment rows. Boxes are ``xyxy`` in continuous pixel coordinates (pixel i covers
[i, i + 1)), clipped to the image; a box with no area left gives no row.

COCO annotations: ``iscrowd`` is always 0 (pycocotools evaluation ignores crowd regions, and converters
drop them), also for masks with holes or several parts, whose RLE decodes exactly with ``iscrowd`` 0.
``segmentation`` is a compressed RLE with ``counts`` as an ASCII string (JSON-ready) by default.
``area`` is the mask's pixel count; ``bbox`` is the box, clipped and rounded to 2 decimals; ``score``
(when given) is rounded to 4 decimals (:data:`SCORE_DECIMALS`); ids are written as given (COCO
category ids conventionally start at 1, which is the caller's choice).
"""

import operator
from typing import List, Optional, Tuple

import cv2
import numpy as np

MASK_FORMATS = ("rle", "polygon")
SCORE_DECIMALS = 4  # a COCO score is written rounded to this many decimals

_MIN_POINTS = 3  # a polygon needs at least 3 vertices
_CHUNK_ELEMENTS = 1 << 20  # vertex pairs per distance block when joining parts (bounds memory)


def mask_to_polygon(mask: np.ndarray) -> Optional[np.ndarray]:
    """One polygon for a 2-D mask (non-zero = inside), holes filled and parts joined by zero-width seams.

    Returns an (N, 2) float32 array of pixel-centre coordinates (x, y), or None when no outer contour has
    3 vertices or more (an empty mask, a pixel, a one-pixel-wide straight line). The module docstring
    explains the choices."""
    parts = _outer_contours(_as_binary(mask))
    if not parts:
        return None
    return _join_parts(parts).astype(np.float32)


def yolo_segmentation_row(class_id: int, mask: np.ndarray) -> Optional[str]:
    """``'<class> x1 y1 x2 y2 ...'`` normalised by the mask's width and height, 6 decimals; None when
    :func:`mask_to_polygon` gives None."""
    class_id = _class_index(class_id)
    polygon = mask_to_polygon(mask)
    if polygon is None:
        return None
    height, width = np.shape(mask)
    values = (polygon.astype(np.float64) / (width, height)).ravel()
    return f"{class_id} " + " ".join(f"{value:.6f}" for value in values)


def yolo_detection_row(class_id: int, xyxy, width: int, height: int) -> Optional[str]:
    """``'<class> cx cy w h'`` normalised by the image size, the box clipped to the image, 6 decimals;
    None for a box with no area after clipping."""
    class_id = _class_index(class_id)
    x1, y1, x2, y2 = _clip_box(xyxy, width, height)
    if not (x2 > x1 and y2 > y1):  # also catches NaN
        return None
    values = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
    return f"{class_id} " + " ".join(f"{value:.6f}" for value in values)


def coco_annotation(
    annotation_id: int,
    image_id: int,
    category_id: int,
    mask: np.ndarray,
    xyxy,
    mask_format: str = "rle",
    score: Optional[float] = None,
) -> Optional[dict]:
    """A COCO instance annotation (``iscrowd`` 0) for a 2-D mask and its box.

    ``segmentation`` is a compressed RLE ``{"size": [h, w], "counts": str}`` for ``mask_format="rle"``,
    or for ``"polygon"`` a list of flat ``[x1, y1, x2, y2, ...]`` lists, one per outer contour of 3
    vertices or more (holes filled). ``"score"`` is added only when ``score`` is given. Returns None for
    an empty mask, and in polygon mode for a mask without a polygon."""
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")
    mask = _as_binary(mask)
    area = int(np.count_nonzero(mask))
    if area == 0:
        return None
    if mask_format == "rle":
        from pycocotools import mask as mask_utils

        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        segmentation = {"size": [int(n) for n in rle["size"]], "counts": rle["counts"].decode("ascii")}
    else:
        segmentation = [part.astype(float).ravel().tolist() for part in _outer_contours(mask)]
        if not segmentation:
            return None
    height, width = mask.shape
    x1, y1, x2, y2 = _clip_box(xyxy, width, height)
    annotation = {
        "id": int(annotation_id),
        "image_id": int(image_id),
        "category_id": int(category_id),
        "segmentation": segmentation,
        "area": area,
        "bbox": [round(x1, 2), round(y1, 2), round(max(x2 - x1, 0.0), 2), round(max(y2 - y1, 0.0), 2)],
        "iscrowd": 0,
    }
    if score is not None:
        annotation["score"] = round(float(score), SCORE_DECIMALS)
    return annotation


def _as_binary(mask: np.ndarray) -> np.ndarray:
    """The mask as a boolean (H, W) array; ValueError for another number of dimensions."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D (height, width), got shape {mask.shape}")
    return mask.astype(bool)


def _class_index(class_id: int) -> int:
    """``class_id`` as a non-negative int; TypeError for a non-integer, ValueError for a negative one."""
    class_id = operator.index(class_id)
    if class_id < 0:
        raise ValueError(f"class ids start at 0, got {class_id}")
    return class_id


def _clip_box(xyxy, width: int, height: int) -> Tuple[float, float, float, float]:
    """``xyxy`` as floats clipped to [0, width] x [0, height]; ValueError for an empty image size."""
    if width <= 0 or height <= 0:
        raise ValueError(f"the image size must be positive, got {width} x {height}")
    x1, y1, x2, y2 = np.asarray(xyxy, dtype=np.float64).reshape(4)
    return (
        float(np.clip(x1, 0, width)),
        float(np.clip(y1, 0, height)),
        float(np.clip(x2, 0, width)),
        float(np.clip(y2, 0, height)),
    )


def _outer_contours(mask: np.ndarray) -> List[np.ndarray]:
    """Outer contours of 3 vertices or more as (N, 2) int64 arrays of (x, y), largest polygon area first
    (ties: topmost, then leftmost starting vertex)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted(
        (c.reshape(-1, 2) for c in contours if len(c) >= _MIN_POINTS),
        key=lambda c: (-cv2.contourArea(c), c[0, 1], c[0, 0]),
    )
    return [c.astype(np.int64) for c in contours]  # int64: squared distances overflow int32


def _join_parts(parts: List[np.ndarray]) -> np.ndarray:
    """``parts[0]`` with every other part spliced in, nearest first, through a seam walked both ways:
    ``..., anchor, entry, <rest of the part>, entry, anchor, ...``."""
    points = np.concatenate(parts)
    starts = np.cumsum([0] + [len(part) for part in parts[:-1]])
    # For every vertex of every part: squared distance to the nearest vertex of the polygon joined so
    # far, and that vertex. Only the part joined last can bring a vertex closer.
    distance = np.full(len(points), np.inf)
    anchor = np.zeros_like(points)
    pending = np.ones(len(parts), dtype=bool)
    pending[0] = False
    joined = newest = parts[0]
    for _ in range(len(parts) - 1):
        _update_nearest(newest, points, distance, anchor)
        part_distance = np.where(pending, np.minimum.reduceat(distance, starts), np.inf)
        i = int(np.argmin(part_distance))  # the first on ties
        pending[i] = False
        newest = parts[i]
        own = slice(starts[i], starts[i] + len(newest))
        entry = int(np.argmin(distance[own]))
        at = int(np.flatnonzero((joined == anchor[own][entry]).all(axis=1))[0])
        loop = np.roll(newest, -entry, axis=0)
        joined = np.concatenate([joined[: at + 1], loop, loop[:1], joined[at:]])
    return joined


def _update_nearest(source: np.ndarray, points: np.ndarray, distance: np.ndarray, anchor: np.ndarray) -> None:
    """Lower ``distance`` (squared) and move ``anchor`` in place where a vertex of ``source`` is strictly
    closer to the point than its current anchor (so ties keep the earlier anchor)."""
    step = max(1, _CHUNK_ELEMENTS // len(source))
    for start in range(0, len(points), step):
        block = ((points[start : start + step, None, :] - source[None, :, :]) ** 2).sum(axis=-1)
        nearest = block.argmin(axis=1)
        closer = np.flatnonzero(block[np.arange(len(block)), nearest] < distance[start : start + step])
        distance[start + closer] = block[closer, nearest[closer]]
        anchor[start + closer] = source[nearest[closer]]
