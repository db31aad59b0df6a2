"""Detection datasets (YOLO, COCO) turned into segmentation datasets with SAM 2."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from grounded_sam2.config import DeviceConfig
from grounded_sam2.datasets.reading import DatasetReadError, read_dataset
from grounded_sam2.datasets.writer import DatasetConfig
from grounded_sam2.labeling import segment_box_dataset
from grounded_sam2.segmentation import SegmenterConfig

CPU = DeviceConfig("cpu")


def write_image(path: Path, h: int, w: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = rng.integers(50, 255, 3)
    cv2.imwrite(str(path), img)


def yolo_detection_dataset(root: Path) -> Path:
    (root / "data.yaml").parent.mkdir(parents=True)
    (root / "data.yaml").write_text(yaml.safe_dump({"path": "/elsewhere", "train": "train/images",
                                                    "val": "valid/images", "names": {0: "cat", 1: "dog"}}))
    write_image(root / "train/images/a.jpg", 60, 80, 0)
    (root / "train/labels").mkdir(parents=True)
    (root / "train/labels/a.txt").write_text("1 0.5 0.5 0.5 0.5\n0 0.25 0.25 0.2 0.3\n")
    write_image(root / "valid/images/b.png", 40, 40, 1)  # no label file: no object
    write_image(root / "valid/images/c.png", 50, 30, 2)
    (root / "valid/labels").mkdir(parents=True)
    (root / "valid/labels/c.txt").write_text("0 0.1 0.1 0.9 0.1 0.9 0.9\n")  # a segment row: its box is used
    return root


def test_reads_yolo_boxes_in_pixels(tmp_path):
    dataset = read_dataset(yolo_detection_dataset(tmp_path / "yolo"))
    assert dataset.classes == ("cat", "dog")
    assert {i.key: i.split for i in dataset.images} == {"a": "train", "b": "valid", "c": "valid"}
    a = next(i for i in dataset.images if i.key == "a")
    xyxy, ids = dataset.boxes_for(a, 60, 80)
    np.testing.assert_allclose(xyxy, [[20, 15, 60, 45], [12, 6, 28, 24]], atol=1e-4)
    assert ids.tolist() == [1, 0]
    c = next(i for i in dataset.images if i.key == "c")
    np.testing.assert_allclose(dataset.boxes_for(c, 50, 30)[0], [[3, 5, 27, 45]], atol=1e-4)


def test_yolo_detection_to_yolo_segmentation(tmp_path, small_sam2):
    source = yolo_detection_dataset(tmp_path / "yolo")
    summary = segment_box_dataset(source, tmp_path / "out", SegmenterConfig(small_sam2), placement=CPU, progress=False)
    out = tmp_path / "out"
    assert summary.images == 3 and summary.labeled == 3 and not summary.skipped
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("*/labels/*.txt")) == [
        "train/labels/a.txt", "valid/labels/b.txt", "valid/labels/c.txt"]
    assert (out / "valid/labels/b.txt").read_text() == ""
    rows = (out / "train/labels/a.txt").read_text().splitlines()
    assert [r.split()[0] for r in rows] == ["1", "0"][: len(rows)] and all(len(r.split()) >= 7 for r in rows)
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == {0: "cat", 1: "dog"}


def test_coco_split_folders_to_coco(tmp_path, small_sam2):
    from pycocotools.coco import COCO

    source = tmp_path / "coco"
    for split, n in (("train", 2), ("valid", 1)):
        images, annotations = [], []
        for i in range(n):
            write_image(source / split / f"{i}.jpg", 50, 60, i)
            images.append({"id": i + 7, "file_name": f"{i}.jpg", "width": 60, "height": 50})
            annotations.append({"id": i, "image_id": i + 7, "category_id": 3, "bbox": [10, 10, 30, 25], "iscrowd": 0})
        (source / split / "_annotations.coco.json").write_text(json.dumps(
            {"images": images, "annotations": annotations,
             "categories": [{"id": 3, "name": "box"}, {"id": 1, "name": "bg"}]}))
    summary = segment_box_dataset(source, tmp_path / "out", SegmenterConfig(small_sam2), DatasetConfig(format="coco"),
                                  placement=CPU, progress=False)
    assert summary.labeled == 3
    train = COCO(str(tmp_path / "out/train/_annotations.coco.json"))
    assert [c["name"] for c in train.loadCats(train.getCatIds())] == ["bg", "box"]
    assert len(train.getImgIds()) == 2 and not (tmp_path / "out/test").exists()
    for ann in train.loadAnns(train.getAnnIds()):
        assert ann["category_id"] == 2 and ann["iscrowd"] == 0 and train.annToMask(ann).sum() == ann["area"]


def test_not_a_dataset(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DatasetReadError, match="neither a YOLO dataset"):
        read_dataset(tmp_path / "x")


def test_cli(tmp_path):
    import os
    import subprocess
    import sys

    from segmenter import save_random_checkpoint

    root = Path(__file__).resolve().parents[2]
    sam2 = save_random_checkpoint(tmp_path / "sam2.pt", "sam2.1_hiera_tiny", image_size=256)
    source = yolo_detection_dataset(tmp_path / "yolo")
    env = {**os.environ, "PYTHONPATH": str(root)}
    run = [sys.executable, "-m", "grounded_sam2.cli", "segment-boxes"]
    result = subprocess.run([*run, source, "-o", tmp_path / "out", "--sam2", sam2, "--device", "cpu", "--no-progress"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "3 labeled now" in result.stdout and (tmp_path / "out/data.yaml").is_file()
    missing = subprocess.run([*run, tmp_path / "nope", "-o", tmp_path / "o2", "--sam2", sam2],
                             env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "dataset not found" in missing.stderr
