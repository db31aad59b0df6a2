"""Label Studio output: tasks.json checked against Label Studio's documented import structure
(tasks with ``data`` and ``predictions``, ``polygonlabels`` results in percent that fit the
labeling config), polygons equal to the COCO ones, resume, and escaping of class names."""

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path
from urllib.parse import unquote

import cv2
import numpy as np
import pytest

from grounded_sam2 import labeling
from grounded_sam2.datasets.formats import coco_annotation
from grounded_sam2.datasets.sources import find_images
from grounded_sam2.datasets.writer import SPLITS, DatasetConfig, DatasetWriter
from grounded_sam2.detections import make_detections, masks_to_xyxy
from grounded_sam2.labeling import label_images

from dataset_files import normalized_dataset

CLASSES = ("dog", 'say "cheese" <&> \'ok\'', "tab\tand\nnew line")
LOCAL_FILES = "/data/local-files/?d="


def validate_label_studio_import(tasks, config_xml: str) -> dict:
    """Label Studio's import structure as its docs give it (Basic Label Studio JSON format with
    ``predictions``; the PolygonLabels result fields), checked key by key against the labeling
    config. Returns {result id: (task index, item)}."""
    view = ET.fromstring(config_xml)
    assert view.tag == "View"
    images, controls = view.findall("Image"), view.findall("PolygonLabels")
    assert len(images) == 1 and len(controls) == 1
    image, control = images[0], controls[0]
    assert image.get("value", "").startswith("$") and control.get("toName") == image.get("name")
    data_key = image.get("value")[1:]
    classes = [label.get("value") for label in control.findall("Label")]
    assert len(classes) == len(set(classes)) > 0
    assert isinstance(tasks, list)
    ids = {}
    for index, task in enumerate(tasks):
        assert isinstance(task, dict) and set(task) == {"data", "predictions"}
        assert isinstance(task["data"], dict) and isinstance(task["data"][data_key], str)
        assert task["data"][data_key].startswith(LOCAL_FILES) and task["data"]["split"] in SPLITS
        assert isinstance(task["predictions"], list) and len(task["predictions"]) == 1
        prediction = task["predictions"][0]
        assert isinstance(prediction["model_version"], str) and isinstance(prediction["result"], list)
        assert set(prediction) == {"model_version", "result"} | ({"score"} if prediction["result"] else set())
        for item in prediction["result"]:
            assert set(item) == {"id", "type", "from_name", "to_name", "original_width", "original_height",
                                 "image_rotation", "value", "score"}
            assert isinstance(item["id"], str) and item["id"] not in ids, "result ids are unique"
            ids[item["id"]] = (index, item)
            assert item["type"] == "polygonlabels"
            assert item["from_name"] == control.get("name") and item["to_name"] == image.get("name")
            assert all(type(item[k]) is int and item[k] > 0 for k in ("original_width", "original_height"))
            assert item["image_rotation"] == 0
            assert set(item["value"]) == {"points", "polygonlabels"}
            points = item["value"]["points"]
            assert isinstance(points, list) and len(points) >= 3
            assert all(isinstance(p, list) and len(p) == 2 and all(isinstance(v, float) and 0 <= v <= 100 for v in p)
                       for p in points)
            labels = item["value"]["polygonlabels"]
            assert isinstance(labels, list) and len(labels) == 1 and labels[0] in classes
            assert isinstance(item["score"], float) and 0 <= item["score"] <= 1
        if prediction["result"]:
            assert prediction["score"] == min(item["score"] for item in prediction["result"])
    return ids


def masks_of(rgb):
    """Deterministic masks from the pixels, in many parts (one class per channel)."""
    return np.stack([rgb[..., c] > 128 for c in range(3)])


def fragmented(arrays, sources):
    results = []
    for a in arrays:
        masks = masks_of(a)
        results.append(make_detections(masks, [0, 1, 2], list(CLASSES), list(CLASSES),
                                       grounding_confidence=[0.9, 0.8, 0.7], sam_iou=[0.5, 0.61234, 0.7],
                                       xyxy=masks_to_xyxy(masks, fallback=np.zeros((3, 4)))))
    return results


def make_inputs(folder: Path):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, w in enumerate([40, 50, 33, 60, 45]):
        pixels = cv2.GaussianBlur(rng.integers(0, 256, (30, w, 3), np.uint8), (5, 5), 0)
        cv2.imwrite(str(folder / f"{i:02d}.png"), pixels)
    cv2.imwrite(str(folder / "my dog #1 ü.png"), np.zeros((20, 30, 3), np.uint8))  # no object; quoted in the URL
    (folder / "broken.png").write_bytes(b"not an image")
    return find_images(folder)


def writer_for(folder: Path) -> DatasetWriter:
    return DatasetWriter(folder, DatasetConfig(format="label-studio", split=(0.6, 0.2, 0.2), seed=1), CLASSES,
                         {"pipeline": "test"})


