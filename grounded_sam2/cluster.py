"""Labeling a folder on a Ray cluster, with the dataset a single process makes.

``label_on_ray(config, source, output, address=...)`` (the command line's ``--ray [ADDRESS]``)
runs the batch groups of :func:`grounded_sam2.labeling.batch_groups` through Ray Data:

- the input is the list of groups still to do (``ray.data.from_items``, one block per group):
  the actors read the images themselves, so a corrupt file is a skipped row, not a failed job,
  and no read task competes with the actors for CPUs;
- ``map_batches`` over an actor pool (``ActorPoolStrategy``): one actor per GPU (``num_gpus=1``)
  or, on a cluster without GPUs, CPU actors of ``threads`` CPUs each; every actor builds the
  pipeline once from the configuration and is given up to :data:`GROUPS_PER_CALL` groups a call,
  which it labels with :func:`~grounded_sam2.labeling.label_groups` (reading the next groups and
  writing the last ones while it predicts), writing its images' files into the output folder
  itself and returning one small status row per image (never masks through the object store);
- the driver creates the dataset (its manifest) first, collects the rows into the summary and
  finalizes the dataset at the end.

An actor that dies is restarted by Ray and the groups of its call predicted again whole, as a
resume would (actor pools retry by default); a killed driver leaves what was written, and the
same command resumes. The output folder and the model files must be on storage every node sees, at the same
path, and every node needs this package installed (``pip install grounded-sam2[ray]``).
"""

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

from .config import PipelineConfig
from .datasets.sources import SourceImage
from .datasets.writer import DatasetConfig
from .errors import GroundedSAM2Error, MissingDependencyError, SettingsError
from .labeling import InputFolder, LabelSummary
from .parallel import GroupLabeler, ImageReport, Reports, WorkerError, finish_run, plan_run

INSTALL_RAY = "pip install 'grounded-sam2[ray]'"
GROUPS_PER_CALL = 4  # groups an actor labels in one call, overlapped (fewer when there are few per actor)
_COLUMNS = ImageReport._fields


def import_ray():
    """The ``ray`` module with Ray Data, or an error that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (pyarrow and pandas come with the [data] extra)
    except ImportError as e:
        raise MissingDependencyError(f"labeling on Ray needs Ray Data ({e}): {INSTALL_RAY}") from e
    return ray


def label_on_ray(
    config: PipelineConfig,
    source: InputFolder,
    output: Union[str, Path],
    address: Optional[str] = None,
    workers: Optional[int] = None,
    dataset: DatasetConfig = DatasetConfig(),
    extension: Optional[str] = None,
    batch_size: Optional[int] = None,
    progress: bool = True,
) -> LabelSummary:
    """:func:`grounded_sam2.labeling.label_folder` on a Ray cluster: the same dataset, the same
    summary.

    ``address``: the cluster to connect to (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``);
    None connects to ``RAY_ADDRESS`` when it is set and otherwise starts Ray on this machine. A
    process that already called ``ray.init`` keeps its connection. ``workers``: the number of
    actors (Ray waits until they fit); None: one per GPU of the cluster, or on a CPU-only
    cluster its CPUs divided by the thread count. The device type is the cluster's (CUDA when it has GPUs) unless
    ``config.placement.device`` names one; the thread count of CPU actors is
    ``config.placement.threads``, by default this process's torch thread count (the one a single
    process here would use)."""
    from tqdm.auto import tqdm

    ray = import_ray()
    _connect(ray, address)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    device = _device_type(config, gpus)
    plan = plan_run(config, source, output, torch.device(device), dataset, extension, batch_size)
    pending = plan.pending
    todo = len(plan.images) - len(plan.done_before)
    with tqdm(total=todo, unit="img", desc="labeling", disable=not progress) as bar:
        reports = Reports(plan.done_before, on_image=lambda _: bar.update(1))
        if pending:
            config, *rest = plan.labeler_arguments()
            resources = {"num_gpus": 1} if device == "cuda" else {"num_cpus": config.placement.threads}
            size = workers or _default_workers(ray, device, gpus, config.placement.threads)
            groups = [{"group": json.dumps([[str(i.path), i.name] for i in plan.groups[k]])} for k in pending]
            rows = ray.data.from_items(groups, override_num_blocks=len(pending))
            size = min(size, len(pending))
            rows = rows.map_batches(
                _RayGroupLabeler, fn_constructor_args=(_with_device(config, device), *rest),
                batch_size=groups_per_call(len(pending), size), compute=ray.data.ActorPoolStrategy(size=size),
                **resources,
            )
            try:
                for row in rows.iter_rows():
                    reports.add(_report(row))
            except Exception as e:  # an actor raised: its own error when it is one of ours
                ours = _our_error(e)
                if ours is None:
                    raise
                raise WorkerError(str(ours)) from e
    return finish_run(plan, reports)


def groups_per_call(groups: int, actors: int) -> int:
    """Groups per actor call: :data:`GROUPS_PER_CALL`, fewer when that would leave actors idle."""
    return max(1, min(GROUPS_PER_CALL, groups // actors))


def _connect(ray, address: Optional[str]) -> None:
    """Connect (or start Ray here) unless this process is connected; quiet, our bar shows progress."""
    if not ray.is_initialized():
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def _device_type(config: PipelineConfig, gpus: int) -> str:
    """``cuda`` or ``cpu``: the configuration's device type, else the cluster's."""
    if config.placement.device is None:
        return "cuda" if gpus else "cpu"
    kind = torch.device(config.placement.device).type
    if kind not in ("cpu", "cuda"):
        raise SettingsError(f"Ray actors run on cpu or cuda, not {config.placement.device!r}")
    if kind == "cuda" and not gpus:
        raise SettingsError("device cuda was asked for, but the Ray cluster has no GPU")
    return kind


def _with_device(config: PipelineConfig, device: str) -> PipelineConfig:
    import dataclasses

    # an actor sees its own GPU as cuda:0 (Ray sets CUDA_VISIBLE_DEVICES)
    return dataclasses.replace(config, placement=dataclasses.replace(config.placement, device=device))


def _default_workers(ray, device: str, gpus: int, threads: Optional[int]) -> int:
    if device == "cuda":
        return gpus
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // (threads or 1))


class _RayGroupLabeler(GroupLabeler):
    """A Ray Data actor: :class:`GroupLabeler` over batches of groups, returning the image reports
    as columns, empty text standing for None."""

    def __init__(self, *arguments: Any) -> None:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        super().__init__(*arguments)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, List[Any]]:
        """``batch["group"]``: groups as JSON lists of [path, name]."""
        groups = iter(enumerate([SourceImage(Path(path), name) for path, name in json.loads(g)]
                                for g in batch["group"]))
        reports: List[ImageReport] = []
        self.label(lambda wait: next(groups, None), lambda k, written: reports.extend(written))
        columns: Dict[str, List[Any]] = {name: [] for name in _COLUMNS}
        for report in reports:
            for name, value in zip(_COLUMNS, report):
                columns[name].append(value or "")
        return columns


def _report(row: Dict[str, Any]) -> ImageReport:
    """An :class:`ImageReport` from a row (empty text stands for None)."""
    values = {name: (row[name] or None) for name in _COLUMNS}
    values["detail"] = values["detail"] or ""
    return ImageReport(**values)


def _our_error(error: BaseException) -> Optional[GroundedSAM2Error]:
    """The package's own error among the causes Ray wraps an actor's exception in, if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, GroundedSAM2Error):
            return error
        seen.add(id(error))
        error = getattr(error, "cause", None) or error.__cause__
    return None
