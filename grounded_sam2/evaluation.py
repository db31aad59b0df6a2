"""How good a labeled dataset is, measured against a few hand-labeled images.

Both sides are datasets that :func:`~grounded_sam2.datasets.reading.read_dataset` reads (YOLO
segmentation or boxes, COCO with RLE or polygons). Images are matched by key (file name without
extension, the writer's names), classes by name.

- The figures are pycocotools' ``COCOeval``, for boxes and, when both sides have a mask for every
  object, for masks: AP (IoU 0.50:0.95), AP50, AP75 and AR (100 detections per image), overall and
  per class.
- Per class, precision, recall and F1 as a function of the confidence threshold (a detection is
  kept when its confidence >= the threshold), from the same COCOeval matching at IoU 0.5, and the
  threshold that maximises F1; ``"all"`` pools the classes (the one ``--min-confidence`` for all).
  COCOeval matches detections greedily by confidence, so the matches above a threshold are the
  ones a run keeping only those detections gets: the curve is exact, not an estimate.
- A truth image without a prediction counts as all misses; a predicted image absent from the
  truth is ignored (and listed); a predicted class absent from the truth is ignored (and listed); a
  truth class never predicted has AP 0. Predictions without confidences (a YOLO dataset of another
  tool) count as confidence 1, which the report says.

Nothing is held per image but its compressed RLEs, so thousands of images take seconds.
"""

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .datasets.reading import Instances, LabeledDataset, read_dataset
from .errors import GroundedSAM2Error

CURVE_IOU = 0.5  # the IoU at which precision, recall and F1 are counted
METRICS = ("AP", "AP50", "AP75", "AR")
EVALUATION_FILE = "evaluation.json"
CURVES_FILE = "precision_recall.png"


class EvaluationError(GroundedSAM2Error, ValueError):
    """Datasets that cannot be compared."""


