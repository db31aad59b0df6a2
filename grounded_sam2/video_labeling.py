"""Labeling a video: text-grounded tracking (:mod:`grounded_sam2.video`) streamed into a frame
dataset, a video JSON with track ids and, on request, an annotated MP4.

Layout of ``OUT/``: the frame dataset as for images (:mod:`grounded_sam2.datasets.writer`; every
frame in ``train/``, since neighbouring frames are near-duplicates that must not straddle a
train/valid split), named ``<video>_<frame>``; ``video.json`` and ``annotated.mp4`` (see
:mod:`grounded_sam2.datasets.video_exports`).

Interrupted runs: tracking memory cannot be rebuilt from files, so running the same command
again tracks the video from its first frame. The results are the same, frames already in the
dataset are not written again, and ``video.json`` and the MP4 are rewritten whole.

Several videos (:func:`label_videos`): one dataset per video, ``OUT/<video name>/``, labeled one
after the other, or with ``devices`` one video at a time per worker process, each video's
dataset the one a single process writes.
"""

import dataclasses
import multiprocessing
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .config import PipelineConfig
from .datasets.sources import SourceImage
from .datasets.video_exports import AnnotatedVideoWriter, VideoJsonWriter
from .datasets.writer import DatasetConfig, DatasetWriter, ImageResult
from .errors import SettingsError
from .labeling import check_output_folder
from .parallel import MAX_RESTARTS, WorkerError, exit_with_parent, parse_devices, with_fixed_threads
from .pipeline import Pipeline, quiet_model_loading, require_models
from .video import TrackingSettings, VideoTracker


@dataclass
class VideoLabelSummary:
    """What a video labeling run did."""

    output: Path
    frames: int = 0
    labeled: int = 0  # frames written by this run
    already_done: int = 0  # frames an earlier run wrote
    tracks: int = 0  # tracks started
    objects_per_class: Dict[str, int] = field(default_factory=dict)  # annotations over all frames
    skipped: list = field(default_factory=list)  # always empty: an unreadable frame stops the run

    def __str__(self) -> str:
        objects = ", ".join(f"{name} {count}" for name, count in self.objects_per_class.items()) or "none"
        return "\n".join([
            f"dataset: {self.output}",
            f"frames: {self.frames} tracked, {self.labeled} written now, {self.already_done} already written",
            f"tracks: {self.tracks}",
            f"objects per class (all frames): {objects}",
        ])


def label_video(
    pipeline: Pipeline,
    video: Union[str, Path, Sequence[np.ndarray]],
    output: Union[str, Path],
    dataset: DatasetConfig = DatasetConfig(),
    tracking: TrackingSettings = TrackingSettings(),
    video_json: bool = True,
    annotated_video: bool = False,
    progress: bool = True,
) -> VideoLabelSummary:
    """Label every frame of a video (file, folder of numbered frames, or list of RGB arrays)
    with ``pipeline`` into ``output`` (``dataset``'s format and mask encoding; every frame in
    train); see the module docstring, and :class:`grounded_sam2.video.TrackingSettings` for
    ``tracking``. Raises :class:`segmenter.VideoError` for a video that cannot be read."""
    from tqdm.auto import tqdm

    output = Path(output)
    if isinstance(video, (str, Path)):
        check_output_folder(video, output)
    tracker = VideoTracker(pipeline.ground, pipeline.segmenter.video_predictor(), video, tracking)
    frames = tracker.state.frames
    stem = Path(video).stem if isinstance(video, (str, Path)) else "video"
    names = [f"{stem}_{name}" for name in frames.names]
    provenance = {"pipeline": pipeline.describe(), "video": str(Path(video).resolve()) if isinstance(video, (str, Path))
                  else "arrays", "tracking": asdict(tracking)}
    writer = DatasetWriter(output, dataclasses.replace(dataset, split=None), pipeline.classes, provenance,
                           assigned_splits={name: "train" for name in names})
    width, height = frames.video_width, frames.video_height
    json_writer = VideoJsonWriter(output, pipeline.classes, stem, width, height, frames.fps) if video_json else None
    mp4_writer = AnnotatedVideoWriter(output, width, height, frames.fps) if annotated_video else None
    summary = VideoLabelSummary(output, frames=len(frames))
    counts: Counter = Counter()
    try:
        with tqdm(total=len(frames), unit="frame", desc="tracking", disable=not progress) as bar:
            for frame in tracker.frames():
                source = SourceImage(frames.paths[frame.index], names[frame.index])
                d = frame.detections
                if writer.is_done(source):
                    summary.already_done += 1
                else:
                    writer.commit(ImageResult(source, frame.rgb, detections=d))
                    summary.labeled += 1
                counts.update(d.data["class_name"].tolist())
                if json_writer:
                    json_writer.add_frame(frame.index, writer.image_file(source), d)
                if mp4_writer:
                    mp4_writer.add_frame(frame.rgb, d)
                bar.update(1)
    except BaseException:
        if mp4_writer:
            mp4_writer.discard()
        raise
    writer.finalize()
    if json_writer:
        json_writer.close()
    if mp4_writer:
        mp4_writer.close()
    summary.tracks = tracker.started
    summary.objects_per_class = {name: counts.get(name, 0) for name in pipeline.classes}
    return summary


