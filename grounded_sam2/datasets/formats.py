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

Label Studio (its JSON task format, ``predictions`` as pre-annotations): an instance is one
``polygonlabels`` result item per COCO polygon (one region per part, holes filled, no seams), its
vertices in percent of the image width and height (``value.points`` is ``[[x, y], ...]`` with
x = 100 * column / width for the COCO vertex (column, row): a point times the image size / 100 is
the COCO polygon's vertex, unrounded). Each item carries ``original_width``, ``original_height``,
``image_rotation`` 0, the tag names of :func:`label_studio_config` (``from_name`` ``"label"``,
``to_name`` ``"image"``), the score rounded as COCO's, and an ``id`` given by the caller with the
part's index appended (Label Studio wants every result item of a task to have its own id). Masks
are not written as Label Studio brushes (its own RLE): polygons are what an annotator edits.
"""

import heapq
import operator
from typing import Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import cv2
import numpy as np

MASK_FORMATS = ("rle", "polygon")
SCORE_DECIMALS = 4  # a COCO score is written rounded to this many decimals
LABEL_STUDIO_CONTROL = "label"  # Label Studio: the PolygonLabels tag's name, every result's from_name
LABEL_STUDIO_IMAGE = "image"  # the Image tag's name (to_name) and the task data key it shows ($image)

_MIN_POINTS = 3  # a polygon needs at least 3 vertices
_CHUNK_ELEMENTS = 1 << 20  # point-run pairs per block when joining parts (bounds memory)
_RUN = 16  # consecutive contour vertices measured together when joining parts
_BRUTE_FORCE_PAIRS = 1 << 14  # fewer point-vertex pairs than this are all measured


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


def label_studio_polygons(region_id: str, class_name: str, mask: np.ndarray,
                          score: Optional[float] = None) -> List[dict]:
    """Label Studio ``polygonlabels`` result items for a 2-D mask (its shape is the image's): one
    per polygon that :func:`coco_annotation` writes in polygon mode, in the same order, with ids
    ``f"{region_id}_{k}"`` for the k-th part. ``"score"`` is added only when ``score`` is given.
    An empty list for a mask without a polygon. The module docstring gives the fields."""
    mask = _as_binary(mask)
    height, width = mask.shape
    items = []
    for k, part in enumerate(_outer_contours(mask)):
        item = {
            "id": f"{region_id}_{k}",
            "type": "polygonlabels",
            "from_name": LABEL_STUDIO_CONTROL,
            "to_name": LABEL_STUDIO_IMAGE,
            "original_width": int(width),
            "original_height": int(height),
            "image_rotation": 0,
            "value": {"points": (part * 100.0 / (width, height)).tolist(), "polygonlabels": [class_name]},
        }
        if score is not None:
            item["score"] = round(float(score), SCORE_DECIMALS)
        items.append(item)
    return items


def label_studio_config(classes: Sequence[str]) -> str:
    """The Label Studio labeling configuration (XML) that :func:`label_studio_polygons`' items
    fit: an ``Image`` showing the task's ``image`` and a ``PolygonLabels`` with one ``Label`` per
    class, in order, the names escaped as XML attribute values."""
    labels = "".join(f"    <Label value={_xml_attribute(name)}/>\n" for name in classes)
    return (
        "<View>\n"
        f'  <Image name="{LABEL_STUDIO_IMAGE}" value="${LABEL_STUDIO_IMAGE}"/>\n'
        f'  <PolygonLabels name="{LABEL_STUDIO_CONTROL}" toName="{LABEL_STUDIO_IMAGE}">\n'
        f"{labels}"
        "  </PolygonLabels>\n"
        "</View>\n"
    )


def label_studio_local_file_url(path: str) -> str:
    """The URL Label Studio serves a local file at (``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED``):
    ``/data/local-files/?d=`` and ``path``, relative to ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``
    with ``/`` separators, percent-encoded as Label Studio's own local storage encodes it."""
    return f"/data/local-files/?d={quote(path)}"


def _xml_attribute(value: str) -> str:
    """``value`` as a double-quoted XML attribute value (``quoteattr`` keeps tabs and line breaks as
    character references, which a parser would otherwise turn into spaces)."""
    return quoteattr(value, {'"': "&quot;"})


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
    ``..., anchor, entry, <rest of the part>, entry, anchor, ...``, at the anchor's first occurrence
    in the polygon built so far.

    Exact, and near-linear on fragmented masks (Prim's algorithm over the parts): every vertex of a
    part not joined yet keeps its squared distance to the nearest joined vertex and that vertex.
    Only the part joined last can bring a vertex closer, and only a vertex whose distance to that
    part's bounding box is below its current distance; the other vertices are not looked at."""
    points = np.concatenate(parts)
    lengths = np.array([len(part) for part in parts])
    starts = np.concatenate([[0], np.cumsum(lengths[:-1])])
    boxes = np.array([[*part.min(axis=0), *part.max(axis=0)] for part in parts])  # x1 y1 x2 y2
    distance = np.full(len(points), np.inf)
    anchor = np.zeros(len(points), dtype=np.int64)  # index into ``points`` of the nearest joined vertex
    nearest = np.full(len(parts), np.inf)  # per part: the smallest ``distance`` of its vertices
    farthest = np.full(len(parts), np.inf)  # and the largest
    pending = np.ones(len(parts), dtype=bool)
    pending[0] = False
    queue: List[Tuple[float, int]] = []  # (part distance, part): on ties the lowest part comes first
    entries = {0: 0}  # joined part -> the position of its entry vertex in the part
    spliced: Dict[int, List[int]] = {}  # vertex (index into ``points``) -> parts entered from it, in order
    newest = 0
    for _ in range(len(parts) - 1):
        box = boxes[newest]
        near = np.flatnonzero(pending & (_box_gaps(boxes, box) < farthest))  # parts it may bring closer
        if len(near):
            vertices = np.concatenate([np.arange(starts[k], starts[k] + lengths[k]) for k in near])
            candidates = vertices[_box_gaps(np.tile(points[vertices], 2), box) < distance[vertices]]
            _update_nearest(int(starts[newest]), parts[newest], points, distance, anchor, candidates)
            bounds = np.concatenate([[0], np.cumsum(lengths[near][:-1])])
            nearest_now = np.minimum.reduceat(distance[vertices], bounds)
            farthest[near] = np.maximum.reduceat(distance[vertices], bounds)
            closer = nearest_now < nearest[near]
            for k, d in zip(near[closer].tolist(), nearest_now[closer].tolist()):
                heapq.heappush(queue, (d, k))
            nearest[near] = nearest_now
        while True:
            part_distance, newest = heapq.heappop(queue)
            if pending[newest] and part_distance == nearest[newest]:
                break
        pending[newest] = False
        entry = int(np.argmin(distance[starts[newest] : starts[newest] + lengths[newest]]))  # the first on ties
        entries[newest] = entry
        spliced.setdefault(_first_occurrence(int(anchor[starts[newest] + entry]), points, entries, starts, lengths),
                           []).append(newest)
    return points[_polygon_order(entries, spliced, starts, lengths)]


def _first_occurrence(vertex: int, points: np.ndarray, entries: Dict[int, int], starts: np.ndarray,
                      lengths: np.ndarray) -> int:
    """The vertex of the same part at the same place that its walk from its entry reaches first (a
    contour passes twice through a one-pixel-wide neck): parts are spliced in there."""
    part = int(np.searchsorted(starts, vertex, side="right")) - 1
    walk = _walk(part, entries, starts, lengths)
    return int(walk[np.flatnonzero((points[walk] == points[vertex]).all(axis=1))[0]])


def _walk(part: int, entries: Dict[int, int], starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A joined part's vertices (indexes into the concatenated vertices) from its entry on."""
    return starts[part] + (entries[part] + np.arange(lengths[part])) % lengths[part]


def _polygon_order(entries: Dict[int, int], spliced: Dict[int, List[int]], starts: np.ndarray,
                   lengths: np.ndarray) -> np.ndarray:
    """The joined polygon as indexes into the parts' concatenated vertices, from part 0. A part
    entered from a vertex comes right after that vertex's first occurrence (where the vertex lies
    in its own part's walk), so parts entered from one vertex later come first:
    ``v, <last part entered from v>, its entry, v, ..., <first part entered from v>, its entry, v``."""
    branching = np.zeros(int(starts[-1] + lengths[-1]), dtype=bool)
    branching[list(spliced)] = True

    def walk(part: int) -> Tuple[np.ndarray, Iterator[int]]:
        """A part's vertices from its entry on, and the positions of those parts were entered from."""
        vertices = _walk(part, entries, starts, lengths)
        return vertices, iter(np.flatnonzero(branching[vertices]).tolist())

    pieces: List[np.ndarray] = []
    stack = [[*walk(0), 0, []]]  # per walk in progress: vertices, branches, emitted so far, parts to enter
    while stack:
        vertices, branches, emitted, to_enter = frame = stack[-1]
        if to_enter:  # parts entered from the vertex just emitted, the last entered first
            stack.append([*walk(to_enter.pop()), 0, []])
            continue
        branch = next(branches, None)
        stop = len(vertices) if branch is None else branch + 1
        pieces.append(vertices[emitted:stop])
        frame[2] = stop
        if branch is not None:
            frame[3] = list(spliced[int(vertices[branch])])
            continue
        stack.pop()
        if stack:  # back along the seam: the entry again, then the anchor again
            parent_vertices, _, parent_emitted, _ = stack[-1]
            pieces.append(np.array([vertices[0], parent_vertices[parent_emitted - 1]]))
    return np.concatenate(pieces)


def _box_gaps(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Squared distance between each of ``boxes`` (Nx4 x1 y1 x2 y2) and ``box``: a lower bound of
    the squared distance between a point of one and a point of the other."""
    dx = np.maximum(0, np.maximum(boxes[:, 0] - box[2], box[0] - boxes[:, 2]))
    dy = np.maximum(0, np.maximum(boxes[:, 1] - box[3], box[1] - boxes[:, 3]))
    return dx * dx + dy * dy


def _update_nearest(offset: int, source: np.ndarray, points: np.ndarray, distance: np.ndarray,
                    anchor: np.ndarray, indices: np.ndarray) -> None:
    """For the points at ``indices``: lower ``distance`` (squared) and set ``anchor`` in place where a
    vertex of ``source`` (the points from ``offset`` on) is strictly closer than the current anchor,
    so ties keep the earlier anchor, and among equally near vertices of ``source`` the first.

    Many points against a long contour (the first, largest part) are measured run by run:
    ``source`` is cut into runs of consecutive vertices, which lie close together on a contour, and
    a point is measured only against the runs whose bounding box is no farther than the nearer of
    its current distance and its distance to the run with the nearest box."""
    count = len(source)
    if count * len(indices) <= _BRUTE_FORCE_PAIRS:
        keys = _squared(points[indices][:, None, :], source[None]) * count + np.arange(count)
        _lower(distance, anchor, indices, offset, keys.min(axis=1), count)
        return
    run_starts = np.arange(0, count, _RUN)
    runs = np.concatenate([np.minimum.reduceat(source, run_starts), np.maximum.reduceat(source, run_starts)], axis=1)
    padded = np.concatenate([source, np.repeat(source[-1:], len(run_starts) * _RUN - count, axis=0)])
    by_run = padded.reshape(-1, _RUN, 2)
    vertex_of = np.arange(len(padded)).reshape(-1, _RUN)
    step = max(1, _CHUNK_ELEMENTS // (len(run_starts) + _RUN))
    for start in range(0, len(indices), step):
        at = indices[start : start + step]
        xy = points[at]
        gaps = _point_box_gaps(xy, runs)
        bound = np.minimum(distance[at], _squared(xy[:, None, :], by_run[gaps.argmin(axis=1)]).min(axis=1))
        point, run = np.nonzero(gaps <= bound[:, None])  # sorted by point
        keys = _squared(xy[point][:, None, :], by_run[run]) * count + vertex_of[run]
        first = np.flatnonzero(np.diff(point, prepend=-1))  # each point's first pair
        # padding repeats the last vertex: its key is never below the last vertex's own
        _lower(distance, anchor, at[point[first]], offset, np.minimum.reduceat(keys.min(axis=1), first), count)


def _squared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distances between broadcast (..., 2) integer points."""
    dx = a[..., 0] - b[..., 0]
    dy = a[..., 1] - b[..., 1]
    return dx * dx + dy * dy


def _lower(distance: np.ndarray, anchor: np.ndarray, at: np.ndarray, offset: int, keys: np.ndarray,
           count: int) -> None:
    """Apply per-point ``keys`` (squared distance x ``count`` + source vertex) where strictly closer."""
    best, nearest = np.divmod(keys, count)
    closer = best < distance[at]
    distance[at[closer]] = best[closer]
    anchor[at[closer]] = offset + nearest[closer]


def _point_box_gaps(xy: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """NxM squared distances between N points (x, y) and M boxes (x1 y1 x2 y2)."""
    dx = np.maximum(0, np.maximum(boxes[None, :, 0] - xy[:, None, 0], xy[:, None, 0] - boxes[None, :, 2]))
    dy = np.maximum(0, np.maximum(boxes[None, :, 1] - xy[:, None, 1], xy[:, None, 1] - boxes[None, :, 3]))
    return dx * dx + dy * dy