@dataclass(frozen=True)
class Curve:
    """Precision, recall and F1 of the detections kept at each threshold (descending), and the
    threshold with the best F1 (the highest such threshold on ties). Counted at :data:`CURVE_IOU`."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    truth_objects: int

    @property
    def f1(self) -> np.ndarray:
        total = self.precision + self.recall
        return np.divide(2 * self.precision * self.recall, total, out=np.zeros_like(total), where=total > 0)

    @property
    def best(self) -> Dict[str, float]:
        """threshold, f1, precision and recall where F1 is highest; F1 0 when nothing matches."""
        if not len(self.thresholds):
            return {"threshold": None, "f1": 0.0, "precision": 0.0, "recall": 0.0}
        i = int(np.argmax(self.f1))
        return {"threshold": float(self.thresholds[i]), "f1": float(self.f1[i]),
                "precision": float(self.precision[i]), "recall": float(self.recall[i])}

    @property
    def best_cut(self) -> Optional[float]:
        """A minimum confidence that keeps exactly the detections of :attr:`best` and is robust to
        scores moving in their last digits: halfway to the next lower score (0 when the best keeps
        them all); None when nothing was detected."""
        if not len(self.thresholds):
            return None
        i = int(np.argmax(self.f1))
        return float(self.thresholds[i] + self.thresholds[i + 1]) / 2 if i + 1 < len(self.thresholds) else 0.0

    def to_dict(self) -> dict:
        return {"truth_objects": self.truth_objects, "best": self.best, "best_cut": self.best_cut,
                "thresholds": _rounded(self.thresholds), "precision": _rounded(self.precision),
                "recall": _rounded(self.recall), "f1": _rounded(self.f1)}


@dataclass
class Evaluation:
    """The result of :func:`evaluate`: per kind of IoU (``box``, ``mask``) the COCO metrics
    (overall and per class; None where a class has no truth object) and the curves."""

    classes: List[str]
    images: int
    metrics: Dict[str, Dict[str, Optional[float]]] = field(default_factory=dict)  # kind -> metric -> value
    per_class: Dict[str, Dict[str, Dict[str, Optional[float]]]] = field(default_factory=dict)  # kind -> class ->
    curves: Dict[str, Dict[str, Curve]] = field(default_factory=dict)  # kind -> class or "all" -> curve
    notes: List[str] = field(default_factory=list)
    images_without_prediction: List[str] = field(default_factory=list)
    predicted_images_not_in_truth: List[str] = field(default_factory=list)
    classes_not_predicted: List[str] = field(default_factory=list)
    predicted_classes_not_in_truth: List[str] = field(default_factory=list)
    has_scores: bool = True

    def to_dict(self) -> dict:
        return {
            "classes": self.classes, "images": self.images, "has_scores": self.has_scores, "notes": self.notes,
            "metrics": self.metrics, "per_class": self.per_class,
            "curves": {kind: {name: c.to_dict() for name, c in curves.items()} for kind, curves in self.curves.items()},
            "images_without_prediction": self.images_without_prediction,
            "predicted_images_not_in_truth": self.predicted_images_not_in_truth,
            "classes_not_predicted": self.classes_not_predicted,
            "predicted_classes_not_in_truth": self.predicted_classes_not_in_truth,
        }

    def __str__(self) -> str:
        return self.table()

    def table(self) -> str:
        """The report for a terminal: overall and per-class metrics, best F1 and its threshold."""
        lines = [f"{self.images} truth images, {len(self.classes)} classes"]
        for kind in self.metrics:
            lines.append("")
            lines.append(f"{kind:<20}" + "".join(f"{m:>8}" for m in METRICS) + f"{'F1':>8}{'at conf':>9}")
            rows = [("all", self.metrics[kind])] + list(self.per_class[kind].items())
            for name, values in rows:
                best = self.curves[kind][name].best
                threshold = "-" if best["threshold"] is None else f"{best['threshold']:.3f}"
                lines.append(f"{clip_text(name, 20):<20}" + "".join(_cell(values[m]) for m in METRICS)
                             + f"{best['f1']:>8.3f}{threshold:>9}")
        lines.append("")
        reported = [
            ("truth images without a prediction (all misses)", self.images_without_prediction),
            ("predicted images not in the truth (ignored)", self.predicted_images_not_in_truth),
            ("truth classes never predicted", self.classes_not_predicted),
            ("predicted classes not in the truth (ignored)", self.predicted_classes_not_in_truth),
        ]
        lines += [f"{what}: {len(names)}: {_listed(names)}" for what, names in reported if names]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def write(self, folder: Union[str, Path]) -> Path:
        """``evaluation.json`` and the per-class precision-recall plot into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / EVALUATION_FILE).write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        self._plot(folder / CURVES_FILE)
        return folder

    def _plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        kinds = list(self.curves)
        figure, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 5), squeeze=False)
        for ax, kind in zip(axes[0], kinds):
            for name, curve in self.curves[kind].items():
                if name != "all" and len(curve.thresholds):
                    ax.plot(curve.recall, curve.precision, label=f"{name} (F1 {curve.best['f1']:.2f})")
            ax.set(title=f"{kind} precision-recall at IoU {CURVE_IOU}", xlabel="recall", ylabel="precision",
                   xlim=(0, 1.02), ylim=(0, 1.02))
            if ax.lines:
                ax.legend(loc="lower left", fontsize="small")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)


