"""GroundedSAM2: text ontology -> Florence-2 boxes -> SAM 2 masks -> ``sv.Detections``.

An autodistill base model: ``GroundedSAM2(ontology=CaptionOntology({...})).predict("dog.jpeg")``
works as with ``autodistill_grounded_sam_2``; only the import changes.

Confidence of a detection = Florence-2's box confidence (see :mod:`grounded_sam2.phrases`) x
SAM 2's predicted IoU of its mask; both factors are kept in ``data["grounding_confidence"]``
and ``data["sam_iou"]``.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import supervision as sv
import torch
from autodistill.detection import CaptionOntology, DetectionBaseModel
from PIL import Image

from segmenter import SAM2Model
from segmenter.device import resolve_device
from segmenter.image_io import load_rgb

from .errors import SettingsError
from .grounding import DEFAULT_FLORENCE, Florence2Grounder, GroundedBox, GroundingSettings
from .ontology import Ontology
from .segmentation import BoxRequest, BoxSegmenter, given_box_requests

if TYPE_CHECKING:
    from .labeling import LabelSummary
    from .video import TrackedFrame
    from .video_labeling import VideoLabelSummary

DEFAULT_SAM2 = "facebook/sam2.1-hiera-large"
ImageInput = Union[str, Path, np.ndarray, Image.Image]


@dataclass(frozen=True)
class Filters:
    """Which grounding boxes go on to SAM 2."""

    min_confidence: float = 0.0  # minimum grounding confidence
    nms_threshold: Optional[float] = 0.7  # IoU above which the less confident box is dropped; None: off
    class_agnostic_nms: bool = False
    min_box_area: float = 0.0  # pixels


def to_rgb_uint8(image: ImageInput, rgb: bool = False) -> np.ndarray:
    """An HxWx3 RGB uint8 array from a path, a PIL image or a numpy array.

    Numpy arrays are BGR (as ``cv2.imread`` returns them and autodistill passes them) unless
    ``rgb=True``."""
    if isinstance(image, np.ndarray) and not rgb and image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[:, :, 2::-1]
    array = load_rgb(image)
    if array.dtype != np.uint8:
        array = (array * 255.0).round().astype(np.uint8)
    return array


class GroundedSAM2(DetectionBaseModel):
    """Labels images with masks for the prompts of an ontology."""

    def __init__(
        self,
        ontology: Union[CaptionOntology, Ontology, dict, str, Path],
        florence: str = DEFAULT_FLORENCE,
        sam2: Union[str, Path, SAM2Model] = DEFAULT_SAM2,
        device: Union[str, torch.device, None] = None,
        strategy: str = "phrase_grounding",
        min_confidence: float = 0.0,
        nms_threshold: Optional[float] = 0.7,
        class_agnostic_nms: bool = False,
        min_box_area: float = 0.0,
        tighten_boxes: bool = False,
        num_beams: int = 1,
        max_new_tokens: int = 512,
        batch_size: int = 8,
        bf16: bool = True,
    ) -> None:
        """
        Arguments:
          ontology: {prompt: class} as a dict, autodistill CaptionOntology, YAML/JSON file or JSON.
          florence: Florence-2 hub id or local directory (native transformers checkpoint).
          sam2: SAM 2 checkpoint path, hub id (``facebook/sam2.1-hiera-large``), variant name, or a
            built :class:`segmenter.SAM2Model`.
          device: ``cpu``, ``cuda``, ``mps``...; None picks the best available.
          strategy: ``"phrase_grounding"`` (all prompts in one caption) or ``"open_vocabulary"``.
          min_confidence, nms_threshold, class_agnostic_nms, min_box_area: box filters applied
            before segmentation (see :class:`Filters`).
          tighten_boxes: replace each box by the bounding box of its mask.
          num_beams, max_new_tokens, batch_size: Florence-2 decoding (rows per generate call).
          bf16: bfloat16 on CUDA for both models.
        """
        self._ontology = Ontology.load(ontology)  # validated before any model loads
        self.ontology = CaptionOntology(self._ontology.to_dict())
        self.filters = Filters(min_confidence, nms_threshold, class_agnostic_nms, min_box_area)
        self.device = resolve_device(device)
        settings = GroundingSettings(strategy, num_beams, max_new_tokens, batch_size=batch_size)
        self.grounder = Florence2Grounder(florence, self.device, bf16=bf16, settings=settings)
        self.segmenter = BoxSegmenter(sam2, self._ontology.classes, self.device, bf16, tighten_boxes)
        # what a dataset's manifest records: resuming with other models or settings is refused
        self.settings = {
            "ontology": [list(pair) for pair in self._ontology.to_dict().items()],
            "florence": str(florence),
            "sam2": str(sam2) if not isinstance(sam2, SAM2Model) else "in-memory model",
            "grounding": {"strategy": strategy, "num_beams": num_beams, "max_new_tokens": max_new_tokens},
            "filters": vars(self.filters),
            "tighten_boxes": tighten_boxes,
        }

    @property
    def classes(self) -> List[str]:
        """Class names; a detection's class_id indexes this list."""
        return list(self._ontology.classes)

    def predict(self, input: ImageInput, rgb: bool = False) -> sv.Detections:
        """Detections with masks for one image: a path, a PIL image or a numpy array (BGR unless
        ``rgb=True``). Masks are boolean NxHxW at the image's size."""
        return self.predict_batch([input], rgb=rgb)[0]

    def predict_batch(self, inputs: Sequence[ImageInput], rgb: bool = False) -> List[sv.Detections]:
        """:meth:`predict` for several images: grounded together, encoded in one SAM 2 pass."""
        images = [to_rgb_uint8(image, rgb) for image in inputs]
        return self.segmenter.segment(images, self.ground(images))

    def ground(self, images: Sequence[np.ndarray]) -> List[List[BoxRequest]]:
        """The filtered Florence-2 boxes of RGB uint8 images, one list per image (the first stage
        of :meth:`predict_batch`, also used to start and re-check video tracks)."""
        grounded = self.grounder.ground(list(images), self._ontology.prompts)
        return [
            [BoxRequest(b.xyxy, self._ontology.class_id(b.prompt), b.confidence, b.prompt) for b in self._filter(boxes)]
            for boxes in grounded
        ]

    def segment_boxes(
        self, images: Sequence[ImageInput], boxes: Sequence[np.ndarray], class_ids: Sequence[np.ndarray], rgb: bool = False
    ) -> List[sv.Detections]:
        """Masks for boxes you already have (grounding skipped): per image an Nx4 XYXY array and
        N class ids (indexes of :attr:`classes`). Confidence is SAM 2's predicted IoU."""
        arrays = [to_rgb_uint8(image, rgb) for image in images]
        requests = [given_box_requests(xyxy, ids, self._ontology.classes) for xyxy, ids in zip(boxes, class_ids)]
        return self.segmenter.segment(arrays, requests)

    def label(
        self,
        input_folder: Union[str, Path, Sequence[Union[str, Path]]],
        extension: Optional[str] = None,
        output_folder: Union[str, Path, None] = None,
        format: str = "yolo",
        split: Tuple[float, float, float] = (0.8, 0.2, 0.0),
        seed: int = 0,
        coco_mask_format: str = "rle",
        batch_size: int = 4,
        progress: bool = True,
    ) -> "LabelSummary":
        """Label a folder (searched recursively) or a list of images into a dataset on disk.

        Streams: each image's labels are written as soon as they exist; running the same call
        again resumes. ``format`` is ``"yolo"`` (segmentation), ``"yolo-det"`` or ``"coco"``;
        ``output_folder`` defaults to ``<input_folder>_labeled`` as in autodistill; ``extension``
        restricts the search to one extension (any case). See :mod:`grounded_sam2.datasets.writer`
        for the layout. Returns a summary (images, skipped inputs with reasons, objects per class).
        """
        from .datasets.sources import IMAGE_EXTENSIONS, find_images
        from .datasets.writer import DatasetSpec
        from .labeling import check_output_folder, run_labeling

        if output_folder is None:
            if not isinstance(input_folder, (str, Path)):
                raise SettingsError("output_folder is required when labeling a list of files")
            output_folder = f"{str(input_folder).rstrip('/')}_labeled"
        spec = DatasetSpec(format, self._ontology.classes, tuple(split), seed, coco_mask_format, self.settings)
        check_output_folder(input_folder, Path(output_folder))
        images = find_images(input_folder, [extension] if extension else IMAGE_EXTENSIONS)
        return run_labeling(
            images, output_folder, spec,
            predict=lambda arrays, _: self.predict_batch(arrays, rgb=True),
            batch_size=batch_size, progress=progress,
        )

    def track_video(self, video: Union[str, Path, Sequence[np.ndarray]], every: int = 15, match_iou: float = 0.5,
                    max_missed_keyframes: int = 1) -> "Iterator[TrackedFrame]":
        """Track the ontology's objects through a video (file, folder of numbered frames, or
        list of RGB arrays): Florence-2 on every ``every``-th frame, SAM 2 in between. Yields
        one :class:`grounded_sam2.video.TrackedFrame` per frame, in order, whose ``detections``
        carry ``tracker_id``. See :mod:`grounded_sam2.video` for how tracks start and end."""
        from .video import TrackingSettings, VideoTracker

        settings = TrackingSettings(every, match_iou, max_missed_keyframes)
        return VideoTracker(self, video, settings).frames()

    def label_video(self, video: Union[str, Path, Sequence[np.ndarray]], output_folder: Union[str, Path],
                    **kwargs) -> "VideoLabelSummary":
        """Label every frame of a video into a dataset with track ids (and optionally an
        annotated MP4); keyword arguments as :func:`grounded_sam2.video_labeling.label_video`."""
        from .video_labeling import label_video

        return label_video(self, video, output_folder, **kwargs)

    def _filter(self, boxes: List[GroundedBox]) -> List[GroundedBox]:
        f = self.filters
        kept = [
            b for b in boxes
            if b.confidence >= f.min_confidence and (b.xyxy[2] - b.xyxy[0]) * (b.xyxy[3] - b.xyxy[1]) >= f.min_box_area
        ]
        if f.nms_threshold is None or len(kept) < 2:
            return kept
        detections = sv.Detections(
            xyxy=np.array([b.xyxy for b in kept], np.float32),
            confidence=np.array([b.confidence for b in kept], np.float32),
            class_id=np.array([self._ontology.class_id(b.prompt) for b in kept]),
            data={"index": np.arange(len(kept))},
        ).with_nms(threshold=f.nms_threshold, class_agnostic=f.class_agnostic_nms)
        return [kept[i] for i in sorted(detections.data["index"])]
