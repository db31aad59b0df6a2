"""segment-everything: class-agnostic masks of the automatic mask generator as a dataset."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from grounded_sam2.config import DeviceConfig
from grounded_sam2.datasets.writer import DatasetConfig
from grounded_sam2.labeling import segment_everything
from grounded_sam2.segmentation import SegmenterConfig

CPU = DeviceConfig("cpu")

OPTIONS = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.3, box_nms_thresh=1.0)
EVERYTHING_IN_TRAIN = DatasetConfig(format="coco", split=(1.0, 0.0, 0.0))


def write_images(folder: Path) -> None:
    folder.mkdir(parents=True)
    for i in range(2):
        img = np.full((60, 80, 3), 30 + 50 * i, np.uint8)
        img[10:40, 20:60] = (200, 80, 40)
        cv2.imwrite(str(folder / f"{i}.png"), img)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")


def test_coco_dataset_of_everything_with_resume(tmp_path, small_sam2):
    from pycocotools.coco import COCO

    write_images(tmp_path / "in")
    summary = segment_everything(tmp_path / "in", tmp_path / "out", SegmenterConfig(small_sam2), EVERYTHING_IN_TRAIN,
                                 generator_options=OPTIONS, placement=CPU, progress=False)
    assert summary.labeled == 2 and [p.name for p, _ in summary.skipped] == ["broken.jpg"]
    coco = COCO(str(tmp_path / "out/train/_annotations.coco.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["object"]
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == summary.objects_per_class["object"] >= 2
    assert all(a["iscrowd"] == 0 and coco.annToMask(a).sum() == a["area"] > 0 for a in anns)
    again = segment_everything(tmp_path / "in", tmp_path / "out", SegmenterConfig(small_sam2), EVERYTHING_IN_TRAIN,
                               generator_options=OPTIONS, placement=CPU, progress=False)
    assert again.already_done == 2 and again.labeled == 0


def test_cli(tmp_path):
    from segmenter import save_random_checkpoint

    root = Path(__file__).resolve().parents[2]
    write_images(tmp_path / "in")
    sam2 = save_random_checkpoint(tmp_path / "sam2.pt", "sam2.1_hiera_tiny", image_size=256)
    result = subprocess.run(
        [sys.executable, "-m", "grounded_sam2.cli", "segment-everything", tmp_path / "in",
         "-o", tmp_path / "out",
         "--sam2", sam2, "--device", "cpu", "--format", "yolo", "--points-per-side", "2", "--pred-iou-thresh", "0",
         "--stability-score-thresh", "0.3", "--no-progress"],
        env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
    )
    assert result.returncode == 1, result.stderr  # one input skipped
    assert "2 labeled now" in result.stdout and "broken.jpg" in result.stdout
    assert len(list((tmp_path / "out").glob("*/labels/*.txt"))) == 2


def test_nothing_found_says_which_thresholds_to_lower(tmp_path, small_sam2):
    write_images(tmp_path / "in")
    strict = {**OPTIONS, "pred_iou_thresh": 0.999999, "stability_score_thresh": 0.999999}
    summary = segment_everything(tmp_path / "in", tmp_path / "out", SegmenterConfig(small_sam2), EVERYTHING_IN_TRAIN,
                                 generator_options=strict, placement=CPU, progress=False)
    assert summary.labeled == 2 and summary.objects_per_class == {"object": 0}
    assert "lower pred_iou_thresh (--pred-iou-thresh, now 0.999999)" in str(summary)
