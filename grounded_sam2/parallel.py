"""Labeling a folder with one worker process per device, all writing into one dataset.

``label_on_devices(config, source, output, devices=["cuda:0", "cuda:1"])`` (the command line's
``--devices cuda:0,cuda:1``; ``cpu:2`` is two workers on the CPU) gives the dataset a single
process gives with the same configuration, to the byte:

- the parent checks the inputs and the models, creates the dataset (its manifest) and hands out
  the fixed batch groups of :func:`grounded_sam2.labeling.batch_groups`, each worker holding at
  most :data:`WORKER_GROUPS` groups it has not predicted yet (the one it predicts next and those
  it reads ahead; handed out in turn, so a small input is shared too); each worker builds the
  pipeline once and runs :func:`~grounded_sam2.labeling.label_groups` on the groups it is handed,
  reading the next ones and writing the last ones while it predicts, and commits its images
  itself;
- every worker has the same device type, precision and thread count (on a CPU the thread count
  a single process would use), which are all part of the configuration;
- a worker that dies (killed, out of memory) is started again, and the groups it held and had
  not reported written are predicted whole again, as a resume would; after :data:`MAX_RESTARTS`
  deaths on one device the run stops, and running it again resumes;
- the parent shows one progress bar, collects the skipped inputs, stops everything on Ctrl-C or
  when :data:`~grounded_sam2.labeling.STOP_AFTER_SAME_FAILURES` predictions in a row fail the same
  way, and finalizes the dataset.

Workers are started with ``spawn`` (CUDA cannot be forked) and load the models themselves.
The pieces any runner of workers needs (:func:`plan_run`, :class:`GroupLabeler`,
:class:`Reports`, :func:`finish_run`) are shared with the Ray runner, :mod:`grounded_sam2.cluster`.
"""

import collections
import dataclasses
import multiprocessing
import queue
import traceback
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple, Union

import torch

from segmenter.device import resolve_device

from .config import PipelineConfig
from .datasets.sources import IMAGE_EXTENSIONS, SourceImage
from .datasets.writer import DatasetConfig, DatasetWriter, ImageResult
from .errors import GroundedSAM2Error, SettingsError
from .labeling import (
    LOAD_AHEAD_GROUPS,
    STOP_AFTER_SAME_FAILURES,
    Group,
    InputFolder,
    LabelSummary,
    batch_groups,
    check_output_folder,
    empty_dataset_hint,
    failure_site,
    ignored_files,
    input_images,
    label_groups,
    resolve_batch_size,
)
from .pipeline import Pipeline, quiet_model_loading, require_models

MAX_RESTARTS = 3  # deaths of the workers of one device before the run stops
WORKER_GROUPS = 1 + LOAD_AHEAD_GROUPS  # groups a worker holds that it has not predicted yet
POLL_S = 0.5  # how often the parent looks for dead workers


class WorkerError(GroundedSAM2Error):
    """A worker stopped with an error the package raises for its users (the message is its)."""


def parse_devices(spec: Union[str, Sequence[str]]) -> List[str]:
    """Worker devices from ``"cuda:0,cuda:1"``, ``"cuda"``, ``"mps"`` or ``"cpu:N"`` (N CPU workers);
    all of one device type, since the type decides the results."""
    devices: List[str] = []
    for item in ([spec] if isinstance(spec, str) else list(spec)):
        for part in (p.strip() for p in str(item).split(",") if p.strip()):
            kind, _, count = part.partition(":")
            if kind == "cpu":
                if count and (not count.isdigit() or int(count) < 1):
                    raise SettingsError(f"cpu:N needs a number of workers of at least 1, got {part!r}")
                devices += ["cpu"] * int(count or 1)
            else:
                devices.append(part)
    if not devices:
        raise SettingsError("no device given: use e.g. cuda:0,cuda:1 or cpu:2")
    kinds = sorted({torch.device(d).type if d != "cpu" else "cpu" for d in devices})
    if len(kinds) > 1:
        raise SettingsError(f"the devices must be of one type (their results differ), got {', '.join(kinds)}")
    return devices


# --- what every runner of workers shares ----------------------------------------------------------


