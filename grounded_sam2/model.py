"""GroundedSAM2, the autodistill base model: a thin adapter over :class:`~grounded_sam2.pipeline.Pipeline`.
``GroundedSAM2(ontology=CaptionOntology({...})).predict("dog.jpeg")`` works as with
``autodistill_grounded_sam_2``; detections follow :mod:`grounded_sam2.detections`."""

from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Union

import numpy as np
import supervision as sv
from autodistill.detection import CaptionOntology, DetectionBaseModel

from .config import PipelineConfig, pick_fields
from .datasets.writer import DatasetConfig
from .errors import SettingsError
from .images import ImageInput, to_rgb_uint8
from .labeling import LabelSummary, label_folder
from .pipeline import Pipeline
from .video import TrackedFrame, TrackingSettings, VideoTracker
from .video_labeling import VideoLabelSummary, label_video

VideoSource = Union[str, Path, Sequence[np.ndarray]]


class GroundedSAM2(DetectionBaseModel):
    """Labels images with masks for the prompts of an ontology."""

    def __init__(self, ontology: Any, **options: Any) -> None:
        """
        Arguments:
          ontology: {prompt: class} as a dict, autodistill's CaptionOntology, a YAML/JSON file,
            a JSON string or a shipped name (``coco80``); checked before any model loads.
          options: the flat options of :meth:`PipelineConfig.from_options` (``florence``, ``sam2``,
            ``device``, ``min_confidence``, ``nms_threshold``, ``tighten_boxes``...): the list and
            every default are in :mod:`grounded_sam2.config`.
        """
        self.pipeline = Pipeline(PipelineConfig.from_options(ontology, **options))
        self.ontology = CaptionOntology(self.pipeline.ontology.to_dict())

    @property
    def grounder(self):
        return self.pipeline.grounder

    @property
    def classes(self) -> List[str]:
        """Class names; a detection's class_id indexes this list."""
        return self.pipeline.classes

    def predict(self, input: ImageInput, rgb: bool = False) -> sv.Detections:
        """Detections with masks for one image: a path, a PIL image or a numpy array (BGR unless
        ``rgb=True``). Masks are boolean NxHxW at the image's size."""
        return self.predict_batch([input], rgb=rgb)[0]

    def predict_batch(self, inputs: Sequence[ImageInput], rgb: bool = False) -> List[sv.Detections]:
        """:meth:`predict` for several images: grounded together, encoded in one SAM 2 pass."""
        return self.pipeline.predict_batch([to_rgb_uint8(image, rgb) for image in inputs])

    def segment_boxes(self, images: Sequence[ImageInput], boxes: Sequence[np.ndarray],
                      class_ids: Sequence[np.ndarray], rgb: bool = False) -> List[sv.Detections]:
        """Masks for boxes you already have (grounding skipped): per image an Nx4 XYXY array and
        N class ids (indexes of :attr:`classes`). Confidence is SAM 2's predicted IoU."""
        return self.pipeline.segment_boxes([to_rgb_uint8(image, rgb) for image in images], boxes, class_ids)

    def label(self, input_folder: Union[str, Path, Sequence[Union[str, Path]]], extension: Optional[str] = None,
              output_folder: Union[str, Path, None] = None, batch_size: Optional[int] = None,
              progress: bool = True, **dataset: Any) -> LabelSummary:
        """Label a folder (searched recursively; ``extension``: only that one, any case) or a list
        of images into ``output_folder`` (default ``<input_folder>_labeled``, as autodistill),
        streamed and resumable (see :func:`~grounded_sam2.labeling.label_folder`). ``dataset``
        options are :class:`DatasetConfig`'s: ``format`` (``yolo``, ``yolo-det``, ``coco``, ``label-studio``),
        ``split``, ``seed``, ``coco_mask_format``."""
        if output_folder is None:
            if not isinstance(input_folder, (str, Path)):
                raise SettingsError("output_folder is required when labeling a list of files")
            output_folder = f"{str(input_folder).rstrip('/')}_labeled"
        return label_folder(self.pipeline, input_folder, output_folder, DatasetConfig(**dataset), extension,
                            batch_size, progress)

    def track_video(self, video: VideoSource, **tracking: Any) -> Iterator[TrackedFrame]:
        """Track the ontology's objects through a video (file, folder of numbered frames, or list
        of RGB arrays): grounding on every ``every``-th frame, SAM 2 in between. ``tracking`` are
        :class:`TrackingSettings`' (``every``, ``match_iou``, ``max_missed_keyframes``). Yields one
        :class:`~grounded_sam2.video.TrackedFrame` per frame, in order, with ``tracker_id``."""
        predictor = self.pipeline.segmenter.video_predictor()
        return VideoTracker(self.pipeline.ground, predictor, video, TrackingSettings(**tracking)).frames()

    def label_video(self, video: VideoSource, output_folder: Union[str, Path], **options: Any) -> VideoLabelSummary:
        """Label every frame of a video into a dataset with track ids: ``options`` are
        :class:`DatasetConfig`'s, :class:`TrackingSettings`' and :func:`~grounded_sam2.video_labeling.label_video`'s
        (``video_json``, ``annotated_video``, ``progress``)."""
        dataset = DatasetConfig(**pick_fields(options, DatasetConfig))
        tracking = TrackingSettings(**pick_fields(options, TrackingSettings))
        return label_video(self.pipeline, video, output_folder, dataset, tracking, **options)
