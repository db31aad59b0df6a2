"""Labeling a whole folder into a dataset, in two parts:

- :func:`label_groups`, the engine: batch groups read and decoded by loader threads ahead of the
  models, predicted back to back (a failing batch falls back to one image at a time, one that
  does not fit in memory is split), and committed with a
  :class:`~grounded_sam2.datasets.writer.DatasetWriter` by export threads behind them; it takes
  its groups from a function, so the worker processes and Ray actors run it on the groups they
  are handed;
- :func:`label_images`, the single process's loop on it: skips images an earlier run finished,
  shows progress and stops when the same prediction error repeats.

Memory does not grow with the number of images. :func:`label_folder` (text-grounded),
:func:`segment_box_dataset` (boxes you have) and :func:`segment_everything` (automatic masks)
are the three datasets built on them.
"""

import dataclasses
import inspect
import sys
import traceback
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import supervision as sv
import torch

from segmenter import SAM2AutomaticMaskGenerator

from .config import DeviceConfig
from .datasets.reading import read_dataset
from .datasets.sources import IMAGE_EXTENSIONS, SourceImage, find_images, ignored_files
from .datasets.writer import MANIFEST, DatasetConfig, DatasetWriter, ImageResult, read_manifest
from .errors import InputNotFoundError, SettingsError, is_out_of_memory
from .images import is_stored_rotated, to_rgb_uint8
from .pipeline import Pipeline
from .segmentation import Segmenter, SegmenterConfig, automatic_detections, given_box_requests
from .speed import compile_models

# predict(images as RGB uint8 arrays, or what the engine's prepare made of them, their sources)
# -> one sv.Detections per image
PredictFn = Callable[[List[np.ndarray], List[SourceImage]], List[sv.Detections]]
Group = Tuple[int, List[SourceImage]]  # a batch group: its number and its images
CPU_BATCH_SIZE = 1  # the default on a CPU, where a batch makes each image slower (benchmarks/RESULTS.md)
DEFAULT_BATCH_SIZE = 4  # images per predict call on a GPU
LARGE_GPU_BATCH_SIZE = 8  # the default on a CUDA device with at least LARGE_GPU_MEMORY_GIB
LARGE_GPU_MEMORY_GIB = 40
LOADER_THREADS = 2  # threads reading and decoding images ahead of the models
EXPORT_THREADS = 2  # threads writing results behind them
LOAD_AHEAD_GROUPS = 2  # groups read ahead of the one being predicted
EXPORT_BEHIND_GROUPS = 2  # groups of results waiting to be written before the models wait
STOP_AFTER_SAME_FAILURES = 3  # predictions in a row failing the same way stop the run
InputFolder = Union[str, Path, Sequence[Union[str, Path]]]
MEMORY_SPLIT_NOTE = ("{} batch(es) did not fit in memory and were labeled in halves; their labels can differ in the "
                     "last digits from whole batches': lower --batch-size to keep batches whole")


@dataclass
class LabelSummary:
    """What a labeling run did."""

    output: Path
    images: int = 0  # inputs found
    ignored: int = 0  # files of the input folder that are not images (by their extension)
    labeled: int = 0  # labeled by this run
    already_done: int = 0  # finished by an earlier run
    skipped: List[Tuple[Path, str]] = field(default_factory=list)  # by this run
    objects_per_class: Dict[str, int] = field(default_factory=dict)
    hint: str = ""  # what to change when the dataset came out empty
    memory_splits: int = 0  # batches split in two because they did not fit in memory

    def __str__(self) -> str:
        lines = [
            f"dataset: {self.output}",
            f"images: {self.images} found{f' ({self.ignored} other files ignored)' if self.ignored else ''}, "
            f"{self.labeled} labeled now, {self.already_done} already done, {len(self.skipped)} skipped",
        ]
        lines += [f"  skipped {path}: {reason}" for path, reason in self.skipped[:20]]
        if len(self.skipped) > 20:
            lines.append(f"  ... {len(self.skipped) - 20} more in {self.output / 'skipped.txt'}")
        objects = ", ".join(f"{name} {count}" for name, count in self.objects_per_class.items()) or "none"
        lines.append(f"objects per class: {objects}")
        if self.memory_splits:
            lines.append(f"note: {MEMORY_SPLIT_NOTE.format(self.memory_splits)}")
        if self.hint:
            lines.append(f"note: {self.hint}")
        return "\n".join(lines)