@dataclasses.dataclass
class RunPlan:
    """A run as its workers see it: the configuration every worker uses (device type, precision
    and thread count fixed), the dataset (created), the fixed batch groups and the images an
    earlier run finished."""

    config: PipelineConfig
    source: InputFolder
    extensions: List[str]
    output: Path
    dataset: DatasetConfig
    provenance: Dict[str, Any]
    writer: DatasetWriter
    images: List[SourceImage]
    groups: List[List[SourceImage]]
    done_before: Set[str]

    @property
    def pending(self) -> List[int]:
        """The groups with an image still to do."""
        return [k for k, group in enumerate(self.groups) if not all(i.name in self.done_before for i in group)]

    def labeler_arguments(self) -> Tuple:
        """What :class:`GroupLabeler` is built from (small and picklable)."""
        return self.config, self.output, self.dataset, tuple(self.config.ontology.classes), self.provenance


def plan_run(config: PipelineConfig, source: InputFolder, output: Union[str, Path], device: torch.device,
             dataset: DatasetConfig, extension: Optional[str], batch_size: Optional[int]) -> RunPlan:
    """Check the inputs, the models and the output folder, fix the thread count a CPU worker uses
    (the one a single process would use) and the batch size (:func:`resolve_batch_size`), and
    create or reopen the dataset."""
    output = Path(output)
    check_output_folder(source, output)
    batch_size = resolve_batch_size(batch_size, output, device)
    extensions = [extension] if extension else list(IMAGE_EXTENSIONS)
    images = input_images(source, extensions)
    require_models(config.grounder, config.segmenter.sam2)
    config = with_fixed_threads(config, device)
    provenance = {"pipeline": config.describe(device), "batch_size": batch_size}
    writer = DatasetWriter(output, dataset, config.ontology.classes, provenance)
    done_before = {image.name for image in images if writer.is_done(image)}
    return RunPlan(config, source, extensions, output, dataset, provenance, writer, images,
                   batch_groups(images, batch_size), done_before)


def with_fixed_threads(config: PipelineConfig, device: torch.device) -> PipelineConfig:
    """``config`` with, for CPU workers, the thread count set: the one a single process here would
    use unless it names one (the count is part of the configuration: every worker must use it)."""
    threads = config.placement.threads or (torch.get_num_threads() if device.type == "cpu" else None)
    return dataclasses.replace(config, placement=dataclasses.replace(config.placement, threads=threads))


class ImageReport(NamedTuple):
    """What a worker tells the parent about one image of a group (small: never masks)."""

    name: str
    path: Optional[str]
    reason: Optional[str]  # the skip reason; None: labeled
    site: Optional[str]  # where its prediction failed: failure_site as text
    detail: str  # the failure's traceback


class GroupLabeler:
    """A worker's side: the pipeline built once (on ``config``'s device), the dataset opened
    without creating it; :meth:`label` predicts groups and commits their images."""

    def __init__(self, config: PipelineConfig, output: Path, dataset: DatasetConfig, classes: Sequence[str],
                 provenance: Dict[str, Any]) -> None:
        quiet_model_loading()
        self.pipeline = Pipeline(config)
        self.writer = DatasetWriter(output, dataset, classes, provenance, create=False)

    def label(self, next_group: Callable[[bool], Optional[Group]],
              written: Callable[[int, List[ImageReport]], None],
              predicted: Callable[[int], None] = lambda k: None) -> None:
        """Predict each group ``next_group`` gives whole and commit what is not yet done
        (:func:`~grounded_sam2.labeling.label_groups`); ``predicted(k)`` once group k is predicted,
        ``written(k, reports)`` once its images are on disk. An image already done (by an earlier
        run, or by a worker that died after committing it) is reported as labeled."""

        def reports(group: Group, results: List[ImageResult], wrote: List[bool]) -> None:
            written(group[0], [_image_report(result, new) for result, new in zip(results, wrote)])

        label_groups(next_group, self.writer, lambda prepared, _: self.pipeline.predict_batch(prepared),
                     lambda group, results, splits: predicted(group[0]), reports, prepare=self.pipeline.prepare)


