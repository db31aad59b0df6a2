"""Reading labeled datasets back: what the writer wrote (YOLO, YOLO boxes, COCO RLE and polygons),
datasets of other tools (ultralytics' save_conf rows, COCO polygons), image keys and bad inputs."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from grounded_sam2.datasets.reading import DatasetReadError, read_dataset
from grounded_sam2.datasets.sources import find_images
from grounded_sam2.detections import make_detections, masks_to_xyxy

from dataset_files import write_dataset


def blobs(h: int, w: int) -> np.ndarray:
    """Two masks without holes: a rectangle and a disc."""
    masks = np.zeros((2, h, w), np.uint8)
    masks[0, 3:15, 4:20] = 1
    cv2.circle(masks[1], (w - 14, h - 12), 9, 1, -1)
    return masks.astype(bool)


def written(tmp_path: Path, dataset_format: str, coco_mask_format: str = "rle") -> Path:
    """A dataset of two images (one in a sub-folder) written by the project's writer."""
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    for path, (h, w) in ((inputs / "a.png", (40, 50)), (inputs / "sub" / "b.jpg", (36, 44))):
        cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))

    def detect(source, i, h, w):
        return make_detections(blobs(h, w), [0, 1], ["cat", "dog"], ["cat", "dog"], [0.9, 0.6 + i / 10], [0.5, 1.0])

    return write_dataset(tmp_path / "out", inputs, detect, ("cat", "dog"), dataset_format, coco_mask_format)


@pytest.mark.parametrize("dataset_format, coco_mask_format, exact_masks", [
    ("yolo", "rle", True),  # drawn as ultralytics draws them: the mask's pixels back
    ("coco", "rle", True),
    ("coco", "polygon", False),  # pycocotools draws polygons through pixel centres: half a pixel smaller
    ("yolo-det", "rle", None),  # boxes only
])
def test_a_written_dataset_reads_back(tmp_path, dataset_format, coco_mask_format, exact_masks):
    dataset = read_dataset(written(tmp_path, dataset_format, coco_mask_format))
    assert dataset.classes == ("cat", "dog") and dataset.format == dataset_format.split("-")[0]
    assert sorted(image.key for image in dataset.images) == ["a", "sub__b"]
    for image, instances in dataset:
        i = 0 if image.key == "a" else 1
        expected = blobs(instances.height, instances.width)
        assert (instances.height, instances.width) == ((40, 50) if i == 0 else (36, 44))
        assert instances.class_ids.tolist() == [0, 1] and not instances.iscrowd.any()
        np.testing.assert_allclose(instances.scores, [0.45, 0.6 + i / 10], atol=1e-6)
        class_ids, scores = dataset.classes_and_scores(image)  # the same, without drawing masks
        assert class_ids.tolist() == [0, 1] and scores.tolist() == instances.scores.tolist()
        np.testing.assert_allclose(instances.xyxy, masks_to_xyxy(expected), atol=1 if exact_masks is False else 1e-3)
        masks = instances.masks()
        if exact_masks is None:
            assert masks is None and instances.rles == [None, None]
        elif exact_masks:
            np.testing.assert_array_equal(masks, expected)
        else:
            iou = (masks & expected).sum((1, 2)) / (masks | expected).sum((1, 2))
            assert (iou > 0.8).all()


def test_keys_match_the_writers_names_and_splits_keep_duplicates_apart(tmp_path):
    root = tmp_path / "yolo"
    for relative in ("train/images/a.jpg", "train/images/a.png", "train/images/x/c.jpg", "valid/images/a.jpg"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / relative), np.zeros((8, 8, 3), np.uint8))
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "train/images", "val": "valid/images", "names": ["x"]}))
    dataset = read_dataset(root)
    assert [(i.key, i.split) for i in dataset.images] == [
        ("a", "train"), ("a_png", "train"), ("x__c", "train"), ("valid__a", "valid")]
    # the writer names the same inputs the same way (a.jpg and a.png in one folder)
    assert [s.name for s in find_images(root / "train" / "images")] == ["a", "a_png", "x__c"]