@dataclass
class VideosSummary:
    """What labeling several videos did: one summary per video, in the order given."""

    videos: List[VideoLabelSummary]
    skipped: list = field(default_factory=list)  # always empty, as for one video

    def __str__(self) -> str:
        return "\n".join(str(summary) for summary in self.videos)


def video_outputs(videos: Sequence[Path], output: Path) -> List[Path]:
    """Each video's dataset folder: ``output`` for one video, ``output/<video name>`` for several."""
    if len(videos) == 1:
        return [Path(output)]
    names = [Path(video).stem for video in videos]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise SettingsError(f"videos with the same name would share a dataset folder: {', '.join(repeated)}")
    return [Path(output) / name for name in names]


def label_videos(
    config: PipelineConfig,
    videos: Sequence[Union[str, Path]],
    output: Union[str, Path],
    devices: Optional[Union[str, Sequence[str]]] = None,
    dataset: DatasetConfig = DatasetConfig(),
    tracking: TrackingSettings = TrackingSettings(),
    video_json: bool = True,
    annotated_video: bool = False,
    progress: bool = True,
) -> VideosSummary:
    """:func:`label_video` for each video into its folder of :func:`video_outputs`. With
    ``devices`` (see :func:`grounded_sam2.parallel.parse_devices`) one worker process per device
    takes the next video when it is free; a worker that dies stops its pool, and the videos not
    finished are labeled again (resuming) by a new one, up to
    :data:`~grounded_sam2.parallel.MAX_RESTARTS` times."""
    from tqdm.auto import tqdm

    videos = [Path(video) for video in videos]
    outputs = video_outputs(videos, Path(output))
    for video, folder in zip(videos, outputs):
        check_output_folder(video, folder)
    options = dict(dataset=dataset, tracking=tracking, video_json=video_json, annotated_video=annotated_video)
    if devices is None:
        pipeline = Pipeline(config)
        return VideosSummary([label_video(pipeline, video, folder, progress=progress, **options)
                              for video, folder in zip(videos, outputs)])
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    import torch

    devices = parse_devices(devices)
    require_models(config.grounder, config.segmenter.sam2)
    config = with_fixed_threads(config, torch.device(devices[0]))
    context = multiprocessing.get_context("spawn")
    summaries: Dict[int, VideoLabelSummary] = {}
    with tqdm(total=len(videos), unit="video", desc="videos", disable=not progress) as bar:
        for _ in range(MAX_RESTARTS + 1):
            slots = context.Queue()
            for device in devices:
                slots.put(device)
            try:
                with ProcessPoolExecutor(len(devices), mp_context=context, initializer=_start_video_worker,
                                         initargs=(config, slots)) as pool:
                    running = {pool.submit(_label_in_worker, videos[i], outputs[i], options): i
                               for i in range(len(videos)) if i not in summaries}
                    for done in as_completed(running):
                        summaries[running[done]] = done.result()
                        bar.update(1)
                break
            except BrokenProcessPool:
                continue  # a worker died: the unfinished videos again, in a new pool
        else:
            raise WorkerError(f"video workers died {MAX_RESTARTS + 1} times; what is written is kept: run the same "
                              f"command again to resume")
    return VideosSummary([summaries[i] for i in range(len(videos))])


_WORKER_PIPELINE: Optional[Pipeline] = None  # a video worker's pipeline, built once


def _start_video_worker(config: PipelineConfig, slots) -> None:
    global _WORKER_PIPELINE
    exit_with_parent()
    quiet_model_loading()
    placement = dataclasses.replace(config.placement, device=slots.get())
    _WORKER_PIPELINE = Pipeline(dataclasses.replace(config, placement=placement))


def _label_in_worker(video: Path, output: Path, options: dict) -> VideoLabelSummary:
    return label_video(_WORKER_PIPELINE, video, output, progress=False, **options)
