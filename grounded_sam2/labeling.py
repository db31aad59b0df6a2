"""Labeling a whole folder: images in batches through a predict function, each image's labels
streamed to the dataset writer, bad inputs skipped and reported, finished images skipped on
resume. Memory does not grow with the number of images."""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import supervision as sv

from .datasets.sources import SourceImage
from .errors import SettingsError
from .datasets.writer import DatasetSpec, DatasetWriter
from .detections import empty_detections, make_detections

# predict(images as RGB uint8 arrays, their sources) -> one sv.Detections per image
PredictFn = Callable[[List[np.ndarray], List[SourceImage]], List[sv.Detections]]


@dataclass
class LabelSummary:
    """What a labeling run did."""

    output: Path
    images: int = 0  # inputs found
    labeled: int = 0  # labeled by this run
    already_done: int = 0  # finished by an earlier run
    skipped: List[Tuple[Path, str]] = field(default_factory=list)
    objects_per_class: Dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [
            f"dataset: {self.output}",
            f"images: {self.images} found, {self.labeled} labeled now, {self.already_done} already done, "
            f"{len(self.skipped)} skipped",
        ]
        lines += [f"  skipped {path}: {reason}" for path, reason in self.skipped[:20]]
        if len(self.skipped) > 20:
            lines.append(f"  ... {len(self.skipped) - 20} more in {self.output / 'skipped.txt'}")
        objects = ", ".join(f"{name} {count}" for name, count in self.objects_per_class.items()) or "none"
        lines.append(f"objects per class: {objects}")
        return "\n".join(lines)


def check_output_folder(source: Union[str, Path, Sequence], output: Path) -> None:
    """Refuse an output folder equal to or inside the input folder (it is never written to)."""
    if isinstance(source, (str, Path)):
        src, out = Path(source).resolve(), Path(output).resolve()
        if out == src or src in out.parents:
            raise SettingsError(f"the output folder {output} is inside the input folder {source}; choose another")


def load_image(path: Path):
    """(RGB uint8 array, None) or (None, reason) for an input that cannot be used."""
    from .model import to_rgb_uint8

    try:
        if path.stat().st_size == 0:
            return None, "empty file"
        return to_rgb_uint8(path), None
    except Exception as e:  # unreadable, truncated, not an image, too large: skip, report
        return None, str(e).splitlines()[0] if str(e) else type(e).__name__