def _image_report(result: ImageResult, wrote: bool) -> ImageReport:
    """What the parent is told of one result: labeled when it was done before (``wrote`` False)."""
    path = str(result.source.path) if result.source.path else None
    if not wrote:
        return ImageReport(result.source.name, path, None, None, "")
    error, site, detail = result.error, None, ""
    if error is not None:
        site = "\t".join(map(str, failure_site(error)))
        detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return ImageReport(result.source.name, path, result.skip_reason, site, detail)


class Reports:
    """The parent's record of the images reported: each once (a group predicted again after a
    death repeats nothing), none an earlier run finished; stops the run when
    :data:`STOP_AFTER_SAME_FAILURES` predictions in a row failed at the same place."""

    def __init__(self, done_before: Set[str], on_image: Callable[[str], None]) -> None:
        self.done_before, self.on_image = done_before, on_image
        self.by_name: Dict[str, ImageReport] = {}
        self.failures: List[ImageReport] = []

    def add(self, report: ImageReport) -> None:
        if report.name in self.by_name or report.name in self.done_before:
            return
        self.by_name[report.name] = report
        self.on_image(report.name)
        if report.site is None:
            self.failures = []
            return
        self.failures = [f for f in self.failures if f.site == report.site] + [report]
        if len(self.failures) >= STOP_AFTER_SAME_FAILURES:
            raise RuntimeError(f"{len(self.failures)} images in a row failed with the same error in the workers; "
                               f"stopping instead of skipping every image. The last one:\n{report.detail}")


def finish_run(plan: RunPlan, reports: Reports) -> LabelSummary:
    """Finalize the dataset; the summary a single process gives (skipped inputs in input order)."""
    summary = LabelSummary(plan.output, images=len(plan.images), already_done=len(plan.done_before))
    for image in plan.images:
        report = reports.by_name.get(image.name)
        if report is None:
            continue
        if report.reason is None:
            summary.labeled += 1
        else:
            summary.skipped.append((Path(report.path) if report.path else None, report.reason))
    counts = plan.writer.finalize()
    summary.objects_per_class = {name: counts.get(name, 0) for name in plan.writer.classes}
    summary.ignored = ignored_files(plan.source, plan.extensions)
    summary.hint = empty_dataset_hint(summary)
    return summary


# --- one process per device -----------------------------------------------------------------------


def label_on_devices(
    config: PipelineConfig,
    source: InputFolder,
    output: Union[str, Path],
    devices: Union[str, Sequence[str]],
    dataset: DatasetConfig = DatasetConfig(),
    extension: Optional[str] = None,
    batch_size: Optional[int] = None,
    progress: bool = True,
) -> LabelSummary:
    """:func:`grounded_sam2.labeling.label_folder` with one worker process per device of ``devices``
    (see :func:`parse_devices`); the same dataset, the same summary."""
    from tqdm.auto import tqdm

    devices = parse_devices(devices)
    plan = plan_run(config, source, output, resolve_device(devices[0]), dataset, extension, batch_size)
    todo = len(plan.images) - len(plan.done_before)
    with tqdm(total=todo, unit="img", desc="labeling", disable=not progress) as bar:
        reports = Reports(plan.done_before, on_image=lambda _: bar.update(1))
        _Job(plan, devices).run(reports)
    return finish_run(plan, reports)


