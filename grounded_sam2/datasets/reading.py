"""Reading labeled datasets (YOLO segmentation or detection, COCO with RLE or polygon masks), one
image at a time, for evaluation and review.

- YOLO: a folder with ``data.yaml`` (``names``; ``train``/``val``/``test`` image folders, relative
  to ``path`` or to the yaml). An image's label file is its path with the last ``/images/``
  replaced by ``/labels/`` and the suffix ``.txt``; rows ``class cx cy w h`` or ``class x1 y1 ...``
  normalised. Confidences come from this project's ``scores/`` files (one line per row), or from a
  last column as ultralytics' ``save_conf`` writes it (a box row of 6 values, a segment row with an
  odd number of coordinates). A segment is drawn as ultralytics draws it (``cv2.fillPoly`` of the
  vertices in pixels), its box is the drawn mask's. Image sizes are read from the file headers
  (EXIF orientation applied, as ultralytics does).
- COCO: a JSON file, or a folder whose split sub-folders hold ``_annotations.coco.json``
  (Roboflow's layout, and this project's); images next to the JSON or in its ``images/``
  folder. Masks as RLE (compressed or not) or polygons (rasterised by pycocotools); ``score`` when
  every annotation of the dataset has one; ``iscrowd`` kept.

Images are matched across datasets by their **key**: the file name relative to its split's image
folder (or the COCO ``file_name``) without extension, folders joined by ``__``, which is the name
this project's writer gives an input (``a/img.jpg`` -> ``a__img``). Two files of one dataset with
the same key but another extension get ``_<ext>`` as the writer does (``a.jpg``, ``a.png`` -> ``a``,
``a_png``); a key that an earlier split holds gets its split in front (``valid__a``).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import yaml
from PIL import Image

from ..errors import GroundedSAM2Error
from ..images import EXIF_ORIENTATION
from .sources import IMAGE_EXTENSIONS

SPLIT_NAMES = {"train": "train", "val": "valid", "valid": "valid", "validation": "valid", "test": "test"}
COCO_FILE = "_annotations.coco.json"


class DatasetReadError(GroundedSAM2Error, ValueError):
    """A labeled dataset that cannot be read."""


@dataclass(frozen=True)
class DatasetImage:
    """One image of a dataset: its matching key, file, split and, when the dataset records it,
    its size (COCO); ``index`` numbers the images of a COCO dataset (its records, in file order)."""

    key: str
    path: Path
    split: str
    size: Optional[Tuple[int, int]] = None  # (height, width)
    index: int = 0


@dataclass(frozen=True)
class YoloRow:
    """One YOLO label row, normalised: the class, its box (XYXY; a segment's vertex box), the
    segment's vertices (Kx2 x, y; None for a box row) and a confidence from the row (or None)."""

    class_id: int
    box: np.ndarray
    polygon: Optional[np.ndarray]
    score: Optional[float] = None


@dataclass(frozen=True)
class Instances:
    """One image's labeled objects, in pixels of the image as stored.

    ``xyxy`` Nx4 XYXY in continuous pixel coordinates; ``rles`` N compressed COCO RLEs (``counts``
    bytes), None for an object without a mask; ``scores`` N confidences or None when the dataset
    has none; ``iscrowd`` N bools."""

    height: int
    width: int
    class_ids: np.ndarray
    xyxy: np.ndarray
    rles: List[Optional[dict]]
    scores: Optional[np.ndarray]
    iscrowd: np.ndarray

    def __len__(self) -> int:
        return len(self.class_ids)

    def select(self, keep: np.ndarray, class_ids: Optional[np.ndarray] = None) -> "Instances":
        """The objects the N bools ``keep`` select; with ``class_ids`` (one per kept object) as
        their classes instead of their own."""
        return Instances(self.height, self.width, self.class_ids[keep] if class_ids is None else class_ids,
                         self.xyxy[keep], [r for r, k in zip(self.rles, keep) if k],
                         None if self.scores is None else self.scores[keep], self.iscrowd[keep])

    def masks(self) -> Optional[np.ndarray]:
        """NxHxW bool masks, or None when an object has no mask."""
        if any(r is None for r in self.rles):
            return None
        from pycocotools import mask as mask_utils

        if not self.rles:
            return np.zeros((0, self.height, self.width), bool)
        return np.moveaxis(mask_utils.decode(list(self.rles)), -1, 0).astype(bool)


@dataclass
class LabeledDataset:
    """A dataset's classes and images; :meth:`instances` reads one image's labels."""

    path: Path
    format: str  # "yolo" or "coco"
    classes: Tuple[str, ...]
    images: List[DatasetImage] = field(default_factory=list)
    _coco: Dict[int, List[dict]] = field(default_factory=dict, repr=False)  # COCO: annotations by image index
    _coco_scores: bool = False

    def __len__(self) -> int:
        return len(self.images)

    def instances(self, image: DatasetImage) -> Instances:
        if self.format == "yolo":
            return self._yolo_instances(image)
        return self._coco_instances(image)

    def __iter__(self) -> Iterator[Tuple[DatasetImage, Instances]]:
        for image in self.images:
            yield image, self.instances(image)

    def classes_and_scores(self, image: DatasetImage) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """(N class ids, N confidences or None) of an image, without reading its pixels or
        drawing masks: what summaries of large datasets need."""
        if self.format == "yolo":
            rows = read_yolo_rows(label_path(image.path), len(self.classes))
            return np.array([r.class_id for r in rows], int), _yolo_scores(image, rows)
        annotations = self._coco[image.index]
        scores = np.array([a["score"] for a in annotations], np.float32) if self._coco_scores else None
        return np.array([a["category_index"] for a in annotations], int), scores

    def boxes_for(self, image: DatasetImage, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
        """(Nx4 XYXY pixels, N class ids) of an image loaded at height x width, without drawing
        masks: a YOLO segment gives the box of its vertices."""
        if self.format == "yolo":
            rows = read_yolo_rows(label_path(image.path), len(self.classes))
            xyxy = np.array([r.box for r in rows], np.float32).reshape(-1, 4) * (width, height, width, height)
            return xyxy.astype(np.float32), np.array([r.class_id for r in rows], int)
        annotations = self._coco[image.index]
        xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in annotations)], np.float32)
        return xyxy.reshape(-1, 4), np.array([a["category_index"] for a in annotations], int)

    # --- YOLO ----------------------------------------------------------------------------------

    def _yolo_instances(self, image: DatasetImage) -> Instances:
        import cv2
        from pycocotools import mask as mask_utils

        height, width = image.size or stored_size(image.path)
        rows = read_yolo_rows(label_path(image.path), len(self.classes))
        scores = _yolo_scores(image, rows)
        xyxy, rles = [], []
        for row in rows:
            if row.polygon is None:
                xyxy.append(row.box * (width, height, width, height))
                rles.append(None)
                continue
            mask = np.zeros((height, width), np.uint8)
            vertices = np.round(row.polygon * (width, height)).astype(np.int32)
            cv2.fillPoly(mask, [vertices], 1)
            rle = mask_utils.encode(np.asfortranarray(mask))
            x, y, w, h = mask_utils.toBbox(rle)
            xyxy.append([x, y, x + w, y + h])
            rles.append(rle)
        return Instances(height, width, np.array([r.class_id for r in rows], int),
                         np.array(xyxy, np.float32).reshape(-1, 4), rles, scores, np.zeros(len(rows), bool))

    # --- COCO ----------------------------------------------------------------------------------

    def _coco_instances(self, image: DatasetImage) -> Instances:
        from pycocotools import mask as mask_utils

        height, width = image.size
        annotations = self._coco[image.index]
        xyxy, rles = [], []
        for a in annotations:
            x, y, w, h = a["bbox"]
            xyxy.append([x, y, x + w, y + h])
            segmentation = a.get("segmentation")
            if not segmentation:
                rles.append(None)
            elif isinstance(segmentation, list):  # polygons
                rles.append(mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width)))
            elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
                rles.append(mask_utils.frPyObjects(segmentation, height, width))
            else:
                rles.append({"size": segmentation["size"], "counts": segmentation["counts"].encode()})
        _, scores = self.classes_and_scores(image)
        return Instances(height, width, np.array([a["category_index"] for a in annotations], int),
                         np.array(xyxy, np.float32).reshape(-1, 4), rles, scores,
                         np.array([bool(a.get("iscrowd", 0)) for a in annotations], bool))


