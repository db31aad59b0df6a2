"""Segmentation stage: SAM 2 masks for boxes, as ``sv.Detections``."""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np
import supervision as sv
import torch

from segmenter import SAM2ImagePredictor, SAM2Model, build_sam2

from .detections import empty_detections, make_detections, masks_to_xyxy


@dataclass(frozen=True)
class BoxRequest:
    """A box to segment, in pixels of its image (XYXY), with its class and where it came from."""

    xyxy: Tuple[float, float, float, float]
    class_id: int
    confidence: float = 1.0  # of the box itself (grounding); 1 for given boxes
    prompt: str = ""


def given_box_requests(xyxy, class_ids, classes) -> List[BoxRequest]:
    """Requests for boxes a user or dataset already has: Nx4 XYXY pixels and N class ids
    (indexes of ``classes``), confidence 1, the class name as prompt."""
    return [
        BoxRequest(tuple(map(float, box)), int(c), 1.0, classes[int(c)])
        for box, c in zip(np.reshape(xyxy, (-1, 4)), np.ravel(class_ids))
    ]


class BoxSegmenter:
    """SAM 2 for boxes: the images of a call are encoded in one pass and every box of an image
    is decoded in one mask-decoder call (single-mask output)."""

    def __init__(
        self,
        sam2: Union[str, Path, SAM2Model],
        classes: Sequence[str],
        device: torch.device,
        bf16: bool = True,
        tighten_boxes: bool = False,
    ) -> None:
        """
        Arguments:
          sam2: checkpoint path, hub id, variant name, or a built :class:`segmenter.SAM2Model`.
          classes: class names, indexed by :attr:`BoxRequest.class_id`.
          device: where SAM 2 runs.
          bf16: bfloat16 autocast on CUDA.
          tighten_boxes: replace each box by the bounding box of its mask.
        """
        model = sam2 if isinstance(sam2, SAM2Model) else build_sam2(None, sam2, device=device)
        self.predictor = SAM2ImagePredictor(model.to(device), bf16=bf16)
        self.classes = list(classes)
        self.tighten_boxes = tighten_boxes

    @torch.no_grad()
    def segment(self, images: List[np.ndarray], requests: List[List[BoxRequest]]) -> List[sv.Detections]:
        """Detections for RGB uint8 images and their boxes (see :mod:`grounded_sam2.detections`):
        confidence = box confidence x SAM 2's predicted IoU, both factors kept in ``data``."""
        self.predictor.set_image_batch(images)
        results = []
        for i, (image, boxes) in enumerate(zip(images, requests)):
            h, w = image.shape[:2]
            if not boxes:
                results.append(empty_detections(h, w))
                continue
            xyxy = np.array([b.xyxy for b in boxes], np.float32)
            masks, iou, _ = self.predictor.predict_torch(boxes=torch.from_numpy(xyxy), multimask_output=False, img_idx=i)
            masks = masks[:, 0].cpu().numpy()
            class_ids = [b.class_id for b in boxes]
            results.append(make_detections(
                masks, class_ids, [self.classes[c] for c in class_ids], [b.prompt for b in boxes],
                grounding_confidence=[b.confidence for b in boxes], sam_iou=iou[:, 0].float().cpu().numpy(),
                xyxy=masks_to_xyxy(masks, fallback=xyxy) if self.tighten_boxes else xyxy,
            ))
        return results