def test_other_tools_rows_and_coco_files(tmp_path):
    """ultralytics' save_conf rows (a confidence last); a COCO file with polygons, uncompressed RLE,
    crowd regions and scores, its images in an images/ folder, categories matched by name."""
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "p.jpg"), np.zeros((20, 40, 3), np.uint8))
    (root / "labels" / "p.txt").write_text("0 0.5 0.5 0.5 0.5 0.75\n1 0.1 0.1 0.9 0.1 0.9 0.9 0.25\n")
    (root / "data.yaml").write_text("train: images\nval: images\nnames: {0: a, 1: b}\n")
    instances = read_dataset(root / "data.yaml").instances(read_dataset(root).images[0])
    np.testing.assert_allclose(instances.scores, [0.75, 0.25])
    np.testing.assert_allclose(instances.xyxy[0], [10, 5, 30, 15])
    assert instances.rles[0] is None and instances.rles[1] is not None

    coco = tmp_path / "coco"
    (coco / "images").mkdir(parents=True)
    cv2.imwrite(str(coco / "images" / "q.png"), np.zeros((10, 12, 3), np.uint8))
    annotations = [
        {"id": 1, "image_id": 5, "category_id": 9, "bbox": [2, 2, 4, 4], "score": 0.5, "iscrowd": 0,
         "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]]},
        {"id": 2, "image_id": 5, "category_id": 4, "bbox": [0, 0, 12, 1], "score": 0.25, "iscrowd": 1,
         "segmentation": {"size": [10, 12], "counts": [0, 1, 9, 1, 9, 1, 9, 1, 9, 1, 9, 1, 9, 1, 9, 1, 9, 1, 9, 1,
                                                       9, 1, 9, 1, 9]}},
    ]
    (coco / "labels.json").write_text(json.dumps({
        "images": [{"id": 5, "file_name": "q.png", "width": 12, "height": 10}], "annotations": annotations,
        "categories": [{"id": 9, "name": "late"}, {"id": 4, "name": "early"}]}))
    dataset = read_dataset(coco / "labels.json")
    assert dataset.classes == ("early", "late") and dataset.images[0].path == coco / "images" / "q.png"
    image, instances = next(iter(dataset))
    assert instances.class_ids.tolist() == [1, 0] and instances.iscrowd.tolist() == [False, True]
    np.testing.assert_allclose(instances.scores, [0.5, 0.25])
    masks = instances.masks()
    assert masks[0].sum() == 16 and masks[1][0].all() and masks[1].sum() == 12  # the first row


@pytest.mark.parametrize("files, error", [
    ({}, "neither a YOLO dataset"),
    ({"data.yaml": "names: [a]\ntrain: images\nval: images\n", "images/i.png": None, "labels/i.txt": "3 0.5 0.5 1 1"},
     r"bad row '3 0.5 0.5 1 1' \(1 classes\)"),
    ({"data.yaml": "names: [a]\ntrain: images\nval: images\n", "images/i.png": None, "labels/i.txt": "0 x 0.5 1 1"},
     "bad row"),
    ({"data.yaml": "names: [a]\ntrain: images\nval: images\n", "images/i.png": None, "labels/i.txt": "0 .5 .5 1 1",
      "scores/i.txt": "0.5\n0.7\n"}, "holds 2 scores for 1 label rows"),
    ({"data.yaml": "train: images\n"}, "has no names"),
    ({"data.yaml": "names: [a\n"}, "not valid YAML"),
    ({"x/_annotations.coco.json": "{"}, "not valid JSON"),
    ({"_annotations.coco.json": json.dumps({"images": [], "categories": [],
                                            "annotations": [{"id": 3, "image_id": 1, "category_id": 2}]})},
     "annotation 3 has an unknown category_id"),
])
def test_bad_datasets_are_clear_errors(tmp_path, files, error):
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            cv2.imwrite(str(tmp_path / relative), np.zeros((4, 4, 3), np.uint8))
        else:
            (tmp_path / relative).write_text(text)
    with pytest.raises(DatasetReadError, match=error):
        dataset = read_dataset(tmp_path)
        for _ in dataset:
            pass
    with pytest.raises(DatasetReadError, match="dataset not found"):
        read_dataset(tmp_path / "missing")