def check_output_folder(source: Union[str, Path, Sequence], output: Path) -> None:
    """Refuse an output folder equal to or inside the input folder (it is never written to)."""
    if isinstance(source, (str, Path)):
        src, out = Path(source).resolve(), Path(output).resolve()
        if out == src or src in out.parents:
            raise SettingsError(f"the output folder {output} is inside the input folder {source}; choose another")


# --- the per-image work ---------------------------------------------------------------------------


def load_image(source: SourceImage) -> ImageResult:
    """The input's upright RGB pixels and whether its file stores them rotated, or the reason it
    cannot be used (unreadable, truncated, not an image, empty)."""
    try:
        if source.path.stat().st_size == 0:
            return ImageResult(source, skip_reason="empty file")
        return ImageResult(source, to_rgb_uint8(source.path), stored_rotated=is_stored_rotated(source.path))
    except Exception as e:  # any failure to decode is a property of the input: skip, report
        return ImageResult(source, skip_reason=str(e).splitlines()[0] if str(e) else type(e).__name__)


def load_and_prepare(source: SourceImage, prepare: Optional[Callable[[np.ndarray], Any]]) -> Tuple[ImageResult, Any]:
    """:func:`load_image`, and what the predict function takes of the image: ``prepare(rgb)``, or
    the RGB array itself without ``prepare`` (or when it fails: the predict function then makes
    what it needs itself, and reports the error as any prediction error)."""
    result = load_image(source)
    if result.rgb is None or prepare is None:
        return result, result.rgb
    try:
        return result, prepare(result.rgb)
    except Exception:
        return result, result.rgb


def _predict_into(loaded: List[Tuple[ImageResult, Any]], predict: PredictFn) -> int:
    """Predict the images of ``loaded`` (results and what the predict function takes of each)
    together into their results; returns how many times a batch was split because it did not
    fit in memory. Out of memory, a batch is split in two and each half predicted (split again
    while needed); any other error, its images are predicted one by one, so that only the image
    that fails is skipped."""
    if not loaded:
        return 0
    try:
        detections = predict([inputs for _, inputs in loaded], [result.source for result, _ in loaded])
        for (result, _), found in zip(loaded, detections):
            result.detections = found
        return 0
    except Exception as e:
        if len(loaded) == 1:
            result = loaded[0][0]
            result.skip_reason = f"labeling failed: {traceback.format_exception_only(type(e), e)[-1].strip()}"
            result.error = e
            return 0
        if is_out_of_memory(e):
            _free_device_memory()
            half = (len(loaded) + 1) // 2
            return 1 + _predict_into(loaded[:half], predict) + _predict_into(loaded[half:], predict)
    return sum(_predict_into([pair], predict) for pair in loaded)


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def failure_site(error: BaseException) -> Tuple[str, str, int]:
    """Where an error was raised: its type and the innermost frame (file, line)."""
    frames = traceback.extract_tb(error.__traceback__)
    last = frames[-1] if frames else None
    return type(error).__name__, last.filename if last else "", last.lineno if last else 0


# --- the loop -------------------------------------------------------------------------------------


