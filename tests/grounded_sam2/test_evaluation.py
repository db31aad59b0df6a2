"""Evaluating a labeled dataset against hand labels: against itself, against an altered copy (the
figures pycocotools gives on the same data), YOLO against COCO, the F1 curve against re-running the
evaluation at each threshold, the command, and bad inputs."""

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from grounded_sam2 import cli
from grounded_sam2.datasets.reading import DatasetReadError, read_dataset
from grounded_sam2.detections import make_detections
from grounded_sam2.evaluation import EvaluationError, evaluate

from dataset_files import write_dataset

CLASSES = ["cat", "dog"]


def scene(index: int, h: int = 48, w: int = 64):
    """Three objects per image, without holes: (class index, mask, score)."""
    objects = []
    for k in range(3):
        mask = np.zeros((h, w), np.uint8)
        x, y = 4 + 18 * k, 4 + 3 * ((index + k) % 4)
        if k == 1:
            cv2.circle(mask, (x + 8, y + 12), 7 + index % 3, 1, -1)
        else:
            mask[y : y + 14 + index % 5, x : x + 12 + k] = 1
        objects.append(((index + k) % 2, mask.astype(bool), round(0.95 - 0.1 * k - 0.03 * index, 4)))
    return objects


def inputs(folder: Path, n: int = 5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"img{i}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    return folder


def detect(source, index, h, w):
    objects = scene(index, h, w)
    ids = [c for c, _, _ in objects]
    return make_detections(np.stack([m for _, m, _ in objects]), ids, [CLASSES[c] for c in ids],
                           [CLASSES[c] for c in ids], [s for _, _, s in objects], [1.0] * 3)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    images = inputs(root / "in")
    written = {f: write_dataset(root / f, images, detect, CLASSES, f) for f in ("yolo", "coco", "yolo-det")}
    written["coco, other split"] = write_dataset(root / "coco_seed", images, detect, CLASSES, "coco", seed=1)
    return written


@pytest.mark.parametrize("predicted, truth, kinds", [
    ("coco", "coco", ("box", "mask")),
    ("yolo", "yolo", ("box", "mask")),
    ("yolo", "coco", ("box", "mask")),  # the same labels in both formats
    ("coco", "yolo", ("box", "mask")),
    ("yolo", "coco, other split", ("box", "mask")),  # images matched across split folders
    ("yolo-det", "coco", ("box",)),  # boxes only: no mask metrics
])
def test_the_same_labels_score_one(datasets, predicted, truth, kinds):
    if truth == "coco, other split":
        splits = [{i.key: i.split for i in read_dataset(datasets[name]).images} for name in (predicted, truth)]
        assert splits[0] != splits[1] and splits[0].keys() == splits[1].keys()
    result = evaluate(datasets[predicted], datasets[truth])
    assert list(result.metrics) == list(kinds)
    for kind in kinds:
        assert result.metrics[kind]["AP"] == pytest.approx(1.0) and result.metrics[kind]["AR"] == pytest.approx(1.0)
        assert all(v["AP"] == pytest.approx(1.0) for v in result.per_class[kind].values())
        assert result.curves[kind]["all"].best["f1"] == pytest.approx(1.0)
    assert ("no mask metrics" in " ".join(result.notes)) == (len(kinds) == 1)
    assert not result.images_without_prediction and not result.classes_not_predicted


def altered_copy(truth_json: Path, out: Path) -> Path:
    """The truth with one object removed, one class renamed, one mask shifted by 3 pixels, and
    one image gone from the predictions, as another tool's COCO file (scores given)."""
    data = json.loads(truth_json.read_text())
    annotations = data["annotations"]
    del annotations[1]
    renamed = {"id": 99, "name": "kitten"}
    data["categories"].append(renamed)
    annotations[2]["category_id"] = 99
    shifted = annotations[4]
    mask = mask_utils.decode(shifted["segmentation"])
    mask = np.roll(mask, 3, axis=1)
    shifted["segmentation"] = mask_utils.encode(np.asfortranarray(mask))
    shifted["segmentation"]["counts"] = shifted["segmentation"]["counts"].decode()
    shifted["bbox"] = [shifted["bbox"][0] + 3, *shifted["bbox"][1:]]
    gone = data["images"][-1]["id"]
    data["images"] = data["images"][:-1]
    data["annotations"] = [a for a in annotations if a["image_id"] != gone]
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(data))
    return out / "predictions.json"