def read_dataset(path: Path) -> LabeledDataset:
    """A YOLO dataset (a folder with data.yaml, or the data.yaml), a COCO JSON file, or a folder
    of COCO split folders (``*/_annotations.coco.json``)."""
    path = Path(path)
    if not path.exists():
        raise DatasetReadError(f"dataset not found: {path}")
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return _read_yolo(path)
    if path.is_file() and path.suffix.lower() == ".json":
        return _read_coco(path, [(path, "train")])
    if (path / "data.yaml").is_file():
        return _read_yolo(path / "data.yaml")
    coco_files = sorted(path.glob(f"*/{COCO_FILE}"))
    if (path / COCO_FILE).is_file():
        coco_files = [path / COCO_FILE]
    if coco_files:
        return _read_coco(path, [(f, SPLIT_NAMES.get(f.parent.name, "train")) for f in coco_files])
    raise DatasetReadError(
        f"{path} is neither a YOLO dataset (no data.yaml) nor a COCO one (no .json file, no */{COCO_FILE})"
    )


def _keyed(entries: Sequence[Tuple[str, str, Path]]) -> List[Tuple[str, str, Path]]:
    """(key, split, path) for (relative file name, split, path) entries in sorted order per
    split; see the module docstring."""
    taken: Dict[str, str] = {}
    keyed = []
    for relative, split, image_path in entries:
        key = Path(relative).with_suffix("").as_posix().replace("/", "__")
        if taken.get(key) == split:  # same stem, another extension, same split
            key = f"{key}_{Path(relative).suffix.lstrip('.').lower()}"
        if key in taken:
            key = f"{split}__{key}"
        taken[key] = split
        keyed.append((key, split, image_path))
    return keyed