def evaluate(predicted: Union[str, Path, LabeledDataset], truth: Union[str, Path, LabeledDataset]) -> Evaluation:
    """Compare a predicted dataset with a truth dataset; see the module docstring."""
    predicted = predicted if isinstance(predicted, LabeledDataset) else read_dataset(Path(predicted))
    truth = truth if isinstance(truth, LabeledDataset) else read_dataset(Path(truth))
    if not truth.images:
        raise EvaluationError(f"the truth dataset {truth.path} holds no images")
    predicted_by_key = {image.key: image for image in predicted.images}
    common = [image for image in truth.images if image.key in predicted_by_key]
    if not common:
        raise EvaluationError(
            f"no image of {predicted.path} is in {truth.path}: images are matched by file name without "
            f"extension (e.g. {truth.images[0].key!r} in the truth, "
            f"{predicted.images[0].key if predicted.images else None!r} in the predictions)")
    to_truth_class = np.array([truth.classes.index(c) if c in truth.classes else -1 for c in predicted.classes] or [-1])
    pairs, has_scores = [], True
    for image in truth.images:
        truth_instances = truth.instances(image)
        prediction = None
        if image.key in predicted_by_key:
            prediction = predicted.instances(predicted_by_key[image.key])
            if (prediction.height, prediction.width) != (truth_instances.height, truth_instances.width):
                raise EvaluationError(
                    f"{image.key} is {prediction.width}x{prediction.height} in the predictions and "
                    f"{truth_instances.width}x{truth_instances.height} in the truth: label the same images")
            has_scores &= prediction.scores is not None or not len(prediction)
            keep = to_truth_class[prediction.class_ids] >= 0
            prediction = prediction.select(keep, to_truth_class[prediction.class_ids[keep]])
        pairs.append((truth_instances, prediction))
    if not any(len(t) for t, _ in pairs):
        raise EvaluationError(f"the truth dataset {truth.path} holds no labeled object")
    result = evaluate_instances(pairs, truth.classes, has_scores)
    truth_keys = {image.key for image in truth.images}
    result.images_without_prediction = [image.key for image in truth.images if image.key not in predicted_by_key]
    result.predicted_images_not_in_truth = [image.key for image in predicted.images if image.key not in truth_keys]
    result.predicted_classes_not_in_truth = [c for c in predicted.classes if c not in truth.classes]
    return result


def evaluate_instances(pairs: Sequence[Tuple[Instances, Optional[Instances]]], classes: Sequence[str],
                       has_scores: bool = True) -> Evaluation:
    """The figures of (truth, prediction or None) per image, both with class indices of
    ``classes``; ``has_scores``: whether the predictions' confidences are real."""
    result = Evaluation(list(classes), len(pairs), has_scores=has_scores)
    predicted_classes = {int(c) for _, p in pairs if p is not None for c in p.class_ids}
    result.classes_not_predicted = [c for i, c in enumerate(classes) if i not in predicted_classes]
    if not has_scores:
        result.notes.append("the predictions hold no confidences: every detection counts as confidence 1")
    kinds = ["box"]
    mask_sides = [side for side, has in (("truth", _all_masks(t for t, _ in pairs)),
                                         ("predictions", _all_masks(p for _, p in pairs if p is not None))) if not has]
    if mask_sides:
        result.notes.append(f"no mask metrics: the {' and the '.join(mask_sides)} hold boxes without masks")
    else:
        kinds.append("mask")
    for kind in kinds:
        truth_dict, detections = coco_inputs(pairs, classes, kind)
        _evaluate_kind(result, kind, truth_dict, detections)
    return result


def coco_inputs(pairs: Sequence, classes: Sequence[str], kind: str):
    """(COCO ground-truth dict, detection list) for pycocotools, ``kind`` "box" or "mask"; image ids
    are positions from 1, category ids class indices from 1."""
    from pycocotools import mask as mask_utils

    images, annotations, detections = [], [], []
    for image_id, (truth, prediction) in enumerate(pairs, start=1):
        images.append({"id": image_id, "width": truth.width, "height": truth.height})
        for i in range(len(truth)):
            annotation = {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(truth.class_ids[i]) + 1,
                          "iscrowd": int(truth.iscrowd[i]), "bbox": _xywh(truth.xyxy[i])}
            if kind == "mask":
                annotation["segmentation"] = truth.rles[i]
                annotation["area"] = float(mask_utils.area(truth.rles[i]))
            else:
                annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
            annotations.append(annotation)
        if prediction is None:
            continue
        scores = prediction.scores if prediction.scores is not None else np.ones(len(prediction), np.float32)
        for i in range(len(prediction)):
            detection = {"image_id": image_id, "category_id": int(prediction.class_ids[i]) + 1,
                         "score": float(scores[i])}
            if kind == "mask":
                detection["segmentation"] = prediction.rles[i]
            else:
                detection["bbox"] = _xywh(prediction.xyxy[i])
            detections.append(detection)
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, detections