def run_labeling(
    images: List[SourceImage],
    output: Union[str, Path],
    spec: DatasetSpec,
    predict: PredictFn,
    batch_size: int = 4,
    progress: bool = True,
    assigned_splits: Optional[Dict[str, str]] = None,
) -> LabelSummary:
    """Label ``images`` into the dataset ``output`` (see :class:`DatasetWriter`)."""
    from tqdm.auto import tqdm

    output = Path(output)
    writer = DatasetWriter(output, spec, assigned_splits)
    summary = LabelSummary(output, images=len(images))
    todo = [image for image in images if not writer.is_done(image)]
    summary.already_done = len(images) - len(todo)
    with tqdm(total=len(todo), unit="img", desc="labeling", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            loaded = []
            for image in todo[start : start + batch_size]:
                array, reason = load_image(image.path)
                if reason:
                    summary.skipped.append((image.path, reason))
                    bar.update(1)
                else:
                    loaded.append((image, array))
            for (image, array), detections in _predict_all(predict, loaded, summary):
                writer.write(image, array, detections.class_id, detections.mask, detections.xyxy, detections.confidence)
                summary.labeled += 1
                bar.update(1)
    counts: Counter = writer.finalize(summary.skipped)
    summary.objects_per_class = {name: counts.get(name, 0) for name in spec.classes}
    return summary


def _predict_all(predict: PredictFn, loaded, summary: LabelSummary):
    """Predictions for a batch; when the batch fails, image by image so one bad input is skipped
    and reported instead of stopping the run."""
    if not loaded:
        return []
    try:
        return list(zip(loaded, predict([a for _, a in loaded], [i for i, _ in loaded])))
    except Exception:
        if len(loaded) == 1:
            image, _ = loaded[0]
            import traceback

            summary.skipped.append((image.path, f"labeling failed: {traceback.format_exc(limit=1).splitlines()[-1]}"))
            return []
    results = []
    for item in loaded:
        results += _predict_all(predict, [item], summary)
    return results


def segment_box_dataset(
    source: Union[str, Path],
    output: Union[str, Path],
    sam2,
    device=None,
    format: str = "yolo",
    coco_mask_format: str = "rle",
    tighten_boxes: bool = False,
    batch_size: int = 4,
    progress: bool = True,
    bf16: bool = True,
) -> LabelSummary:
    """Turn a YOLO or COCO detection dataset into a segmentation dataset: SAM 2 masks for its
    boxes, its classes and splits kept (what ultralytics' ``yolo_bbox2segment`` does), with the
    same streaming, resume and formats as labeling."""
    from segmenter.device import resolve_device

    from .datasets.box_sources import read_box_dataset
    from .segmentation import BoxSegmenter, given_box_requests

    check_output_folder(source, Path(output))
    dataset = read_box_dataset(Path(source))
    segmenter = BoxSegmenter(sam2, dataset.classes, resolve_device(device), bf16, tighten_boxes)
    settings = {"source": str(Path(source).resolve()), "sam2": str(sam2), "tighten_boxes": tighten_boxes}
    spec = DatasetSpec(format, dataset.classes, None, 0, coco_mask_format, settings)

    def predict(arrays: List[np.ndarray], sources: List[SourceImage]) -> List[sv.Detections]:
        requests = [
            given_box_requests(*dataset.boxes_for(image, *array.shape[:2]), dataset.classes)
            for array, image in zip(arrays, sources)
        ]
        return segmenter.segment(arrays, requests)

    return run_labeling(dataset.images, output, spec, predict, batch_size, progress, assigned_splits=dataset.splits)


def segment_everything(
    source: Union[str, Path, Sequence[Union[str, Path]]],
    output: Union[str, Path],
    sam2,
    device=None,
    format: str = "coco",
    split: Tuple[float, float, float] = (0.8, 0.2, 0.0),
    seed: int = 0,
    coco_mask_format: str = "rle",
    generator_options: Optional[Dict[str, object]] = None,
    progress: bool = True,
    bf16: bool = True,
) -> LabelSummary:
    """Class-agnostic masks of everything in every image (SAM 2's automatic mask generator),
    written as a dataset with one class, ``object``; streams, resumes and reports bad inputs
    like labeling. ``generator_options`` go to :class:`segmenter.SAM2AutomaticMaskGenerator`;
    a mask's confidence is its predicted IoU."""
    from segmenter import SAM2AutomaticMaskGenerator, SAM2Model, build_sam2
    from segmenter.device import resolve_device

    from .datasets.sources import find_images

    check_output_folder(source, Path(output))
    options = dict(generator_options or {})
    model = sam2 if isinstance(sam2, SAM2Model) else build_sam2(None, sam2, device=resolve_device(device))
    generator = SAM2AutomaticMaskGenerator(model, bf16=bf16, **options)
    settings = {"sam2": str(sam2) if not isinstance(sam2, SAM2Model) else "in-memory model", "generator": options}
    spec = DatasetSpec(format, ("object",), tuple(split), seed, coco_mask_format, settings)

    def predict(arrays: List[np.ndarray], _) -> List[sv.Detections]:
        return [_records_to_detections(generator.generate(array), array.shape[:2]) for array in arrays]

    return run_labeling(find_images(source), output, spec, predict, batch_size=1, progress=progress)


def _records_to_detections(records: List[dict], image_hw: Tuple[int, int]) -> sv.Detections:
    """Automatic mask generator records (binary masks) -> Detections of the class ``object``, in
    their order; boxes are the masks' (a record's own ``bbox`` is Meta's, one pixel short)."""
    if not records:
        return empty_detections(*image_hw)
    n = len(records)
    return make_detections(
        np.stack([r["segmentation"] for r in records]), [0] * n, ["object"] * n, [""] * n,
        grounding_confidence=np.ones(n), sam_iou=[r["predicted_iou"] for r in records],
    )