def label_groups(
    next_group: Callable[[bool], Optional[Group]],
    writer: DatasetWriter,
    predict: PredictFn,
    predicted: Callable[[Group, List[ImageResult], int], None],
    written: Callable[[Group, List[ImageResult], List[bool]], None],
    loader_threads: int = LOADER_THREADS,
    export_threads: int = EXPORT_THREADS,
    prepare: Optional[Callable[[np.ndarray], Any]] = None,
) -> None:
    """Label the groups ``next_group`` gives into ``writer``'s dataset, the stages overlapped.

    ``next_group(wait)`` is the next group, or None: none yet (``wait`` False) or none will come
    (``wait`` True). Groups are taken without waiting while fewer than
    :data:`LOAD_AHEAD_GROUPS` are read ahead of the one being predicted, and ``loader_threads``
    threads read and decode their images and, with ``prepare``, make what ``predict`` takes of
    each (``prepare(rgb)``, e.g. :meth:`~grounded_sam2.pipeline.Pipeline.prepare`; without it,
    ``predict`` gets the RGB arrays); when none is read ahead, every result is written
    before waiting for the next group. Each group is predicted whole (:func:`_predict_into`), then
    ``predicted(group, results, splits)`` is called, on this thread (it may raise to stop), while
    ``export_threads`` threads commit the results of at most :data:`EXPORT_BEHIND_GROUPS` groups
    behind the one predicted; ``written(group, results, wrote)`` follows, in group order, once its
    results are on disk (``wrote[i]``: False when the image was done before, not written again).
    So at most ``LOAD_AHEAD_GROUPS + EXPORT_BEHIND_GROUPS + 1`` groups of images are in memory.
    Each image's files are its own and written whole, so the dataset is the one a serial loop
    writes, byte for byte. On an error (writing raises what the writer raised) or Ctrl-C, loading
    stops and what was predicted is still written."""
    loading: Deque[Tuple[Group, List[Future]]] = deque()
    exporting: Deque[Tuple[Group, List[ImageResult], List[Future]]] = deque()

    def commit(result: ImageResult) -> bool:
        if writer.is_done(result.source):
            return False
        writer.commit(result)
        return True

    def write_oldest() -> None:
        group, results, commits = exporting.popleft()
        written(group, results, [c.result() for c in commits])

    with ThreadPoolExecutor(loader_threads, "grounded-sam2-load") as loaders, \
            ThreadPoolExecutor(export_threads, "grounded-sam2-export") as exporters:
        try:
            while True:
                while len(loading) <= LOAD_AHEAD_GROUPS:
                    if not loading:  # nothing to predict: write everything before waiting
                        while exporting:
                            write_oldest()
                    group = next_group(not loading)
                    if group is None:
                        break
                    loading.append((group, [loaders.submit(load_and_prepare, source, prepare) for source in group[1]]))
                if not loading:
                    return
                group, loads = loading.popleft()
                loaded = [load.result() for load in loads]
                results = [result for result, _ in loaded]
                splits = _predict_into([pair for pair in loaded if pair[0].rgb is not None], predict)
                exporting.append((group, results, [exporters.submit(commit, result) for result in results]))
                predicted(group, results, splits)
                while exporting and (len(exporting) > EXPORT_BEHIND_GROUPS or all(c.done() for c in exporting[0][2])):
                    write_oldest()
        finally:  # on an error, what was predicted is still written whole
            loaders.shutdown(cancel_futures=True)
            wait([c for _, _, commits in exporting for c in commits])


def label_images(
    images: List[SourceImage],
    writer: DatasetWriter,
    predict: PredictFn,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    loader_threads: int = LOADER_THREADS,
    export_threads: int = EXPORT_THREADS,
    prepare: Optional[Callable[[np.ndarray], Any]] = None,
) -> LabelSummary:
    """Label ``images`` into ``writer``'s dataset with :func:`label_groups` (``prepare``: see
    there), committing each result as soon as it exists, then finalize the dataset.

    Batches are fixed groups: group k is the k-th ``batch_size`` images of ``images``, whatever
    an earlier run did. A group with an unfinished image is predicted whole again (its finished
    images are not written again), so every image is predicted in the company it has in an
    uninterrupted run, and a resumed dataset is the uninterrupted one bit for bit (batch
    composition changes the last digits of the models' outputs). At most
    ``batch_size x (LOAD_AHEAD_GROUPS + EXPORT_BEHIND_GROUPS + 1)`` images are in memory.

    Stops, raising the error, when :data:`STOP_AFTER_SAME_FAILURES` predictions in a row fail the
    same way (same error type, raised at the same place): that is a systematic problem, not a bad
    input."""
    from tqdm.auto import tqdm

    check_batch_size(batch_size)
    summary = LabelSummary(writer.output, images=len(images))
    finished = {image.name for image in images if writer.is_done(image)}  # by an earlier run
    summary.already_done = len(finished)
    groups = iter([group for group in enumerate(batch_groups(images, batch_size))
                   if not all(i.name in finished for i in group[1])])
    failures: List[BaseException] = []

    def predicted(group: Group, results: List[ImageResult], splits: int) -> None:
        nonlocal failures
        if splits and not summary.memory_splits:  # said once, and again in the summary
            bar.write(f"grounded-sam2: {MEMORY_SPLIT_NOTE.format('some')}", file=sys.stderr)
        summary.memory_splits += splits
        for result in results:
            if result.source.name in finished:
                continue
            if result.detections is not None:
                summary.labeled += 1
                failures = []
                continue
            summary.skipped.append((result.source.path, result.skip_reason))
            if result.error is not None:
                failures = _repeated(failures, result.error)

    with tqdm(total=len(images) - len(finished), unit="img", desc="labeling", disable=not progress) as bar:
        label_groups(lambda wait: next(groups, None), writer, predict, predicted,
                     lambda group, results, wrote: bar.update(sum(wrote)), loader_threads, export_threads, prepare)
    counts: Counter = writer.finalize()
    summary.objects_per_class = {name: counts.get(name, 0) for name in writer.classes}
    return summary