def _evaluate_kind(result: Evaluation, kind: str, truth_dict: dict, detections: List[dict]) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_truth = COCO()
        coco_truth.dataset = truth_dict
        coco_truth.createIndex()
        coco_detections = coco_truth.loadRes(detections) if detections else COCO()
        if not detections:
            coco_detections.dataset = {"images": truth_dict["images"], "annotations": [],
                                       "categories": truth_dict["categories"]}
            coco_detections.createIndex()
        evaluator = COCOeval(coco_truth, coco_detections, "segm" if kind == "mask" else "bbox")
        # only the "all" area range is reported: the small, medium and large ones would take 3/4 of the time
        evaluator.params.areaRng, evaluator.params.areaRngLbl = [evaluator.params.areaRng[0]], ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
    precision, recall = evaluator.eval["precision"], evaluator.eval["recall"]  # TxRxKxAxM, TxKxAxM
    iou_50, iou_75 = (int(np.argmin(np.abs(evaluator.params.iouThrs - t))) for t in (0.5, 0.75))

    def figures(p: np.ndarray, r: np.ndarray) -> Dict[str, Optional[float]]:
        """COCOeval.summarize's AP, AP50, AP75 and AR (100 detections) of precision TxRx... and recall Tx..."""
        return {"AP": _mean_valid(p), "AP50": _mean_valid(p[iou_50]), "AP75": _mean_valid(p[iou_75]),
                "AR": _mean_valid(r)}

    result.metrics[kind] = figures(precision[:, :, :, 0, -1], recall[:, :, 0, -1])
    result.per_class[kind] = {name: figures(precision[:, :, k, 0, -1], recall[:, k, 0, -1])
                              for k, name in enumerate(result.classes)}
    result.curves[kind] = _curves(evaluator, result.classes)


def _curves(evaluator, classes: Sequence[str]) -> Dict[str, Curve]:
    """Per class and pooled ("all"), from COCOeval's matches at :data:`CURVE_IOU`, area "all"."""
    t = int(np.argmin(np.abs(evaluator.params.iouThrs - CURVE_IOU)))
    all_area = evaluator.params.areaRng[0]
    per_class: Dict[int, List] = {k: [[], [], 0] for k in range(len(classes))}  # scores, matched, truth count
    category_index = {c: i for i, c in enumerate(evaluator.params.catIds)}
    for e in evaluator.evalImgs:
        if e is None or e["aRng"] != all_area:
            continue
        entry = per_class[category_index[e["category_id"]]]
        kept = ~e["dtIgnore"][t].astype(bool)
        entry[0].append(np.asarray(e["dtScores"], np.float64)[kept])
        entry[1].append(e["dtMatches"][t][kept] > 0)
        entry[2] += int((~e["gtIgnore"].astype(bool)).sum())
    curves = {name: _curve(*per_class[k]) for k, name in enumerate(classes)}
    curves["all"] = _curve(sum((per_class[k][0] for k in per_class), []), sum((per_class[k][1] for k in per_class), []),
                           sum(per_class[k][2] for k in per_class))
    return curves


def _curve(scores: List[np.ndarray], matched: List[np.ndarray], truth_objects: int) -> Curve:
    scores = np.concatenate(scores) if scores else np.zeros(0)
    matched = np.concatenate(matched) if matched else np.zeros(0, bool)
    order = np.argsort(-scores, kind="mergesort")
    scores, matched = scores[order], matched[order]
    true_positives = np.cumsum(matched)
    kept = np.arange(1, len(scores) + 1)
    last_of_each_score = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, bool)
    precision = (true_positives / kept)[last_of_each_score]
    recall = (true_positives / max(truth_objects, 1))[last_of_each_score]
    return Curve(scores[last_of_each_score], precision, recall, truth_objects)


def _all_masks(instances) -> bool:
    return all(r is not None for i in instances for r in i.rles)


def _xywh(xyxy: np.ndarray) -> List[float]:
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    return [x0, y0, x1 - x0, y1 - y0]


def _mean_valid(values: np.ndarray) -> Optional[float]:
    values = values[values > -1]
    return float(values.mean()) if values.size else None


def _rounded(values: np.ndarray) -> List[float]:
    return [round(float(v), 4) for v in values]


def _cell(value: Optional[float]) -> str:
    return f"{'-':>8}" if value is None else f"{value:>8.3f}"


def _listed(names: Sequence[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (f", ... ({len(names) - shown} more)" if len(names) > shown else "")


def clip_text(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters for a table cell, ``~`` marking a cut."""
    return text if len(text) <= width else text[: width - 1] + "~"

