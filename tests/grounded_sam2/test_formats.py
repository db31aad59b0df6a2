"""YOLO rows and COCO annotations from masks and boxes, checked by rasterising them back (OpenCV,
pycocotools) and, where ultralytics is installed, by ultralytics' own label checker."""

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from grounded_sam2.datasets.formats import (
    _delaunay_edges,
    _outer_contours,
    coco_annotation,
    label_studio_polygons,
    mask_to_polygon,
    yolo_detection_row,
    yolo_segmentation_row,
)

from meta_reference import has_ultralytics, reference_env

# pycocotools' decode does not yet take numpy 2's copy keyword (harmless here).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")


def disk(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def rect(shape, rows, cols):
    mask = np.zeros(shape, dtype=bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


@dataclass
class Shape:
    mask: np.ndarray
    filled: Optional[np.ndarray] = None  # the mask with holes filled and parts of < 3 vertices dropped
    parts: int = 1  # outer contours of 3 vertices or more

    def __post_init__(self):
        if self.filled is None:
            self.filled = self.mask


SHAPES = {
    "rectangle": Shape(rect((60, 80), (10, 30), (20, 60))),
    "2x2 square": Shape(rect((8, 8), (3, 5), (3, 5))),
    "disk": Shape(disk((64, 64), (32, 30), 20)),
    "triangle (diagonal edge)": Shape(np.tril(np.ones((50, 50), dtype=bool))),
    "donut (hole)": Shape(
        disk((80, 80), (40, 40), 30) & ~disk((80, 80), (40, 40), 12),
        disk((80, 80), (40, 40), 30),
    ),
    "two blobs": Shape(rect((60, 100), (10, 30), (5, 25)) | disk((60, 100), (40, 70), 12), parts=2),
    "three blobs": Shape(
        rect((90, 100), (5, 20), (5, 20)) | rect((90, 100), (60, 85), (10, 30)) | rect((90, 100), (30, 50), (60, 95)),
        parts=3,
    ),
    "donut and blob": Shape(
        disk((70, 120), (35, 35), 25) & ~disk((70, 120), (35, 35), 10) | rect((70, 120), (20, 50), (80, 110)),
        disk((70, 120), (35, 35), 25) | rect((70, 120), (20, 50), (80, 110)),
        parts=2,
    ),
    "blob and stray pixel": Shape(
        rect((40, 40), (5, 25), (5, 25)) | rect((40, 40), (35, 36), (35, 36)), rect((40, 40), (5, 25), (5, 25))
    ),
    "touching the top-right corner": Shape(rect((50, 70), (0, 20), (50, 70))),
    "whole tall image": Shape(np.ones((120, 40), dtype=bool)),
    "tall image": Shape(rect((120, 40), (5, 115), (3, 37)) | rect((120, 40), (60, 120), (0, 10))),
    "wide image, parts on opposite borders": Shape(
        rect((40, 150), (0, 40), (0, 20)) | disk((40, 150), (20, 132), 18),
        parts=2,
    ),
}

NO_POLYGON = {
    "empty": np.zeros((10, 12), dtype=bool),
    "one pixel": rect((10, 12), (4, 5), (6, 7)),
    "one-pixel-wide line": rect((10, 12), (4, 5), (2, 9)),
    "scattered pixels": rect((10, 12), (1, 2), (1, 2)) | rect((10, 12), (5, 6), (8, 9)),
}

ROW_VALUE = re.compile(r"\d\.\d{6}")


def rasterise(polygon, shape, fill=True):
    """The polygon filled as cv2.fillPoly (and so ultralytics) fills it, or only its outline."""
    out = np.zeros(shape, dtype=np.uint8)
    points = [np.round(polygon).astype(np.int32)]
    if fill:
        cv2.fillPoly(out, points, 1)
    else:
        cv2.polylines(out, points, isClosed=True, color=1)
    return out.astype(bool)


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def parse_row(row):
    """(class id, values) of a YOLO row, checking the number format."""
    head, *values = row.split(" ")
    assert re.fullmatch(r"\d+", head), row
    assert all(ROW_VALUE.fullmatch(v) for v in values), row
    return int(head), np.array(values, dtype=np.float64)


@pytest.mark.parametrize("name", list(SHAPES), ids=str)
def test_polygon_covers_the_hole_filled_mask(name):
    shape = SHAPES[name]
    polygon = mask_to_polygon(shape.mask)
    assert polygon.dtype == np.float32 and polygon.ndim == 2 and polygon.shape[1] == 2 and len(polygon) >= 3
    height, width = shape.mask.shape
    assert polygon[:, 0].min() >= 0 and polygon[:, 0].max() <= width - 1
    assert polygon[:, 1].min() >= 0 and polygon[:, 1].max() <= height - 1
    drawn = rasterise(polygon, shape.mask.shape)
    assert not (shape.filled & ~drawn).any()  # every filled pixel is inside
    if shape.parts == 1:
        assert np.array_equal(drawn, shape.filled)
    else:  # only the seams, one-pixel lines on the outline, are extra
        assert not (drawn & ~shape.filled & ~rasterise(polygon, shape.mask.shape, fill=False)).any()
        assert iou(drawn, shape.filled) > 0.9


@pytest.mark.parametrize("name", list(NO_POLYGON), ids=str)
def test_no_polygon_gives_no_row(name):
    assert mask_to_polygon(NO_POLYGON[name]) is None
    assert yolo_segmentation_row(0, NO_POLYGON[name]) is None


def test_polygon_is_deterministic_and_ignores_the_mask_dtype():
    mask = SHAPES["three blobs"].mask
    first = mask_to_polygon(mask)
    np.testing.assert_array_equal(first, mask_to_polygon(mask.astype(np.uint8) * 255))
    np.testing.assert_array_equal(first, mask_to_polygon(mask.copy()))


def test_parts_are_joined_largest_first_by_zero_width_seams():
    small, large = rect((40, 60), (5, 10), (5, 10)), rect((40, 60), (10, 30), (30, 50))
    # From the large part's vertex nearest the small part, a seam to the small part's nearest vertex,
    # round the small part, back along the seam, and on round the large part.
    assert mask_to_polygon(small | large).astype(int).tolist() == [
        [30, 10], [9, 9], [9, 5], [5, 5], [5, 9], [9, 9], [30, 10], [30, 29], [49, 29], [49, 10],
    ]  # fmt: skip


def documented_join(parts):
    """The module docstring's joining order by its plain definition, in quadratic time: after each
    join, every vertex of a part not joined yet measures its squared distance to every vertex of the
    polygon so far; the nearest part (the first on ties) is entered at its nearest vertex (the first
    on ties) from the first occurrence of the polygon's nearest vertex (the earliest joined of equally
    near ones, the first of a part's equally near vertices)."""
    joined, order, pending = parts[0], [parts[0]], list(range(1, len(parts)))
    while pending:
        best = None
        sources = np.concatenate(order)  # in join order: argmin's first hit is the earliest joined
        for i in pending:
            squared = ((parts[i][:, None, :] - sources[None, :, :]) ** 2).sum(axis=-1)
            nearest = squared.argmin(axis=1)
            position = int(squared[np.arange(len(nearest)), nearest].argmin())
            distance = int(squared[position, nearest[position]])
            if best is None or distance < best[0]:
                best = (distance, i, position, sources[nearest[position]])
        _, i, position, anchor = best
        at = int(np.flatnonzero((joined == anchor).all(axis=1))[0])
        loop = np.roll(parts[i], -position, axis=0)
        joined = np.concatenate([joined[: at + 1], loop, loop[:1], joined[at:]])
        order.append(parts[i])
        pending.remove(i)
    return joined


def fragmented_mask(seed, sigma, fraction_off, shape=(96, 128)):
    """Thresholded smoothed noise: dozens of parts, one-pixel necks, equal distances (what random
    SAM 2 weights give, at a size the quadratic reference can check)."""
    noise = cv2.GaussianBlur(np.random.default_rng(seed).random(shape), (0, 0), sigma)
    return noise > np.quantile(noise, fraction_off)


@pytest.mark.parametrize("seed, sigma, fraction_off", [
    (0, 1.5, 0.6), (1, 1.5, 0.6), (2, 1.5, 0.6),
    (5, 1.0, 0.6),  # a part is entered from a neck vertex that its contour passes twice
], ids=str)
def test_parts_are_joined_in_the_documented_order_on_fragmented_masks(seed, sigma, fraction_off):
    mask = fragmented_mask(seed, sigma, fraction_off)
    parts = _outer_contours(mask)
    assert len(parts) > 20
    np.testing.assert_array_equal(mask_to_polygon(mask), documented_join(parts).astype(np.float32))


def test_parts_join_in_the_documented_order_when_vertices_are_equally_near():
    # parts on a lattice: every gap is the same, so every choice is made by a tie rule
    mask = np.zeros((40, 40), dtype=bool)
    for r in range(2, 38, 6):
        for c in range(2, 38, 6):
            mask[r : r + 3, c : c + 3] = True
    mask[20, 8:14] = True  # a one-pixel-wide neck: its contour passes the same pixels twice
    parts = _outer_contours(mask)
    np.testing.assert_array_equal(mask_to_polygon(mask), documented_join(parts).astype(np.float32))


def test_parts_far_apart_in_a_large_image_join_in_the_documented_order():
    # the triangulation's coordinates span the whole 4000-pixel image
    mask = np.zeros((3000, 4000), dtype=bool)
    mask[10:30, 10:40] = True
    mask[2950:2990, 3900:3990] = True
    mask[1500:1503, 2000:2010] = True
    mask[12:20, 3980:3999] = True
    parts = _outer_contours(mask)
    np.testing.assert_array_equal(mask_to_polygon(mask), documented_join(parts).astype(np.float32))


def gabriel_edges(points):
    """Pairs (i < j) whose closed diametral disk holds no other point: r is outside it exactly
    when (r - p) . (r - q) > 0 (integer arithmetic)."""
    edges = set()
    for i in range(len(points)):
        others = points[i + 1 :]
        dot = ((points[None] - points[i]) * (points[None] - others[:, None])).sum(axis=-1)
        dot[:, i] = 1
        dot[np.arange(len(others)), np.arange(i + 1, len(points))] = 1
        edges.update((i, i + 1 + j) for j in np.flatnonzero((dot > 0).all(axis=1)).tolist())
    return edges


def lattice_points(seed, spacing, offset):
    """A random subset of a square lattice: every empty circle has many points on it."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(14), np.arange(14)), axis=-1).reshape(-1, 2) * spacing
    return grid[rng.random(len(grid)) < 0.5] + offset


@pytest.mark.parametrize("points", [
    pytest.param(lattice_points(0, 1, 0), id="lattice"),
    pytest.param(lattice_points(1, 3, 0), id="lattice-spaced"),
    pytest.param(lattice_points(2, 2, 7000), id="lattice-far-from-origin"),
    pytest.param(np.unique(np.concatenate(_outer_contours(fragmented_mask(3, 1.2, 0.6, (40, 50)))), axis=0) * 150,
                 id="contours-spread-over-7000-pixels"),
    pytest.param(np.array([[0, 0], [1, 1], [2, 2], [5, 5], [9, 9]]), id="collinear"),
])
def test_the_triangulation_has_every_gabriel_edge(points):
    # the joining is exact only if every nearest pair between parts is an edge, and those are Gabriel edges
    points = np.unique(points.astype(np.int64), axis=0)
    a, b = _delaunay_edges(points)
    edges = {(min(i, j), max(i, j)) for i, j in zip(a.tolist(), b.tolist())}
    assert gabriel_edges(points) <= edges


@pytest.mark.parametrize("mask", [np.zeros(5, dtype=bool), np.zeros((2, 5, 5), dtype=bool)], ids=["1-D", "3-D"])
def test_mask_must_be_2d(mask):
    with pytest.raises(ValueError, match="2-D"):
        mask_to_polygon(mask)


@pytest.mark.parametrize("name", list(SHAPES), ids=str)
def test_segmentation_row_is_the_normalised_polygon(name):
    mask = SHAPES[name].mask
    class_id, values = parse_row(yolo_segmentation_row(7, mask))
    assert class_id == 7
    assert len(values) % 2 == 0 and len(values) >= 6
    assert values.min() >= 0 and values.max() <= 1
    height, width = mask.shape
    pixels = values.reshape(-1, 2) * (width, height)
    np.testing.assert_allclose(pixels, mask_to_polygon(mask), atol=5e-7 * max(width, height))


def test_segmentation_row_divides_x_by_width_and_y_by_height():
    _, values = parse_row(yolo_segmentation_row(0, np.ones((40, 160), dtype=bool)))
    xy = values.reshape(-1, 2)
    assert xy[:, 0].max() == pytest.approx(159 / 160, abs=1e-6)
    assert xy[:, 1].max() == pytest.approx(39 / 40, abs=1e-6)


def test_segmentation_row_values_are_each_vertex_divided_and_written_with_6_decimals():
    mask = fragmented_mask(4, 1.5, 0.6, shape=(97, 131))
    polygon = mask_to_polygon(mask).astype(np.float64)
    expected = " ".join(f"{v:.6f}" for v in (polygon / (131, 97)).ravel())
    assert yolo_segmentation_row(3, mask) == f"3 {expected}"


@pytest.mark.parametrize("class_id, error", [(-1, ValueError), (1.0, TypeError)], ids=["negative", "float"])
def test_class_id_must_be_a_non_negative_int(class_id, error):
    with pytest.raises(error):
        yolo_segmentation_row(class_id, SHAPES["disk"].mask)
    with pytest.raises(error):
        yolo_detection_row(class_id, (1, 1, 5, 5), 10, 10)


DETECTION_CASES = {
    "inside": ((10, 20, 30, 60), 100, 200, "3 0.200000 0.200000 0.200000 0.200000"),
    "past the top-left": ((-10, -10, 50, 50), 100, 100, "3 0.250000 0.250000 0.500000 0.500000"),
    "past the bottom-right": ((80, 90, 150, 130), 100, 100, "3 0.900000 0.950000 0.200000 0.100000"),
    "larger than the image": ((-5, -5, 300, 80), 160, 40, "3 0.500000 0.500000 1.000000 1.000000"),
    "fractional": ((0.5, 1.25, 2.5, 3.75), 10, 5, "3 0.150000 0.500000 0.200000 0.500000"),
    "numpy input": (np.array([0, 0, 32, 16], dtype=np.float32), 64, 64, "3 0.250000 0.125000 0.500000 0.250000"),
    "zero width": ((10, 10, 10, 20), 100, 100, None),
    "inverted": ((30, 10, 20, 20), 100, 100, None),
    "outside, clipped to a line": ((100, 10, 120, 20), 100, 100, None),
    "above the image": ((10, -20, 20, -5), 100, 100, None),
    "NaN": ((float("nan"), 0, 10, 10), 100, 100, None),
}


@pytest.mark.parametrize("name", list(DETECTION_CASES), ids=str)
def test_detection_row(name):
    xyxy, width, height, expected = DETECTION_CASES[name]
    row = yolo_detection_row(3, xyxy, width, height)
    assert row == expected
    if row is not None:
        _, values = parse_row(row)
        assert len(values) == 4 and values.min() >= 0 and values.max() <= 1


def test_detection_row_needs_an_image_size():
    with pytest.raises(ValueError, match="positive"):
        yolo_detection_row(0, (0, 0, 1, 1), 0, 10)


RLE_MASKS = {**{name: shape.mask for name, shape in SHAPES.items()}, "one pixel": NO_POLYGON["one pixel"]}


@pytest.mark.parametrize("name", list(RLE_MASKS), ids=str)
def test_coco_rle_decodes_exactly(name):
    mask = RLE_MASKS[name]
    annotation = coco_annotation(5, 2, 1, mask, (0, 0, 4, 4))
    assert annotation["iscrowd"] == 0
    assert annotation["area"] == int(mask.sum()) and isinstance(annotation["area"], int)
    rle = annotation["segmentation"]
    assert rle["size"] == list(mask.shape) and isinstance(rle["counts"], str)
    annotation = json.loads(json.dumps(annotation))  # JSON-ready
    decoded = mask_utils.decode({"size": rle["size"], "counts": annotation["segmentation"]["counts"].encode("ascii")})
    np.testing.assert_array_equal(decoded, mask.astype(np.uint8))
    assert mask_utils.area(annotation["segmentation"]) == annotation["area"]


@pytest.mark.parametrize("name", list(SHAPES), ids=str)
def test_coco_polygons_are_valid_and_close_to_the_filled_mask(name):
    shape = SHAPES[name]
    annotation = coco_annotation(5, 2, 1, shape.mask, (0, 0, 4, 4), mask_format="polygon")
    assert annotation["iscrowd"] == 0 and annotation["area"] == int(shape.mask.sum())
    polygons = annotation["segmentation"]
    assert len(polygons) == shape.parts
    assert all(len(p) % 2 == 0 and len(p) >= 6 and all(isinstance(v, float) for v in p) for p in polygons)
    height, width = shape.mask.shape
    decoded = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))).astype(bool)
    # pycocotools fills polygons through pixel centres about half a pixel short on each side.
    if shape.filled.sum() >= 100:
        assert iou(decoded, shape.filled) > 0.85


@pytest.mark.parametrize("mask_format", ["rle", "polygon"])
def test_coco_empty_mask_gives_none(mask_format):
    assert coco_annotation(1, 1, 1, np.zeros((6, 8), dtype=bool), (0, 0, 2, 2), mask_format) is None


def test_coco_polygon_mode_without_polygon_gives_none():
    assert coco_annotation(1, 1, 1, NO_POLYGON["one pixel"], (6, 4, 7, 5), "polygon") is None


def test_coco_fields():
    mask = rect((50, 100), (10, 40), (0, 60))
    annotation = coco_annotation(9, 4, 2, mask, (-5.123, 2.3456, 300.0, 40.556))
    assert annotation == {
        "id": 9,
        "image_id": 4,
        "category_id": 2,
        "segmentation": annotation["segmentation"],
        "area": 1800,
        "bbox": [0.0, 2.35, 100.0, 38.21],
        "iscrowd": 0,
    }
    scored = coco_annotation(9, 4, 2, mask, (0, 10, 60, 40), score=np.float32(0.5))
    assert scored["score"] == 0.5 and type(scored["score"]) is float
    assert scored["bbox"] == [0.0, 10.0, 60.0, 30.0]


def test_coco_rejects_an_unknown_mask_format():
    with pytest.raises(ValueError, match="mask_format"):
        coco_annotation(1, 1, 1, np.zeros((6, 8), dtype=bool), (0, 0, 2, 2), "bitmap")


@pytest.mark.parametrize("name", list(SHAPES), ids=str)
def test_label_studio_regions_are_the_coco_polygons_in_percent(name):
    shape = SHAPES[name]
    height, width = shape.mask.shape
    regions = label_studio_polygons("r", "car", shape.mask, np.float32(0.87654))
    polygons = coco_annotation(1, 1, 1, shape.mask, (0, 0, width, height), "polygon")["segmentation"]
    assert len(regions) == len(polygons) == shape.parts
    assert [r["id"] for r in regions] == [f"r_{k}" for k in range(shape.parts)]
    for region, polygon in zip(regions, polygons):
        points = np.array(region["value"]["points"])
        assert points.min() >= 0 and points.max() < 100
        np.testing.assert_allclose((points * (width, height) / 100).ravel(), polygon, atol=1e-9)
        assert region == {
            "id": region["id"], "type": "polygonlabels", "from_name": "label", "to_name": "image",
            "original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"points": region["value"]["points"], "polygonlabels": ["car"]}, "score": 0.8765,
        }
        assert type(region["score"]) is float and type(region["original_width"]) is int
    assert json.loads(json.dumps(regions)) == regions


@pytest.mark.parametrize("name", list(NO_POLYGON), ids=str)
def test_label_studio_without_polygon_gives_no_region(name):
    assert label_studio_polygons("r", "car", NO_POLYGON[name]) == []


def test_label_studio_score_is_optional():
    assert "score" not in label_studio_polygons("r", "car", SHAPES["rectangle"].mask)[0]


# ultralytics' own label checker and rasteriser on label files written from these rows. ultralytics is
# imported in a child process: importing it patches torch.save, PIL.Image.open (which then tries to
# pip-install a HEIF plugin for unreadable images), numpy's print options and OpenCV's thread count.

SCENE = (96, 160)  # every image: height, width
SCENE_SHAPES = {
    "rectangle": Shape(rect(SCENE, (10, 30), (20, 60))),
    "donut": Shape(disk(SCENE, (50, 50), 30) & ~disk(SCENE, (50, 50), 12), disk(SCENE, (50, 50), 30)),
    "two blobs": Shape(rect(SCENE, (60, 90), (100, 120)) | disk(SCENE, (20, 130), 12), parts=2),
    "on the border": Shape(rect(SCENE, (70, 96), (140, 160))),
}
BOXES = [(1, (20, 10, 60, 30)), (2, (-9, 50, 170, 99))]

ULTRALYTICS_CHECK = """
import json, sys
from pathlib import Path

import numpy as np
from ultralytics.data.utils import polygon2mask, verify_image_label

folder, num_classes = Path(sys.argv[1]), int(sys.argv[2])
report = {}
for image in sorted((folder / "images").glob("*.png")):
    labels = folder / "labels" / f"{image.stem}.txt"
    _, lb, shape, segments, _, missing, found, empty, corrupt, message = verify_image_label(
        (str(image), str(labels), "", False, num_classes, 0, 0, False)
    )
    report[image.stem] = {
        "labels": None if lb is None else lb.tolist(), "shape": shape, "segments": len(segments or []),
        "counts": [missing, found, empty, corrupt], "message": message,
    }
    if segments:  # ultralytics' training masks: denormalised polygons filled with cv2.fillPoly
        masks = [polygon2mask(shape, [(s * shape[::-1]).ravel()]) for s in segments]
        np.save(folder / f"{image.stem}-masks.npy", np.stack(masks).astype(bool))
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def ultralytics_report(tmp_path_factory):
    """verify_image_label's findings on three label files (segments, boxes, both mixed), and the masks
    ultralytics draws from the segments; skips where ultralytics is not installed."""
    if not has_ultralytics():
        pytest.skip("ultralytics is not installed")
    folder = tmp_path_factory.mktemp("yolo")
    files = {
        "segments": [yolo_segmentation_row(c, shape.mask) for c, shape in enumerate(SCENE_SHAPES.values())],
        "boxes": [yolo_detection_row(c, xyxy, SCENE[1], SCENE[0]) for c, xyxy in BOXES],
        "mixed": [
            yolo_segmentation_row(0, SCENE_SHAPES["rectangle"].mask),
            yolo_detection_row(0, (0, 0, 5, 5), SCENE[1], SCENE[0]),
        ],
    }
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    for name, rows in files.items():
        cv2.imwrite(str(folder / "images" / f"{name}.png"), np.zeros((*SCENE, 3), dtype=np.uint8))
        (folder / "labels" / f"{name}.txt").write_text("".join(row + "\n" for row in rows))
    env = reference_env({**os.environ, "YOLO_CONFIG_DIR": str(tmp_path_factory.mktemp("ultralytics-config")),
                         "YOLO_OFFLINE": "1"})
    run = subprocess.run(
        [sys.executable, "-c", ULTRALYTICS_CHECK, str(folder), str(len(SCENE_SHAPES))],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    return report, np.load(folder / "segments-masks.npy")


def test_ultralytics_accepts_segmentation_rows(ultralytics_report):
    report, masks = ultralytics_report
    found = report["segments"]
    assert (found["counts"], found["message"]) == ([0, 1, 0, 0], "")
    assert found["shape"] == list(SCENE) and found["segments"] == len(SCENE_SHAPES)
    assert [row[0] for row in found["labels"]] == list(range(len(SCENE_SHAPES)))
    for drawn, shape in zip(masks, SCENE_SHAPES.values()):
        assert iou(drawn, shape.filled) > 0.9


def test_ultralytics_accepts_detection_rows(ultralytics_report):
    found = ultralytics_report[0]["boxes"]
    assert (found["counts"], found["message"], found["segments"]) == ([0, 1, 0, 0], "", 0)
    expected = [[1, 0.25, 20 / 96, 0.25, 20 / 96], [2, 0.5, 73 / 96, 1, 46 / 96]]  # the second box clipped
    np.testing.assert_allclose(found["labels"], expected, atol=1e-6)


def test_ultralytics_rejects_mixed_rows(ultralytics_report):
    """Why a mask without a polygon gets no row rather than a box row."""
    found = ultralytics_report[0]["mixed"]
    assert found["counts"][3] == 1 and "mix segment and detection rows" in found["message"]