def batch_groups(images: Sequence[SourceImage], batch_size: int) -> List[List[SourceImage]]:
    """The fixed batches: group k is the k-th ``batch_size`` images, in order."""
    return [list(images[start : start + batch_size]) for start in range(0, len(images), batch_size)]


def _repeated(failures: List[BaseException], error: BaseException) -> List[BaseException]:
    """The run of failures in a row that fail like ``error``; raises ``error`` when it is long
    enough to stop."""
    failures = [f for f in failures if failure_site(f) == failure_site(error)] + [error]
    if len(failures) >= STOP_AFTER_SAME_FAILURES:
        note = (f"grounded-sam2: {len(failures)} images in a row failed with this error; stopping instead of "
                f"skipping every image")
        if hasattr(error, "add_note"):
            error.add_note(note)
        raise error
    return failures


# --- the three datasets ---------------------------------------------------------------------------


def label_folder(
    pipeline: Pipeline,
    source: InputFolder,
    output: Union[str, Path],
    dataset: DatasetConfig = DatasetConfig(),
    extension: Optional[str] = None,
    batch_size: Optional[int] = None,
    progress: bool = True,
) -> LabelSummary:
    """Label a folder (searched recursively; ``extension`` restricts the search to one, any
    case) or a list of images with ``pipeline`` into the dataset ``output``. Running it again
    resumes; a different configuration is refused. ``batch_size``: see :func:`resolve_batch_size`."""
    check_output_folder(source, Path(output))
    batch_size = resolve_batch_size(batch_size, output, pipeline.segmenter.device)
    extensions = [extension] if extension else IMAGE_EXTENSIONS
    images = input_images(source, extensions)
    provenance = {"pipeline": pipeline.describe(), "batch_size": batch_size}
    writer = DatasetWriter(Path(output), dataset, pipeline.classes, provenance)
    summary = label_images(images, writer, lambda prepared, _: pipeline.predict_batch(prepared), batch_size, progress,
                           prepare=pipeline.prepare)
    summary.ignored = ignored_files(source, extensions)
    summary.hint = empty_dataset_hint(summary)
    return summary


def empty_dataset_hint(summary: LabelSummary) -> str:
    """What to change when images were labeled and no object was found in any, else nothing."""
    if summary.images > summary.already_done + len(summary.skipped) and not any(summary.objects_per_class.values()):
        return ("no object was found: check the prompts, lower the grounder's thresholds or min_confidence, or "
                "try another grounder")
    return ""