class _Job:
    """The parent's side: one process and one task queue per device, the groups still to do, and
    what the workers report. The parent knows which groups each worker holds: those it was handed
    and has not written (predicted again if it dies), among them those it has not predicted."""

    def __init__(self, plan: RunPlan, devices: List[str]) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.events = self.context.Queue()
        self.plan, self.devices = plan, devices
        self.workers: Dict[int, Any] = {}
        self.tasks: Dict[int, Any] = {}
        self.holding: Dict[int, List[int]] = {}  # worker -> the groups it holds, not yet written
        self.unpredicted: Dict[int, Set[int]] = {}  # worker -> those of them it has not predicted
        self.deaths = [0] * len(devices)

    def _start(self, slot: int) -> None:
        config, *rest = self.plan.labeler_arguments()
        config = dataclasses.replace(config, placement=dataclasses.replace(config.placement,
                                                                           device=self.devices[slot]))
        self.tasks[slot] = self.context.Queue()
        process = self.context.Process(target=_work, args=(slot, (config, *rest), self.tasks[slot], self.events),
                                       daemon=True, name=f"grounded-sam2 worker {slot} ({self.devices[slot]})")
        process.start()
        self.workers[slot], self.holding[slot], self.unpredicted[slot] = process, [], set()

    def _hand_out(self, todo: Deque[int]) -> None:
        """Give the next groups, one at a time, to the worker with the fewest unpredicted ones,
        while that one has fewer than :data:`WORKER_GROUPS`."""
        while todo:
            slot = min(self.workers, key=lambda s: (len(self.unpredicted[s]), s))
            if len(self.unpredicted[slot]) >= WORKER_GROUPS:
                return
            k = todo.popleft()
            self.holding[slot].append(k)
            self.unpredicted[slot].add(k)
            self.tasks[slot].put((k, self.plan.groups[k]))

    def run(self, reports: Reports) -> None:
        """Predict the pending groups, adding what the workers report to ``reports``."""
        pending = self.plan.pending
        todo, outstanding = collections.deque(pending), set(pending)
        try:
            for slot in range(len(self.devices)):
                self._start(slot)
            while outstanding:
                self._hand_out(todo)
                try:
                    kind, slot, *rest = self.events.get(timeout=POLL_S)
                except queue.Empty:
                    kind = None
                if kind == "predicted":
                    self.unpredicted[slot].discard(rest[0])
                elif kind == "written":
                    k, images = rest
                    for report in images:
                        reports.add(report)
                    outstanding.discard(k)
                    if k in self.holding[slot]:
                        self.holding[slot].remove(k)
                elif kind == "error":
                    ours, message, detail = rest
                    raise WorkerError(message) if ours else RuntimeError(f"a worker failed:\n{detail}")
                for slot in self._dead():
                    # its groups not written are predicted whole again, as a resume would
                    todo.extendleft(reversed([k for k in self.holding.pop(slot) if k in outstanding]))
                    self._start(slot)
            for slot in self.workers:
                self.tasks[slot].put(None)
            for process in self.workers.values():
                process.join()
        finally:
            for process in self.workers.values():
                if process.is_alive():
                    process.terminate()
                    process.join()

    def _dead(self) -> List[int]:
        """The workers that died; raises when one device's workers died too often."""
        dead = [slot for slot, process in self.workers.items() if not process.is_alive()]
        for slot in dead:
            self.deaths[slot] += 1
            if self.deaths[slot] > MAX_RESTARTS:
                raise WorkerError(
                    f"the worker on {self.devices[slot]} died {self.deaths[slot]} times (last exit code "
                    f"{self.workers[slot].exitcode}); what is written is kept: run the same command again to resume"
                )
        return dead


def exit_with_parent() -> None:
    """In a worker process: end it as soon as its parent is gone (killed with SIGKILL, say), so
    that no orphan holds a device; what it was writing is atomic, and a resume redoes its group."""
    import os
    import threading

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the parent process ends
        os._exit(1)

    threading.Thread(target=watch, name="exit with parent", daemon=True).start()


class _Tasks:
    """A worker's task queue as :func:`~grounded_sam2.labeling.label_groups` takes groups: without
    waiting when asked, None once the parent said there is no more."""

    def __init__(self, tasks) -> None:
        self.tasks, self.ended = tasks, False

    def __call__(self, wait: bool) -> Optional[Group]:
        if self.ended:
            return None
        try:
            task = self.tasks.get(block=wait)
        except queue.Empty:
            return None
        self.ended = task is None
        return task


def _work(slot: int, labeler_arguments: Tuple, tasks, events) -> None:
    """A worker process: build the labeler once, then predict and commit the groups it is given,
    reporting each when it is predicted and when its images are written. The images a worker that
    died had committed are reported by the one that predicts the group again."""
    exit_with_parent()
    try:
        labeler = GroupLabeler(*labeler_arguments)
        labeler.label(_Tasks(tasks), lambda k, images: events.put(("written", slot, k, images)),
                      lambda k: events.put(("predicted", slot, k)))
    except KeyboardInterrupt:
        pass
    except BaseException as e:
        events.put(("error", slot, isinstance(e, GroundedSAM2Error), str(e), traceback.format_exc()))
