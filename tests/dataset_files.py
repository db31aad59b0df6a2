"""Comparing output folders in tests."""

import hashlib
from pathlib import Path


def normalized_dataset(folder: Path) -> dict:
    """The SHA-256 of every file by relative path. Datasets written to different folders compare
    equal: nothing in them names their own folder (data.yaml has no ``path:``)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def write_dataset(output: Path, inputs: Path, detect, classes, dataset_format: str = "yolo",
                  coco_mask_format: str = "rle", seed: int = 0) -> Path:
    """A dataset written by the project's writer from the images of ``inputs``:
    ``detect(source, index, height, width)`` gives each image's ``sv.Detections``."""
    import cv2
    import numpy as np

    from grounded_sam2.datasets.sources import find_images
    from grounded_sam2.datasets.writer import DatasetConfig, DatasetWriter, ImageResult

    writer = DatasetWriter(output, DatasetConfig(dataset_format, seed=seed, coco_mask_format=coco_mask_format),
                           classes, {"pipeline": "test"})
    for i, source in enumerate(find_images(inputs)):
        h, w = cv2.imread(str(source.path)).shape[:2]
        writer.commit(ImageResult(source, rgb=np.zeros((h, w, 3), np.uint8), detections=detect(source, i, h, w)))
    writer.finalize()
    return output
