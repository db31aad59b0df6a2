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

import functools
import heapq
import operator
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import cv2
import numpy as np

MASK_FORMATS = ("rle", "polygon")
SCORE_DECIMALS = 4  # a COCO score is written rounded to this many decimals
LABEL_STUDIO_CONTROL = "label"  # Label Studio: the PolygonLabels tag's name, every result's from_name
LABEL_STUDIO_IMAGE = "image"  # the Image tag's name (to_name) and the task data key it shows ($image)

_MIN_POINTS = 3  # a polygon needs at least 3 vertices


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
    values = np.empty(2 * len(polygon), dtype=object)
    values[0::2] = _normalised_text(width)[polygon[:, 0].astype(np.int64)]
    values[1::2] = _normalised_text(height)[polygon[:, 1].astype(np.int64)]
    return f"{class_id} " + " ".join(values.tolist())


@functools.lru_cache(maxsize=64)
def _normalised_text(size: int) -> np.ndarray:
    """``f"{i / size:.6f}"`` for every pixel index i < ``size``, as an object array: a vertex is a
    whole pixel, so a row's values are looked up rather than formatted one by one."""
    return np.array([f"{i / size:.6f}" for i in range(size)], dtype=object)


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

    Exact, and near-linear in the V vertices (Prim's algorithm over the parts, on the Delaunay graph
    of the vertices: O(V) edges). The nearest pairs between the joined parts and the part to join
    next are always Delaunay edges: such a pair's diametral disk holds no other vertex (one inside, or on its
    circle, would be nearer to one end than the other end is), so the pair is a Gabriel edge, and
    every Delaunay triangulation, degenerate ones included, has all Gabriel edges. A part's heap
    key is its shortest edge to a joined part, never below its true distance, and equal to it for
    every part at the smallest distance: the parts come off the heap in the documented order, and
    the nearest pairs that pick the entry and the anchor are among the edges of the part joined."""
    if len(parts) == 1:
        return parts[0]
    points = np.concatenate(parts)
    lengths = np.array([len(part) for part in parts])
    starts = np.concatenate([[0], np.cumsum(lengths[:-1])])
    part_of = np.repeat(np.arange(len(parts)), lengths)
    # a place a contour passes twice (a one-pixel-wide neck) is triangulated once, as its first vertex
    places = points[:, 1] * (int(points[:, 0].max()) + 1) + points[:, 0]
    _, first, inverse, counts = np.unique(places, return_index=True, return_inverse=True, return_counts=True)
    twins = (counts > 1)[inverse.reshape(-1)]
    a, b = (first[ends] for ends in _delaunay_edges(points[first]))
    between = part_of[a] != part_of[b]
    a, b = a[between], b[between]
    # every edge both ways, grouped by the part of its first end
    source, target = np.concatenate([a, b]), np.concatenate([b, a])
    order = np.argsort(part_of[source], kind="stable")
    source, target = source[order], target[order]
    squared = _squared(points[source], points[target])
    bounds = np.searchsorted(part_of[source], np.arange(len(parts) + 1)).tolist()
    # plain lists: the loop below looks at a few edges per part, where numpy calls cost more
    squared, source, target, to_part = squared.tolist(), source.tolist(), target.tolist(), part_of[target].tolist()
    rank = [-1] * len(parts)  # join order; -1 while pending
    rank[0] = 0
    queue: List[Tuple[int, int]] = []  # (squared distance, part): on ties the lowest part comes first
    entries = {0: 0}  # joined part -> the position of its entry vertex in the part
    spliced: Dict[int, List[int]] = {}  # vertex (index into ``points``) -> parts entered from it, in order
    newest = 0
    for step in range(1, len(parts)):
        for edge in range(bounds[newest], bounds[newest + 1]):
            if rank[to_part[edge]] < 0:
                heapq.heappush(queue, (squared[edge], to_part[edge]))
        while True:
            part_distance, newest = heapq.heappop(queue)
            if rank[newest] < 0:
                break
        # the part's first nearest vertex, and the earliest joined part's first vertex nearest to it
        entry, _, anchor = min(
            (source[edge], rank[to_part[edge]], target[edge])
            for edge in range(bounds[newest], bounds[newest + 1])
            if squared[edge] == part_distance and rank[to_part[edge]] >= 0
        )
        rank[newest] = step
        entries[newest] = entry - int(starts[newest])
        if twins[anchor]:
            anchor = _first_occurrence(anchor, points, entries, starts, lengths)
        spliced.setdefault(anchor, []).append(newest)
    return points[_polygon_order(entries, spliced, starts, lengths)]


def _delaunay_edges(points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The edges (two index arrays, each edge once) of a Delaunay triangulation of distinct
    integer (x, y) points, by OpenCV's incremental ``Subdiv2D`` (about 5x faster than Qhull here),
    on the points moved next to the origin, which keeps its double-precision in-circle tests on
    small integers. Points on one line give the pairs of neighbours along it."""
    points = points - points.min(axis=0) + 1
    width, height = points.max(axis=0) + 2
    subdivision = cv2.Subdiv2D((0, 0, int(width), int(height)))
    subdivision.insert(points.astype(np.float32))
    ends = subdivision.getEdgeList().reshape(-1, 2, 2)  # x1 y1 x2 y2; some end at its outer corners
    ends = ends[((ends > 0) & (ends < (width, height))).all(axis=(1, 2))].astype(np.int64)
    keys = points[:, 1] * width + points[:, 0]
    order = np.argsort(keys)
    found = np.searchsorted(keys[order], ends[..., 1] * width + ends[..., 0])
    return order[found[:, 0]], order[found[:, 1]]


def _first_occurrence(vertex: int, points: np.ndarray, entries: Dict[int, int], starts: np.ndarray,
                      lengths: np.ndarray) -> int:
    """The vertex of the same part at the same place that its walk from its entry reaches first:
    parts are spliced in there."""
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
    ``v, <last part entered from v>, its entry, v, ..., <first part entered from v>, its entry, v``.
    Plain lists: a walk emits vertex by vertex and branches at a few of them."""
    starts, lengths = starts.tolist(), lengths.tolist()

    def walk(part: int) -> List[int]:
        """A part's vertices from its entry on."""
        start, entry, end = starts[part], starts[part] + entries[part], starts[part] + lengths[part]
        return [*range(entry, end), *range(start, entry)]

    order: List[int] = []
    stack = [[walk(0), 0, []]]  # per walk in progress: vertices, emitted so far, parts to enter
    while stack:
        frame = stack[-1]
        vertices, emitted, to_enter = frame
        if to_enter:  # parts entered from the vertex just emitted, the last entered first
            stack.append([walk(to_enter.pop()), 0, []])
        elif emitted < len(vertices):
            vertex = vertices[emitted]
            order.append(vertex)
            frame[1] = emitted + 1
            if vertex in spliced:
                frame[2] = list(spliced[vertex])
        else:
            stack.pop()
            if stack:  # back along the seam: the entry again, then the anchor again
                parent_vertices, parent_emitted, _ = stack[-1]
                order += [vertices[0], parent_vertices[parent_emitted - 1]]
    return np.array(order, dtype=np.int64)


def _squared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distances between broadcast (..., 2) integer points."""
    dx = a[..., 0] - b[..., 0]
    dy = a[..., 1] - b[..., 1]
    return dx * dx + dy * dy
