"""Streaming, resumable dataset writing.

Layout (``OUT/``)::

    manifest.json                 the configuration; a resume must match it
    data.yaml                     YOLO formats: train, val (, test), names, nc; folders relative to it
    train|valid|test/images/      the images (original bytes; EXIF-rotated ones re-encoded as PNG,
                                  video frames without a file as JPEG)
    train|valid|test/labels/      YOLO: one .txt per image (empty: no object)
    train|valid|test/scores/      YOLO: one .txt per image, the confidence of each label row, in
                                  row order, 4 decimals (ultralytics reads only images/ and labels/)
    train|valid|test/_annotations.coco.json   COCO: assembled from .work/ by finalize()
    tasks.json                    Label Studio: every image's task (``data.image``, ``data.split``,
                                  one prediction of polygons), assembled from .work/ by finalize()
    label_config.xml              Label Studio: the labeling configuration the tasks fit
    .work/                        COCO, Label Studio: one JSON per finished image
    .work/skipped/                one file per input that could not be labeled, with the reason
    skipped.txt                   those inputs, assembled by finalize()

Every file is written to a temporary name and renamed, the image before its label, so a run
killed at any moment leaves only complete files; a finished image is recognised by its label
(YOLO) or work file (COCO, Label Studio) and skipped when the same command runs again (skipped
inputs are tried again). The split of an image is a hash of the seed and its name: deterministic,
independent of order and interruptions.

Label Studio tasks point at their images through Label Studio's local file serving:
``/data/local-files/?d=<dataset folder name>/<split>/images/<file>``, a path relative to the
dataset folder's parent, which is the ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` to start Label
Studio with (the dataset folder itself is then the path of the project's Local Files storage).
finalize() writes the URLs from the folder's current name: a dataset renamed or moved gets
working URLs again from a resume, which writes nothing else.

Several processes may write one dataset at once, each its own images: the manifest is created
exactly once (by a hard link, which fails when the file exists), and a writer opened with
``create=False`` never creates it.
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import supervision as sv

from ..errors import GroundedSAM2Error
from .formats import (
    SCORE_DECIMALS,
    coco_annotation,
    label_studio_config,
    label_studio_local_file_url,
    label_studio_polygons,
    yolo_detection_row,
    yolo_segmentation_row,
)
from .sources import SourceImage

FORMATS = ("yolo", "yolo-det", "coco", "label-studio")
WORK_FILE_FORMATS = ("coco", "label-studio")  # an image's labels go to .work/ until finalize()
LABEL_STUDIO_MODEL_VERSION = "grounded-sam2"  # the predictions' model_version
SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.json"
SKIPPED = "skipped"  # folder of per-input skip records under .work/


class DatasetError(GroundedSAM2Error, RuntimeError):
    """An output folder that cannot be written or resumed."""


@dataclass(frozen=True)
class DatasetConfig:
    """How a dataset is written: format, split and mask encoding."""

    format: str = "yolo"  # yolo (segmentation polygons), yolo-det (boxes), coco or label-studio (polygons)
    split: Optional[Tuple[float, float, float]] = (0.8, 0.2, 0.0)  # train, valid, test; None: given per image
    seed: int = 0  # of the split
    coco_mask_format: str = "rle"  # or "polygon"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise DatasetError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.split is not None:
            object.__setattr__(self, "split", tuple(float(s) for s in self.split))
            if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1.0) > 1e-6 or self.split[0] <= 0:
                raise DatasetError(
                    f"split must be three non-negative fractions (train > 0) summing to 1, got {self.split}"
                )
        if self.coco_mask_format not in ("rle", "polygon"):
            raise DatasetError(f"coco_mask_format must be 'rle' or 'polygon', got {self.coco_mask_format!r}")


@dataclass
class ImageResult:
    """What labeling one input gave, for :meth:`DatasetWriter.commit`: the pixels it was labeled
    at and their detections, or the reason it was skipped."""

    source: SourceImage
    rgb: Optional[np.ndarray] = None  # HxWx3 RGB uint8, EXIF orientation applied
    stored_rotated: bool = False  # the file's stored pixels differ from ``rgb`` (EXIF orientation)
    detections: Optional[sv.Detections] = None
    skip_reason: Optional[str] = None
    error: Optional[BaseException] = None  # the exception behind a failed prediction


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


def settings_differences(found: Any, wanted: Any, prefix: str = "") -> List[str]:
    """``"key.sub: old -> new"`` for every leaf where two JSON-like settings differ."""
    if isinstance(found, Mapping) and isinstance(wanted, Mapping):
        return [line for key in sorted(set(found) | set(wanted), key=str)
                for line in settings_differences(found.get(key), wanted.get(key), f"{prefix}{key}.")]
    return [] if found == wanted else [f"{prefix.rstrip('.')}: {found!r} -> {wanted!r}"]


class DatasetWriter:
    """Writes one image's annotations as soon as they exist; see the module docstring."""

    def __init__(
        self,
        output: Path,
        config: DatasetConfig,
        classes: Sequence[str],
        provenance: Mapping[str, Any],
        assigned_splits: Optional[Dict[str, str]] = None,
        create: bool = True,
    ) -> None:
        """
        Arguments:
          output: the dataset folder.
          config: format, split and mask encoding.
          classes: class names; a class id indexes them.
          provenance: JSON-able settings that made the labels (the pipeline's configuration);
            the manifest records them with ``config`` and ``classes``.
          assigned_splits: output name -> train/valid/test, required when ``config.split`` is
            None (to keep the splits of a dataset being converted, or put video frames in train).
          create: create the dataset when the folder holds none; False for a worker writing
            into a dataset its parent created.
        """
        if config.split is None and assigned_splits is None:
            raise DatasetError("a dataset config without split fractions needs assigned_splits")
        self.output = Path(output)
        self.config = config
        self.classes = tuple(classes)
        self.assigned_splits = assigned_splits
        self.manifest = json.loads(json.dumps({"dataset": asdict(config), "classes": list(classes), **provenance}))
        self._open(create)

    def _open(self, create: bool) -> None:
        manifest = self.output / MANIFEST
        if not manifest.is_file():
            if not create:
                raise DatasetError(f"{self.output} holds no {MANIFEST}: the dataset has not been created")
            self._create_manifest(manifest)
        found = read_manifest(manifest)
        differences = settings_differences(found, self.manifest)
        if differences:
            raise DatasetError(
                f"{self.output} holds a dataset made with other settings: {'; '.join(differences)}. "
                f"Resume with the same settings, or write to a new output folder."
            )

    def _create_manifest(self, manifest: Path) -> None:
        """Create ``manifest`` once, even when several processes try at the same moment."""
        self.output.mkdir(parents=True, exist_ok=True)
        others = [p for p in self.output.iterdir() if not p.name.startswith(f".{MANIFEST}.")]
        if others and not manifest.exists():
            raise DatasetError(
                f"{self.output} is not empty and holds no {MANIFEST}: choose a new or empty output folder"
            )
        data = json.dumps(self.manifest, indent=2).encode()
        fd, tmp = tempfile.mkstemp(dir=self.output, prefix=f".{MANIFEST}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.link(tmp, manifest)  # fails if another process created it first: theirs is kept
        except FileExistsError:
            pass
        except OSError:  # no hard links on this file system: exclusive creation instead
            with contextlib.suppress(FileExistsError), open(manifest, "xb") as f:
                f.write(data)
        finally:
            Path(tmp).unlink(missing_ok=True)

    # --- where things go ---------------------------------------------------------------------

    def split_of(self, name: str) -> str:
        if self.config.split is None:
            return self.assigned_splits[name]
        digest = hashlib.sha256(f"{self.config.seed}:{name}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        train, valid, _ = self.config.split
        return "train" if u < train else "valid" if u < train + valid else "test"

    def _marker(self, name: str) -> Path:
        if self.config.format in WORK_FILE_FORMATS:
            return self.output / ".work" / f"{name}.json"
        return self.output / self.split_of(name) / "labels" / f"{name}.txt"

    def _skip_record(self, name: str) -> Path:
        return self.output / ".work" / SKIPPED / f"{name}.txt"

    def is_done(self, image: SourceImage) -> bool:
        return self._marker(image.name).is_file()

    # --- writing -------------------------------------------------------------------------------

    def commit(self, result: ImageResult) -> int:
        """Write one result: a labeled image (its file and labels), or the record of a skipped
        input. Returns the objects written."""
        if result.detections is None:
            reason = result.skip_reason or "no result"
            atomic_write(self._skip_record(result.source.name), f"{result.source.path}\t{reason}\n".encode())
            return 0
        d = result.detections
        written = self._write_labels(result.source, result.rgb, result.stored_rotated, d.class_id, d.mask, d.xyxy,
                                     d.confidence)
        self._skip_record(result.source.name).unlink(missing_ok=True)  # it failed in an earlier run
        return written

    def _write_labels(self, image: SourceImage, rgb: np.ndarray, stored_rotated: bool, class_ids: np.ndarray,
                      masks: np.ndarray, xyxy: np.ndarray, confidence: np.ndarray) -> int:
        """Write one labeled image: ``rgb`` is the pixels the labels refer to (EXIF applied),
        class_ids N, masks NxHxW bool, xyxy Nx4, confidence N. Returns the objects written."""
        split = self.split_of(image.name)
        file_name = self._write_image(image, rgb, stored_rotated, self.output / split / "images")
        h, w = rgb.shape[:2]
        if self.config.format == "coco":
            annotations = [
                a for a in (
                    coco_annotation(0, 0, int(c) + 1, m, b, self.config.coco_mask_format, float(s))
                    for c, m, b, s in zip(class_ids, masks, xyxy, confidence)
                ) if a is not None
            ]
            record = {"file_name": file_name, "split": split, "width": w, "height": h, "annotations": annotations}
            atomic_write(self._marker(image.name), json.dumps(record).encode())
            return len(annotations)
        if self.config.format == "label-studio":
            objects = [
                regions for regions in (
                    label_studio_polygons(_region_id(image.name, i), self.classes[int(c)], m, float(s))
                    for i, (c, m, s) in enumerate(zip(class_ids, masks, confidence))
                ) if regions
            ]
            record = {"file_name": file_name, "split": split, "objects": objects}
            atomic_write(self._marker(image.name), json.dumps(record).encode())
            return len(objects)
        if self.config.format == "yolo":
            rows = [yolo_segmentation_row(int(c), m) for c, m in zip(class_ids, masks)]
        else:
            rows = [yolo_detection_row(int(c), b, w, h) for c, b in zip(class_ids, xyxy)]
        kept = [(r, float(s)) for r, s in zip(rows, confidence) if r is not None]
        # the scores before the label file, which marks the image finished
        scores = "".join(f"{round(s, SCORE_DECIMALS)}\n" for _, s in kept)
        atomic_write(self.output / split / "scores" / f"{image.name}.txt", scores.encode())
        atomic_write(self._marker(image.name), "".join(f"{r}\n" for r, _ in kept).encode())
        return len(kept)

    def image_file(self, image: SourceImage, stored_rotated: bool = False) -> str:
        """Where ``image`` is (or will be) stored, relative to the output folder."""
        return f"{self.split_of(image.name)}/images/{image.name}{_storage(image, stored_rotated)[0]}"

    def _write_image(self, image: SourceImage, rgb: np.ndarray, stored_rotated: bool, folder: Path) -> str:
        """Copy the original file, or re-encode as PNG where the pixels differ from the stored
        ones (EXIF rotation) so that every loader sees what was labeled; images without a file
        (frames decoded from a video) are encoded as JPEG, quality 95. Returns the file name."""
        suffix, copy = _storage(image, stored_rotated)
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

    def finalize(self) -> Counter:
        """Write data.yaml, the COCO JSON files or the Label Studio files, and ``skipped.txt``
        (every input skipped and not labeled since, in name order); returns objects per class over
        the whole dataset (resumed images included)."""
        skipped = self.output / ".work" / SKIPPED
        records = sorted(skipped.glob("*.txt")) if skipped.is_dir() else []
        atomic_write(self.output / "skipped.txt", b"".join(r.read_bytes() for r in records))
        if self.config.format == "coco":
            return self._finalize_coco()
        if self.config.format == "label-studio":
            return self._finalize_label_studio()
        return self._finalize_yolo()

    def _has_test(self) -> bool:
        if self.config.split is None:
            return "test" in self.assigned_splits.values()
        return self.config.split[2] > 0

    def _finalize_yolo(self) -> Counter:
        counts: Counter = Counter()
        used_splits = []
        for split in SPLITS:
            labels = self.output / split / "labels"
            (self.output / split / "images").mkdir(parents=True, exist_ok=True)
            labels.mkdir(parents=True, exist_ok=True)
            for label in labels.glob("*.txt"):
                counts.update(self.classes[int(line.split()[0])] for line in label.read_text().splitlines() if line)
            if split != "test" or self._has_test():
                used_splits.append(split)
        # no ``path:``: ultralytics then resolves the folders against data.yaml's own folder, so the
        # dataset works wherever it is copied or moved (a relative ``path`` would follow the working
        # folder or ultralytics' datasets_dir, an absolute one the original's location)
        lines = ["train: train/images", "val: valid/images"]
        if "test" in used_splits:
            lines.append("test: test/images")
        lines.append(f"nc: {len(self.classes)}")
        lines.append("names:")
        lines += [f"  {i}: {json.dumps(name)}" for i, name in enumerate(self.classes)]
        atomic_write(self.output / "data.yaml", ("\n".join(lines) + "\n").encode())
        return counts

    def _finalize_coco(self) -> Counter:
        counts: Counter = Counter()
        work = self.output / ".work"
        records = sorted(work.glob("*.json")) if work.is_dir() else []
        categories = [{"id": i + 1, "name": c, "supercategory": "none"} for i, c in enumerate(self.classes)]
        for split in SPLITS:
            if split == "test" and not self._has_test():
                continue
            files = [f for f in records if self.split_of(f.stem) == split]
            path = self.output / split / "_annotations.coco.json"
            counts += _write_coco_split(path, files, categories, self.classes)
        return counts

    def _finalize_label_studio(self) -> Counter:
        """``tasks.json``, streamed from the work files in name order (one image's record in memory
        at a time), and ``label_config.xml``. A task's prediction score is its least confident
        object's (Label Studio sorts tasks by it: the doubtful images first); a task without
        objects has a prediction without result items and without a score."""
        counts: Counter = Counter()
        work = self.output / ".work"
        records = sorted(work.glob("*.json")) if work.is_dir() else []
        folder = self.output.resolve().name
        with atomic_path(self.output / "tasks.json") as tmp, open(tmp, "w") as f:
            f.write("[")
            for index, record_file in enumerate(records):
                r = json.loads(record_file.read_text())
                counts.update(regions[0]["value"]["polygonlabels"][0] for regions in r["objects"])
                result = [item for regions in r["objects"] for item in regions]
                prediction: Dict[str, Any] = {"model_version": LABEL_STUDIO_MODEL_VERSION}
                if result:
                    prediction["score"] = min(item["score"] for item in result)
                prediction["result"] = result
                url = label_studio_local_file_url(f"{folder}/{r['split']}/images/{r['file_name']}")
                task = {"data": {"image": url, "split": r["split"]}, "predictions": [prediction]}
                f.write(("\n" if index == 0 else ",\n") + json.dumps(task))
            f.write("\n]\n")
        atomic_write(self.output / "label_config.xml", label_studio_config(self.classes).encode())
        return counts


def _region_id(name: str, index: int) -> str:
    """The Label Studio region id of an image's ``index``-th object: 12 hexadecimal digits of a hash
    of both, the same in every run and distinct across the dataset (the part's index follows)."""
    return hashlib.sha256(f"{name}\0{index}".encode()).hexdigest()[:12]


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
                annotation = {**a, "id": annotation_id, "image_id": image_id}
                f.write(("" if annotation_id == 1 else ", ") + json.dumps(annotation))
                counts[classes[a["category_id"] - 1]] += 1
        f.write("]}")
    return counts


def read_manifest(manifest: Path) -> dict:
    """The manifest's settings; waits briefly for one another process is still writing (only
    where the file system has no hard links)."""
    for _ in range(50):
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(manifest.read_text())
        time.sleep(0.02)
    raise DatasetError(f"{manifest} is not valid JSON: the dataset folder is damaged")


def _storage(image: SourceImage, stored_rotated: bool) -> Tuple[str, bool]:
    """(extension, copy the file?) of a stored image: the original file, a PNG re-encoding of
    an EXIF-rotated one, or a JPEG of pixels without a file."""
    if image.path is None:
        return ".jpg", False
    if stored_rotated:
        return ".png", False
    return image.path.suffix.lower(), True
