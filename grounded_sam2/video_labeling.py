"""Labeling a video: text-grounded tracking (:mod:`grounded_sam2.video`) streamed into a frame
dataset, a video JSON with track ids and, on request, an annotated MP4.

Layout of ``OUT/``: the frame dataset as for images (:mod:`grounded_sam2.datasets.writer`; every
frame in ``train/``, since neighbouring frames are near-duplicates that must not straddle a
train/valid split), named ``<video>_<frame>``; ``video.json`` and ``annotated.mp4`` (see
:mod:`grounded_sam2.datasets.video_exports`).

Interrupted runs: tracking memory cannot be rebuilt from files, so running the same command
again tracks the video from its first frame. The results are the same, frames already in the
dataset are not written again, and ``video.json`` and the MP4 are rewritten whole.
"""

import dataclasses
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Sequence, Union

import numpy as np

from .datasets.sources import SourceImage
from .datasets.video_exports import AnnotatedVideoWriter, VideoJsonWriter
from .datasets.writer import DatasetConfig, DatasetWriter, ImageResult
from .labeling import check_output_folder
from .pipeline import Pipeline
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