def direct(truth_json: Path, predicted_json: Path, iou_type: str) -> COCOeval:
    """pycocotools on the same data: the truth file, the predictions of truth classes by name."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(truth_json))
        predicted = json.loads(predicted_json.read_text())
        names = {c["id"]: c["name"] for c in predicted["categories"]}
        truth_ids = {c["name"]: c["id"] for c in truth.dataset["categories"]}
        files = {r["id"]: r["file_name"] for r in predicted["images"]}
        image_ids = {r["file_name"]: r["id"] for r in truth.dataset["images"]}
        results, key = [], "bbox" if iou_type == "bbox" else "segmentation"
        for a in predicted["annotations"]:
            if names[a["category_id"]] in truth_ids:
                r = {"image_id": image_ids[files[a["image_id"]]], "category_id": truth_ids[names[a["category_id"]]],
                     "score": a["score"]}
                r[key] = a[key]
                results.append(r)
        evaluator = COCOeval(truth, truth.loadRes(results), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def test_an_altered_copy_gives_pycocotools_figures(datasets, tmp_path):
    truth_json = datasets["coco"] / "train" / "_annotations.coco.json"
    predicted_json = altered_copy(truth_json, tmp_path / "predicted")
    result = evaluate(predicted_json, truth_json)
    assert result.predicted_classes_not_in_truth == ["kitten"] and len(result.images_without_prediction) == 1
    assert result.images == len(json.loads(truth_json.read_text())["images"])
    for kind, iou_type in (("box", "bbox"), ("mask", "segm")):
        evaluator = direct(truth_json, predicted_json, iou_type)
        figures = [result.metrics[kind][m] for m in ("AP", "AP50", "AP75", "AR")]
        np.testing.assert_allclose(figures, evaluator.stats[[0, 1, 2, 8]], atol=1e-12)
        assert figures[0] < 1.0
        for k, name in enumerate(CLASSES):
            precision = evaluator.eval["precision"][:, :, k, 0, -1]
            assert result.per_class[kind][name]["AP"] == pytest.approx(precision[precision > -1].mean(), abs=1e-12)


def test_the_f1_curve_is_the_evaluation_rerun_at_each_threshold(datasets, tmp_path):
    """Keeping only the detections above each threshold and evaluating again gives the curve's
    precision and recall at that threshold."""
    truth_json = datasets["coco"] / "train" / "_annotations.coco.json"
    predicted_json = altered_copy(truth_json, tmp_path / "predicted")
    curve = evaluate(predicted_json, truth_json).curves["mask"]["cat"]
    assert len(curve.thresholds) >= 3 and np.all(np.diff(curve.thresholds) < 0)
    data = json.loads(predicted_json.read_text())
    for threshold, precision, recall in zip(curve.thresholds, curve.precision, curve.recall):
        kept = dict(data, annotations=[a for a in data["annotations"] if a["score"] >= threshold])
        (tmp_path / "kept.json").write_text(json.dumps(kept))
        evaluator = direct(truth_json, tmp_path / "kept.json", "segm")
        matched = detected = truth_objects = 0
        for e in evaluator.evalImgs:
            if e is not None and e["category_id"] == 1 and e["aRng"] == evaluator.params.areaRng[0]:
                detected += len(e["dtIds"])
                matched += int((e["dtMatches"][0] > 0).sum())
                truth_objects += int((e["gtIgnore"] == 0).sum())
        assert (precision, recall) == pytest.approx((matched / detected, matched / truth_objects))
    best = curve.best
    assert best["f1"] == pytest.approx(max(curve.f1)) and best["threshold"] in curve.thresholds


def test_the_command_prints_a_table_and_writes_json_and_a_plot(datasets, tmp_path, capsys):
    code = cli.main(["evaluate", str(datasets["yolo"]), str(datasets["coco"]), "-o", str(tmp_path / "report")])
    out = capsys.readouterr().out
    assert code == cli.EXIT_OK
    assert "AP50" in out and "cat" in out and "dog" in out and "1.000" in out
    report = json.loads((tmp_path / "report" / "evaluation.json").read_text())
    assert report["metrics"]["mask"]["AP"] == pytest.approx(1.0) and report["classes"] == CLASSES
    assert report["curves"]["box"]["all"]["best"]["f1"] == pytest.approx(1.0)
    png = cv2.imread(str(tmp_path / "report" / "precision_recall.png"))
    assert png is not None and png.std() > 0


def test_predictions_without_confidences_are_said_to_have_none(datasets, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(datasets["yolo"], copy)
    for scores in copy.glob("*/scores"):
        shutil.rmtree(scores)
    result = evaluate(copy, datasets["coco"])
    assert not result.has_scores and "no confidences" in result.notes[0]
    assert result.metrics["mask"]["AP"] == pytest.approx(1.0)


@pytest.mark.parametrize("setup, error, message", [
    ("not a dataset", DatasetReadError, "neither a YOLO dataset"),
    ("empty truth", EvaluationError, "holds no images"),
    ("no object in the truth", EvaluationError, "holds no labeled object"),
    ("no common images", EvaluationError, "no image of .* is in"),
    ("other image sizes", EvaluationError, "64x48 in the predictions and 32x24 in the truth"),
])
def test_bad_inputs_are_clear_errors(datasets, tmp_path, setup, error, message):
    truth = tmp_path / "truth.json"
    record = {"id": 1, "file_name": "img0.png", "width": 64, "height": 48}
    annotation = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}
    data = {"images": [record], "annotations": [annotation], "categories": [{"id": 1, "name": "cat"}]}
    if setup == "not a dataset":
        (tmp_path / "folder").mkdir()
        truth = tmp_path / "folder"
    elif setup == "empty truth":
        data["images"] = data["annotations"] = []
    elif setup == "no object in the truth":
        data["annotations"] = []
    elif setup == "no common images":
        record["file_name"] = "other.png"
    elif setup == "other image sizes":
        record.update(width=32, height=24)
    if truth.suffix == ".json":
        truth.write_text(json.dumps(data))
    with pytest.raises(error, match=message):
        evaluate(datasets["coco"], truth)
    assert cli.main(["evaluate", str(datasets["coco"]), str(truth), "-o", str(tmp_path / "r")]) == cli.EXIT_ERROR
