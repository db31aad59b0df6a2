"""Reading detection datasets users already have (YOLO or COCO), to segment their boxes.

- YOLO: a folder with ``data.yaml`` (``names``; ``train``/``val``/``test`` image folders,
  relative to ``path`` or to the yaml); each image's label file is its path with the last
  ``/images/`` replaced by ``/labels/`` and the suffix ``.txt``; rows ``class cx cy w h``
  normalised (segment rows are reduced to their bounding box).
- COCO: a JSON file, or a folder whose split sub-folders hold ``_annotations.coco.json``
  (Roboflow's layout); images next to the JSON or in its ``images/`` folder; boxes XYWH pixels.

Splits are kept: YOLO ``train``/``val``/``test`` and COCO split folders become train/valid/test;
the images of a single COCO JSON file go to train.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import yaml

from ..errors import GroundedSAM2Error
from .sources import IMAGE_EXTENSIONS, SourceImage

SPLIT_NAMES = {"train": "train", "val": "valid", "valid": "valid", "validation": "valid", "test": "test"}


class BoxDatasetError(GroundedSAM2Error, ValueError):
    """A detection dataset that cannot be read."""


@dataclass
class BoxDataset:
    """Images with boxes: class names, images with output names, their split, and a way to get
    each image's boxes in pixels of the image as loaded (EXIF applied)."""

    classes: Tuple[str, ...]
    images: List[SourceImage] = field(default_factory=list)
    splits: Dict[str, str] = field(default_factory=dict)  # output name -> train/valid/test
    _normalized: Dict[str, Tuple[np.ndarray, np.ndarray, bool]] = field(default_factory=dict)

    def boxes_for(self, image: SourceImage, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
        """(Nx4 XYXY pixels, N class ids) of an image loaded at height x width."""
        xyxy, class_ids, normalized = self._normalized[image.name]
        if normalized:
            xyxy = xyxy * np.array([width, height, width, height], np.float32)
        return xyxy, class_ids


def read_box_dataset(path: Path) -> BoxDataset:
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".json":
        return _read_coco([(path, "train")])
    if (path / "data.yaml").is_file():
        return _read_yolo(path / "data.yaml")
    coco_files = sorted(path.glob("*/_annotations.coco.json"))
    if coco_files:
        return _read_coco([(f, SPLIT_NAMES.get(f.parent.name, f.parent.name)) for f in coco_files])
    raise BoxDatasetError(
        f"{path} is not a YOLO dataset (no data.yaml) nor a COCO one (no .json file, no */_annotations.coco.json)"
    )


def _read_yolo(data_yaml: Path) -> BoxDataset:
    data = yaml.safe_load(data_yaml.read_text()) or {}
    names = data.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not names:
        raise BoxDatasetError(f"{data_yaml} has no names")
    root = Path(data.get("path") or data_yaml.parent)
    if not root.is_absolute():
        root = data_yaml.parent / root
    if not root.is_dir():  # a path written on another machine
        root = data_yaml.parent
    dataset = BoxDataset(tuple(str(n) for n in names))
    taken = set()
    for key in ("train", "val", "test"):
        if not data.get(key):
            continue
        folder = root / data[key]
        for image_path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS):
            name = "__".join(image_path.relative_to(folder).with_suffix("").parts)
            name = name if name not in taken else f"{SPLIT_NAMES[key]}__{name}"
            taken.add(name)
            image = SourceImage(image_path, name)
            dataset.images.append(image)
            dataset.splits[name] = SPLIT_NAMES[key]
            dataset._normalized[name] = (*_yolo_boxes(_label_path(image_path), len(names)), True)
    return dataset


def _label_path(image_path: Path) -> Path:
    parts = image_path.as_posix().rsplit("/images/", 1)
    return Path("/labels/".join(parts)).with_suffix(".txt")


def _yolo_boxes(label: Path, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    boxes, ids = [], []
    if label.is_file():
        for row in label.read_text().splitlines():
            values = row.split()
            if not values:
                continue
            cls, coords = int(values[0]), np.array(values[1:], np.float32)
            if not 0 <= cls < num_classes or len(coords) < 4:
                raise BoxDatasetError(f"{label}: bad row {row!r}")
            if len(coords) == 4:
                cx, cy, w, h = coords
                boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            else:  # a segment: its bounding box
                xs, ys = coords[0::2], coords[1::2]
                boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
            ids.append(cls)
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(ids, int)


def _read_coco(files: List[Tuple[Path, str]]) -> BoxDataset:
    """COCO files with the split each one holds."""
    datasets = [(f, split, json.loads(f.read_text())) for f, split in files]
    categories = sorted({(c["id"], c["name"]) for _, _, d in datasets for c in d.get("categories", [])})
    category_index = {cid: i for i, (cid, _) in enumerate(categories)}
    dataset = BoxDataset(tuple(name for _, name in categories))
    for json_file, split, data in datasets:
        per_image: Dict[int, list] = {}
        for a in data.get("annotations", []):
            per_image.setdefault(a["image_id"], []).append(a)
        for record in sorted(data.get("images", []), key=lambda r: r["file_name"]):
            folder = json_file.parent
            image_path = folder / record["file_name"]
            if not image_path.exists() and (folder / "images" / record["file_name"]).exists():
                image_path = folder / "images" / record["file_name"]
            name = Path(record["file_name"]).with_suffix("").as_posix().replace("/", "__")
            if name in dataset.splits:  # the same file name in two splits
                name = f"{split}__{name}"
            anns = per_image.get(record["id"], [])
            xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
            xyxy = xyxy.reshape(-1, 4)
            ids = np.array([category_index[a["category_id"]] for a in anns], int)
            image = SourceImage(image_path, name)
            dataset.images.append(image)
            dataset.splits[name] = split
            dataset._normalized[name] = (xyxy, ids, False)
    return dataset