def input_images(source: InputFolder, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> List[SourceImage]:
    """:func:`find_images`, or :class:`InputNotFoundError` when there is none (nothing to label is
    a mistake, not an empty dataset)."""
    images = find_images(source, extensions)
    if not images:
        ignored = ignored_files(source, extensions)
        found = f"; {ignored} other files ignored: only {', '.join(extensions)} are read" if ignored else ""
        raise InputNotFoundError(f"no images found in {source}{found}")
    return images


def default_batch_size(device: Union[str, torch.device]) -> int:
    """Images per batch when none is given: :data:`CPU_BATCH_SIZE` on a CPU (there both models
    take longer per image in a batch: memory traffic), :data:`LARGE_GPU_BATCH_SIZE` on a CUDA
    device of this machine with :data:`LARGE_GPU_MEMORY_GIB` or more, else
    :data:`DEFAULT_BATCH_SIZE` (a batch that does not fit is still split, see :func:`label_images`)."""
    device = torch.device(device)
    if device.type == "cpu":
        return CPU_BATCH_SIZE
    if device.type == "cuda" and torch.cuda.is_available():
        memory = torch.cuda.get_device_properties(device.index or 0).total_memory
        if memory >= LARGE_GPU_MEMORY_GIB * 2**30:
            return LARGE_GPU_BATCH_SIZE
    return DEFAULT_BATCH_SIZE


def resolve_batch_size(batch_size: Optional[int], output: Union[str, Path], device: Union[str, torch.device]) -> int:
    """``batch_size`` when given; else the batch size of the dataset in ``output`` (a resume keeps
    its batches, whatever the default on this device or in this version); else
    :func:`default_batch_size`. The batch size is part of a dataset's configuration: see
    :func:`label_images`."""
    if batch_size is not None:
        check_batch_size(batch_size)
        return batch_size
    manifest = Path(output) / MANIFEST
    if manifest.is_file():
        found = read_manifest(manifest).get("batch_size")
        if isinstance(found, int) and found >= 1:
            return found
    return default_batch_size(device)


def check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise SettingsError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")


def segment_box_dataset(
    source: Union[str, Path],
    output: Union[str, Path],
    segmenter: SegmenterConfig = SegmenterConfig(),
    dataset: DatasetConfig = DatasetConfig(),
    placement: DeviceConfig = DeviceConfig(),
    batch_size: Optional[int] = None,
    progress: bool = True,
) -> LabelSummary:
    """Turn a YOLO or COCO detection dataset into a segmentation dataset: SAM 2 masks for its
    boxes, its classes and splits kept (what ultralytics' ``yolo_bbox2segment`` does), with the
    same streaming, resume and formats as labeling (``dataset.split`` is ignored).
    ``batch_size``: see :func:`resolve_batch_size`."""
    check_output_folder(source, Path(output))
    device = placement.resolve()
    batch_size = resolve_batch_size(batch_size, output, device)
    boxes = read_dataset(Path(source))
    if not boxes.images:
        raise InputNotFoundError(f"the dataset {source} holds no images")
    model = Segmenter(segmenter, device, placement.bf16)
    if placement.compile:
        compile_models(model.model)
    provenance = {"source": str(Path(source).resolve()), "segmenter": model.describe(),
                  "placement": placement.describe(device), "batch_size": batch_size}
    writer = DatasetWriter(Path(output), dataclasses.replace(dataset, split=None), boxes.classes, provenance,
                           assigned_splits={image.key: image.split for image in boxes.images})
    by_key = {image.key: image for image in boxes.images}

    def predict(arrays: List[np.ndarray], sources: List[SourceImage]) -> List[sv.Detections]:
        requests = [given_box_requests(*boxes.boxes_for(by_key[source.name], *array.shape[:2]), boxes.classes)
                    for array, source in zip(arrays, sources)]
        return model.segment(arrays, requests)

    sources = [SourceImage(image.path, image.key) for image in boxes.images]
    return label_images(sources, writer, predict, batch_size, progress)


def segment_everything(
    source: InputFolder,
    output: Union[str, Path],
    segmenter: SegmenterConfig = SegmenterConfig(),
    dataset: DatasetConfig = DatasetConfig(format="coco"),
    generator_options: Optional[Dict[str, Any]] = None,
    placement: DeviceConfig = DeviceConfig(),
    progress: bool = True,
) -> LabelSummary:
    """Class-agnostic masks of everything in every image (SAM 2's automatic mask generator),
    written as a dataset with one class, ``object``; streams, resumes and reports bad inputs
    like labeling. ``generator_options`` go to :class:`segmenter.SAM2AutomaticMaskGenerator`
    (its defaults for the others; the manifest records them all); a mask's confidence is its
    predicted IoU."""
    check_output_folder(source, Path(output))
    images = input_images(source)
    options = dict(generator_options or {})
    device = placement.resolve()
    model = Segmenter(segmenter, device, placement.bf16)
    if placement.compile:
        compile_models(model.model)
    generator = model.mask_generator(**options)
    provenance = {"segmenter": model.describe(), "placement": placement.describe(device),
                  "generator": {**generator_defaults(), **options}}
    writer = DatasetWriter(Path(output), dataset, ("object",), provenance)

    def predict(arrays: List[np.ndarray], sources: List[SourceImage]) -> List[sv.Detections]:
        from tqdm.auto import tqdm

        results = []
        for array, image in zip(arrays, sources):
            with tqdm(unit="point", desc=image.name, leave=False, disable=not progress) as points:
                def advance(done: int, total: int) -> None:
                    points.total = total
                    points.update(done - points.n)

                results.append(automatic_detections(generator.generate(array, advance), array.shape[:2]))
        return results

    summary = label_images(images, writer, predict, batch_size=1, progress=progress)
    summary.ignored = ignored_files(source)
    if not any(summary.objects_per_class.values()):
        settings = provenance["generator"]
        summary.hint = (f"no mask passed the thresholds: lower pred_iou_thresh (--pred-iou-thresh, now "
                        f"{settings['pred_iou_thresh']}) and stability_score_thresh (--stability-score-thresh, now "
                        f"{settings['stability_score_thresh']})")
    return summary


def generator_defaults() -> Dict[str, Any]:
    """The automatic mask generator's keyword defaults, read from its signature (so that they
    are written once), except ``bf16``, which the manifest records with the device."""
    parameters = inspect.signature(SAM2AutomaticMaskGenerator.__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty and p.name != "bf16"}