def test_tasks_import_into_label_studio_and_give_the_coco_polygons(tmp_path):
    sources = make_inputs(tmp_path / "in")
    summary = label_images(sources, writer_for(tmp_path / "out"), fragmented, batch_size=2, progress=False)
    out = tmp_path / "out"
    tasks = json.loads((out / "tasks.json").read_text())
    config = (out / "label_config.xml").read_text()
    ids = validate_label_studio_import(tasks, config)
    assert [label.get("value") for label in ET.fromstring(config).iter("Label")] == list(CLASSES)
    assert len(tasks) == summary.labeled == 6 and len(summary.skipped) == 1
    assert "broken.png" in (out / "skipped.txt").read_text()
    assert {t["data"]["split"] for t in tasks} == set(SPLITS), "the splits are a task field, in one file"

    objects = 0
    for task in tasks:
        url = task["data"]["image"]
        relative = unquote(url[len(LOCAL_FILES):])
        assert url[len(LOCAL_FILES):].isascii() and " " not in url
        assert relative.startswith(f"out/{task['data']['split']}/images/")
        stored = tmp_path / relative  # the document root is the dataset folder's parent
        assert stored.is_file()
        rgb = cv2.imread(str(stored))[:, :, ::-1]
        h, w = rgb.shape[:2]
        result = task["predictions"][0]["result"]
        assert all((item["original_width"], item["original_height"]) == (w, h) for item in result)
        for cls, mask in enumerate(masks_of(rgb)):
            coco = coco_annotation(0, 0, cls + 1, mask, [0, 0, w, h], "polygon")
            regions = [item for item in result if item["value"]["polygonlabels"] == [CLASSES[cls]]]
            if coco is None:
                assert regions == []
                continue
            objects += 1
            assert len(regions) == len(coco["segmentation"]) >= 1, "one region per part, no seams"
            for item, polygon in zip(regions, coco["segmentation"]):
                pixels = np.array(item["value"]["points"]) * (w, h) / 100
                np.testing.assert_allclose(pixels.ravel(), polygon, atol=1e-9)
                assert item["score"] == [0.45, 0.4899, 0.49][cls], "grounding x SAM IoU, 4 decimals"
    assert objects == sum(summary.objects_per_class.values()) > 0
    assert len(ids) > objects, "the masks have several parts"
    assert tasks[-1]["predictions"][0] == {"model_version": "grounded-sam2", "result": []}  # "my dog #1 ü"


def test_a_resumed_run_writes_the_uninterrupted_tasks_byte_for_byte(tmp_path, monkeypatch):
    sources = make_inputs(tmp_path / "in")
    label_images(sources, writer_for(tmp_path / "whole" / "ds"), fragmented, batch_size=2, progress=False)
    commit = DatasetWriter.commit

    def interrupted(self, result):  # killed with 3 images written
        if result.source.name in [s.name for s in sources[3:]]:
            raise KeyboardInterrupt
        return commit(self, result)

    monkeypatch.setattr(DatasetWriter, "commit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        label_images(sources, writer_for(tmp_path / "cut" / "ds"), fragmented, batch_size=2, progress=False,
                     export_threads=1)
    monkeypatch.setattr(DatasetWriter, "commit", commit)
    assert not (tmp_path / "cut" / "ds" / "tasks.json").exists()
    resumed = label_images(sources, writer_for(tmp_path / "cut" / "ds"), fragmented, batch_size=2,
                           progress=False)
    assert resumed.already_done == 3 and resumed.labeled == 3
    whole = normalized_dataset(tmp_path / "whole" / "ds")
    assert normalized_dataset(tmp_path / "cut" / "ds") == whole
    assert {"tasks.json", "label_config.xml", "skipped.txt"} <= set(whole)

    monkeypatch.setattr(labeling, "LOAD_AHEAD_GROUPS", 0)  # all done: finalize() alone, same bytes again
    again = label_images(sources, writer_for(tmp_path / "cut" / "ds"), fragmented, batch_size=2, progress=False)
    assert again.already_done == 6 and again.labeled == 0
    assert normalized_dataset(tmp_path / "cut" / "ds") == whole


def test_class_names_stay_valid_xml_and_json(tmp_path):
    writer = DatasetWriter(tmp_path / "out", DatasetConfig(format="label-studio"), CLASSES, {"pipeline": "test"})
    writer.finalize()
    config = (tmp_path / "out" / "label_config.xml").read_text()
    assert [label.get("value") for label in ET.fromstring(config).iter("Label")] == list(CLASSES)
    assert "&quot;cheese&quot; &lt;&amp;&gt;" in config and "&#9;" in config and "&#10;" in config
    assert json.loads((tmp_path / "out" / "tasks.json").read_text()) == []
    assert json.loads(json.dumps(CLASSES[1])) == CLASSES[1]


def test_the_dataset_settings_of_earlier_manifests_are_unchanged():
    """A new format adds no DatasetConfig field: datasets written before resume as before."""
    assert asdict(DatasetConfig()) == {"format": "yolo", "split": (0.8, 0.2, 0.0), "seed": 0,
                                       "coco_mask_format": "rle"}


@pytest.mark.parametrize("command", [["label", "photos"], ["label-video", "clip.mp4"]])
def test_the_labeling_commands_offer_the_format(command):
    from grounded_sam2 import cli

    args = cli.build_parser().parse_args([*command, "-o", "out", "--ontology", "example", "--format", "label-studio"])
    assert args.format == "label-studio"
