"""Streaming, resumable dataset writing.

Layout (``OUT/``)::

    manifest.json                 the run's settings; a resume must match them
    data.yaml                     YOLO formats: path, train, val (, test), names, nc
    train|valid|test/images/      the images (original bytes; EXIF-rotated ones re-encoded as PNG,
                                  video frames without a file as JPEG)
    train|valid|test/labels/      YOLO: one .txt per image (empty: no object)
    train|valid|test/_annotations.coco.json   COCO: assembled from .work/ by finalize()
    .work/                        COCO: one JSON per finished image
    skipped.txt                   inputs that could not be labeled, with the reason

Every file is written to a temporary name and renamed, the image before its label, so a run
killed at any moment leaves only complete files; a finished image is recognised by its label
(YOLO) or work file (COCO) and skipped when the same command runs again. The split of an image
is a hash of the seed and its name: deterministic, independent of order and interruptions.
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import GroundedSAM2Error
from .formats import coco_annotation, yolo_detection_row, yolo_segmentation_row
from .sources import SourceImage

FORMATS = ("yolo", "yolo-det", "coco")
SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.json"


class DatasetError(GroundedSAM2Error, RuntimeError):
    """An output folder that cannot be written or resumed."""


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that decides the dataset's content; resuming requires an equal spec."""

    format: str
    classes: Tuple[str, ...]
    split: Optional[Tuple[float, float, float]] = (0.8, 0.2, 0.0)  # None: splits given per image
    seed: int = 0
    coco_mask_format: str = "rle"
    settings: Dict[str, object] = field(default_factory=dict)  # models, ontology, filters

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise DatasetError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.split is not None and (
            len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1.0) > 1e-6 or self.split[0] <= 0
        ):
            raise DatasetError(f"split must be three non-negative fractions (train > 0) summing to 1, got {self.split}")
        if self.coco_mask_format not in ("rle", "polygon"):
            raise DatasetError(f"coco_mask_format must be 'rle' or 'polygon', got {self.coco_mask_format!r}")

    def to_json(self) -> dict:
        data = asdict(self)
        return json.loads(json.dumps(data))  # tuples -> lists, as read back from disk


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file next to ``path``, renamed to ``path`` when the block succeeds and
    removed when it fails: ``path`` is either absent, the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