def _read_yolo(data_yaml: Path) -> LabeledDataset:
    try:
        data = yaml.safe_load(data_yaml.read_text()) or {}
    except yaml.YAMLError as e:
        raise DatasetReadError(f"{data_yaml} is not valid YAML: {e}") from None
    names = data.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not names:
        raise DatasetReadError(f"{data_yaml} has no names")
    root = Path(data.get("path") or data_yaml.parent)
    if not root.is_absolute():
        root = data_yaml.parent / root
    if not root.is_dir():  # a path written on another machine
        root = data_yaml.parent
    dataset = LabeledDataset(data_yaml.parent, "yolo", tuple(str(n) for n in names))
    entries = []
    for key in ("train", "val", "test"):
        folders = data.get(key) or []
        for folder in [folders] if isinstance(folders, str) else folders:
            folder = root / folder
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            entries += [(p.relative_to(folder).as_posix(), SPLIT_NAMES[key], p) for p in files]
    dataset.images = [DatasetImage(k, p, s) for k, s, p in _keyed(entries)]
    return dataset


def label_path(image_path: Path) -> Path:
    """A YOLO image's label file: the last ``/images/`` of its path replaced by ``/labels/``."""
    parts = image_path.as_posix().rsplit("/images/", 1)
    return Path("/labels/".join(parts)).with_suffix(".txt")


def scores_path(image_path: Path) -> Path:
    """A YOLO image's scores file (this project's writer): ``/images/`` -> ``/scores/``."""
    parts = image_path.as_posix().rsplit("/images/", 1)
    return Path("/scores/".join(parts)).with_suffix(".txt")


