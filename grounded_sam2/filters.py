"""Which grounding boxes go on to SAM 2: minimum confidence and area, then non-maximum
suppression per class (or across classes)."""

from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np
import supervision as sv

from .errors import SettingsError
from .grounding import GroundedBox


@dataclass(frozen=True)
class FilterConfig:
    """Box filters applied between grounding and segmentation."""

    min_confidence: float = 0.0  # minimum grounding confidence
    nms_threshold: Optional[float] = 0.7  # IoU above which the less confident box is dropped; None: off
    class_agnostic_nms: bool = False  # NMS across classes instead of per class
    min_box_area: float = 0.0  # pixels

    def __post_init__(self) -> None:
        if self.nms_threshold is not None and not 0.0 <= self.nms_threshold <= 1.0:
            raise SettingsError(f"nms_threshold must be in [0, 1] or None (off), got {self.nms_threshold}")
        if self.min_box_area < 0:
            raise SettingsError(f"min_box_area must be >= 0, got {self.min_box_area}")


def filter_boxes(boxes: List[GroundedBox], config: FilterConfig, class_id: Callable[[str], int]) -> List[GroundedBox]:
    """The boxes that pass ``config``, in their order; ``class_id`` maps a box's prompt to its
    class (per-class NMS compares boxes of one class only)."""
    kept = [
        b for b in boxes
        if b.confidence >= config.min_confidence
        and (b.xyxy[2] - b.xyxy[0]) * (b.xyxy[3] - b.xyxy[1]) >= config.min_box_area
    ]
    if config.nms_threshold is None or len(kept) < 2:
        return kept
    detections = sv.Detections(
        xyxy=np.array([b.xyxy for b in kept], np.float32),
        confidence=np.array([b.confidence for b in kept], np.float32),
        class_id=np.array([class_id(b.prompt) for b in kept]),
        data={"index": np.arange(len(kept))},
    ).with_nms(threshold=config.nms_threshold, class_agnostic=config.class_agnostic_nms)
    return [kept[i] for i in sorted(detections.data["index"])]