class DatasetWriter:
    """Writes one image's annotations as soon as they exist; see the module docstring."""

    def __init__(self, output: Path, spec: DatasetSpec, assigned_splits: Optional[Dict[str, str]] = None) -> None:
        """``assigned_splits`` (output name -> train/valid/test) is required when ``spec.split`` is
        None, e.g. to keep the splits of a dataset being converted."""
        if spec.split is None and assigned_splits is None:
            raise DatasetError("a spec without split fractions needs assigned_splits")
        self.output = Path(output)
        self.spec = spec
        self.assigned_splits = assigned_splits
        self._open()

    def _open(self) -> None:
        manifest = self.output / MANIFEST
        wanted = self.spec.to_json()
        if manifest.is_file():
            found = json.loads(manifest.read_text())
            if found != wanted:
                differing = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
                details = "; ".join(f"{k}: {found.get(k)!r} -> {wanted.get(k)!r}" for k in differing)
                raise DatasetError(
                    f"{self.output} holds a dataset made with other settings ({details}). "
                    f"Resume with the same settings, or write to a new output folder."
                )
        elif self.output.exists() and any(self.output.iterdir()):
            raise DatasetError(f"{self.output} is not empty and holds no {MANIFEST}: choose a new or empty output folder")
        else:
            atomic_write(manifest, json.dumps(wanted, indent=2).encode())

    # --- where things go ---------------------------------------------------------------------

    def split_of(self, name: str) -> str:
        if self.spec.split is None:
            return self.assigned_splits[name]
        digest = hashlib.sha256(f"{self.spec.seed}:{name}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        train, valid, _ = self.spec.split
        return "train" if u < train else "valid" if u < train + valid else "test"

    def _marker(self, name: str) -> Path:
        if self.spec.format == "coco":
            return self.output / ".work" / f"{name}.json"
        return self.output / self.split_of(name) / "labels" / f"{name}.txt"

    def is_done(self, image: SourceImage) -> bool:
        return self._marker(image.name).is_file()

    # --- writing -------------------------------------------------------------------------------

    def write(self, image: SourceImage, rgb: np.ndarray, class_ids: np.ndarray, masks: np.ndarray, xyxy: np.ndarray, confidence: np.ndarray) -> int:
        """Write one labeled image: ``rgb`` is the pixels the labels refer to (EXIF applied),
        class_ids N, masks NxHxW bool, xyxy Nx4, confidence N. Returns the objects written."""
        split = self.split_of(image.name)
        file_name = self._write_image(image, rgb, self.output / split / "images")
        h, w = rgb.shape[:2]
        if self.spec.format == "coco":
            annotations = [
                a for a in (
                    coco_annotation(0, 0, int(c) + 1, m, b, self.spec.coco_mask_format, float(s))
                    for c, m, b, s in zip(class_ids, masks, xyxy, confidence)
                ) if a is not None
            ]
            record = {"file_name": file_name, "split": split, "width": w, "height": h, "annotations": annotations}
            atomic_write(self._marker(image.name), json.dumps(record).encode())
            return len(annotations)
        if self.spec.format == "yolo":
            rows = [yolo_segmentation_row(int(c), m) for c, m in zip(class_ids, masks)]
        else:
            rows = [yolo_detection_row(int(c), b, w, h) for c, b in zip(class_ids, xyxy)]
        rows = [r for r in rows if r is not None]
        atomic_write(self._marker(image.name), "".join(f"{r}\n" for r in rows).encode())
        return len(rows)

    def image_file(self, image: SourceImage) -> str:
        """Where ``image`` is (or will be) stored, relative to the output folder."""
        return f"{self.split_of(image.name)}/images/{image.name}{_storage(image)[0]}"

    def _write_image(self, image: SourceImage, rgb: np.ndarray, folder: Path) -> str:
        """Copy the original file, or re-encode as PNG where the pixels differ from the stored
        ones (EXIF rotation) so that every loader sees what was labeled; images without a file
        (frames decoded from a video) are encoded as JPEG, quality 95. Returns the file name."""
        suffix, copy = _storage(image)
        file_name = f"{image.name}{suffix}"
        if copy:
            with atomic_path(folder / file_name) as tmp:
                shutil.copyfile(image.path, tmp)
            return file_name
        import cv2

        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix == ".jpg" else []
        ok, data = cv2.imencode(suffix, rgb[:, :, ::-1], params)
        if not ok:
            raise DatasetError(f"could not encode {image.path or image.name} as {suffix}")
        atomic_write(folder / file_name, data.tobytes())
        return file_name

    # --- finishing -----------------------------------------------------------------------------

    def finalize(self, skipped: Sequence[Tuple[Path, str]]) -> Counter:
        """Write data.yaml or the COCO JSON files and the skip report; returns objects per class
        over the whole dataset (resumed images included)."""
        report = "".join(f"{path}\t{reason}\n" for path, reason in skipped)
        atomic_write(self.output / "skipped.txt", report.encode())
        if self.spec.format == "coco":
            return self._finalize_coco()
        return self._finalize_yolo()

    def _has_test(self) -> bool:
        if self.spec.split is None:
            return "test" in self.assigned_splits.values()
        return self.spec.split[2] > 0

    def _finalize_yolo(self) -> Counter:
        counts: Counter = Counter()
        used_splits = []
        for split in SPLITS:
            labels = self.output / split / "labels"
            (self.output / split / "images").mkdir(parents=True, exist_ok=True)
            labels.mkdir(parents=True, exist_ok=True)
            for label in labels.glob("*.txt"):
                counts.update(self.spec.classes[int(line.split()[0])] for line in label.read_text().splitlines() if line)
            if split != "test" or self._has_test():
                used_splits.append(split)
        lines = [f"path: {json.dumps(str(self.output.resolve()))}", "train: train/images", "val: valid/images"]
        if "test" in used_splits:
            lines.append("test: test/images")
        lines.append(f"nc: {len(self.spec.classes)}")
        lines.append("names:")
        lines += [f"  {i}: {json.dumps(name)}" for i, name in enumerate(self.spec.classes)]
        atomic_write(self.output / "data.yaml", ("\n".join(lines) + "\n").encode())
        return counts

    def _finalize_coco(self) -> Counter:
        counts: Counter = Counter()
        work = self.output / ".work"
        records = sorted(work.glob("*.json")) if work.is_dir() else []
        categories = [{"id": i + 1, "name": c, "supercategory": "none"} for i, c in enumerate(self.spec.classes)]
        for split in SPLITS:
            if split == "test" and not self._has_test():
                continue
            files = [f for f in records if self.split_of(f.stem) == split]
            path = self.output / split / "_annotations.coco.json"
            counts += _write_coco_split(path, files, categories, self.spec.classes)
        return counts


def _write_coco_split(path: Path, record_files: List[Path], categories: List[dict], classes: Sequence[str]) -> Counter:
    """Stream one split's COCO JSON from the per-image work files, in two passes (images, then
    annotations), holding one image's record in memory at a time. Ids follow file order."""
    counts: Counter = Counter()
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write('{"info": {"description": "grounded-sam2"}, "licenses": [], ')
        f.write(f'"categories": {json.dumps(categories)}, "images": [')
        for image_id, record_file in enumerate(record_files, start=1):
            r = json.loads(record_file.read_text())
            image = {"id": image_id, "file_name": r["file_name"], "width": r["width"], "height": r["height"]}
            f.write(("" if image_id == 1 else ", ") + json.dumps(image))
        f.write('], "annotations": [')
        annotation_id = 0
        for image_id, record_file in enumerate(record_files, start=1):
            for a in json.loads(record_file.read_text())["annotations"]:
                annotation_id += 1
                f.write(("" if annotation_id == 1 else ", ") + json.dumps({**a, "id": annotation_id, "image_id": image_id}))
                counts[classes[a["category_id"] - 1]] += 1
        f.write("]}")
    return counts


def _storage(image: SourceImage) -> Tuple[str, bool]:
    """(extension, copy the file?) of a stored image: the original file, a PNG re-encoding of
    an EXIF-rotated one, or a JPEG of pixels without a file."""
    if image.path is None:
        return ".jpg", False
    if _needs_reencoding(image.path):
        return ".png", False
    return image.path.suffix.lower(), True


def _needs_reencoding(path: Path) -> bool:
    """True for images stored rotated (EXIF orientation): their labels refer to upright pixels."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            orientation = img.getexif().get(0x0112, 1)
    except OSError:
        return True
    return orientation not in (None, 1)