def read_yolo_rows(label: Path, num_classes: int) -> List[YoloRow]:
    """The rows of a YOLO label file (none when the file is missing)."""
    rows = []
    if not label.is_file():
        return rows
    for line in label.read_text().splitlines():
        values = line.split()
        if not values:
            continue
        try:
            cls, coords = int(values[0]), np.array(values[1:], np.float64)
        except ValueError:
            raise DatasetReadError(f"{label}: bad row {line!r}") from None
        if not 0 <= cls < num_classes or len(coords) < 4:
            raise DatasetReadError(f"{label}: bad row {line!r} ({num_classes} classes)")
        score = None
        if len(coords) == 5 or (len(coords) > 5 and len(coords) % 2 == 1):  # ultralytics' save_conf
            coords, score = coords[:-1], float(coords[-1])
        if len(coords) == 4:
            cx, cy, w, h = coords
            rows.append(YoloRow(cls, np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]), None, score))
        else:
            polygon = coords.reshape(-1, 2)
            box = np.concatenate([polygon.min(0), polygon.max(0)])
            rows.append(YoloRow(cls, box, polygon, score))
    return rows


def read_scores(path: Path, rows: int) -> Optional[np.ndarray]:
    """The confidences of a scores file, or None when there is none; one per label row."""
    if not path.is_file():
        return None
    scores = np.array([float(v) for v in path.read_text().split()], np.float32)
    if len(scores) != rows:
        raise DatasetReadError(f"{path} holds {len(scores)} scores for {rows} label rows")
    return scores


def _yolo_scores(image: DatasetImage, rows: List[YoloRow]) -> Optional[np.ndarray]:
    """The confidences of an image's rows: its scores file, else the rows' own, else None."""
    scores = read_scores(scores_path(image.path), len(rows))
    if scores is None and rows and all(r.score is not None for r in rows):
        scores = np.array([r.score for r in rows], np.float32)
    return scores


def stored_size(path: Path) -> Tuple[int, int]:
    """(height, width) of an image file as displayed (EXIF orientation applied), from its header."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            if img.format == "PNG":  # getexif() would decode the pixels to look for EXIF after them
                exif = Image.Exif()
                if "exif" in img.info:
                    exif.load(img.info["exif"])
            else:
                exif = img.getexif()
            if exif.get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                width, height = height, width
    except OSError as e:
        raise DatasetReadError(f"cannot read the image {path}: {e}") from None
    return height, width


def _read_coco(root: Path, files: List[Tuple[Path, str]]) -> LabeledDataset:
    """COCO files with the split each one holds; categories matched by name across files."""
    loaded = []
    for json_file, split in files:
        try:
            loaded.append((json_file, split, json.loads(json_file.read_text())))
        except json.JSONDecodeError as e:
            raise DatasetReadError(f"{json_file} is not valid JSON: {e}") from None
    names = sorted({c["name"] for _, _, d in loaded for c in d.get("categories", [])},
                   key=lambda n: min(c["id"] for _, _, d in loaded for c in d["categories"] if c["name"] == n))
    dataset = LabeledDataset(root, "coco", tuple(names))
    index_of = {name: i for i, name in enumerate(names)}
    every_score, annotations = True, 0
    entries = []
    for json_file, split, data in loaded:
        category = {c["id"]: index_of[c["name"]] for c in data.get("categories", [])}
        per_image: Dict[int, List[dict]] = {}
        for a in data.get("annotations", []):
            if a["category_id"] not in category:
                raise DatasetReadError(f"{json_file}: annotation {a.get('id')} has an unknown category_id")
            per_image.setdefault(a["image_id"], []).append({**a, "category_index": category[a["category_id"]]})
            every_score, annotations = every_score and "score" in a, annotations + 1
        records = sorted(data.get("images", []), key=lambda r: r["file_name"])
        for record in records:
            folder = json_file.parent
            image_path = folder / record["file_name"]
            if not image_path.exists() and (folder / "images" / record["file_name"]).exists():
                image_path = folder / "images" / record["file_name"]
            dataset._coco[len(entries)] = per_image.get(record["id"], [])
            entries.append((record["file_name"], split, image_path, (record["height"], record["width"])))
    for index, ((key, split, path), entry) in enumerate(zip(_keyed([e[:3] for e in entries]), entries)):
        dataset.images.append(DatasetImage(key, path, split, entry[3], index))
    dataset._coco_scores = every_score and annotations > 0
    return dataset
