"""The segmentation stage: one SAM 2 that every path shares. Boxes of images become masks
(:meth:`Segmenter.segment`), and the same model serves video tracking
(:meth:`Segmenter.video_predictor`) and automatic masks (:meth:`Segmenter.mask_generator`)."""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np
import supervision as sv
import torch

from segmenter import SAM2AutomaticMaskGenerator, SAM2ImagePredictor, SAM2Model, SAM2VideoPredictor, build_sam2
from segmenter.checkpoint import detect_variant
from segmenter.device import resolve_device

from .detections import empty_detections, make_detections, masks_to_xyxy

DEFAULT_SAM2 = "facebook/sam2.1-hiera-large"
PROMPTS_PER_DECODE = 64  # boxes (of all the images of a batch) per mask-decoder call: bounds its memory
SAM2Source = Union[str, Path, SAM2Model]


@dataclass(frozen=True)
class SegmenterConfig:
    """Which SAM 2, and how box masks are turned into detections."""

    sam2: SAM2Source = DEFAULT_SAM2  # checkpoint path, hub id, variant name, or a built model
    tighten_boxes: bool = False  # replace each box by the box of its mask

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able settings: the model as :func:`model_source` records it."""
        return {"sam2": model_source(self.sam2), "tighten_boxes": self.tighten_boxes}


def model_source(sam2: SAM2Source) -> Union[str, Dict[str, Any]]:
    """How a dataset's manifest names a SAM 2: a local file by its absolute path (so that one file
    named two ways is the same), a hub id or variant name as given, a built model by its variant,
    input size and a SHA-256 of its weights (never its repr)."""
    if isinstance(sam2, SAM2Model):
        state_dict = sam2.state_dict()
        return {"variant": detect_variant(state_dict, "the model").name, "image_size": sam2.image_size,
                "weights_sha256": weights_checksum(state_dict)}
    path = Path(sam2).expanduser()
    return str(path.resolve()) if path.exists() else str(sam2)


def weights_checksum(state_dict: Dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, shapes, dtypes and bytes of every tensor, in order."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class BoxRequest:
    """A box to segment: XYXY in continuous pixel coordinates of its image (see
    :mod:`grounded_sam2.detections`), its class and where it came from."""

    xyxy: Tuple[float, float, float, float]
    class_id: int
    class_name: str
    confidence: float = 1.0  # of the box itself (grounding); 1 for given boxes
    prompt: str = ""


def given_box_requests(xyxy, class_ids, classes: Sequence[str]) -> List[BoxRequest]:
    """Requests for boxes a user or dataset already has: Nx4 XYXY pixels and N class ids
    (indexes of ``classes``), confidence 1, the class name as prompt."""
    return [
        BoxRequest(tuple(map(float, box)), int(c), classes[int(c)], 1.0, classes[int(c)])
        for box, c in zip(np.reshape(xyxy, (-1, 4)), np.ravel(class_ids))
    ]


class Segmenter:
    """SAM 2 for boxes: the images of a call are encoded in one pass and their boxes decoded
    together, across images (single-mask output)."""

    def __init__(self, config: SegmenterConfig = SegmenterConfig(), device=None, bf16: bool = True) -> None:
        """
        Arguments:
          config: the model and box options.
          device: where SAM 2 runs; None picks CUDA, then MPS, then CPU.
          bf16: bfloat16 autocast on CUDA.
        """
        self.config = config
        self.device = resolve_device(device)
        self.bf16 = bf16
        sam2 = config.sam2
        self.model = sam2.to(self.device) if isinstance(sam2, SAM2Model) else build_sam2(None, sam2, device=self.device)
        self.predictor = SAM2ImagePredictor(self.model, bf16=bf16)
        self._description = None

    def describe(self) -> Dict[str, Any]:
        """The settings that decide the masks, for a dataset's manifest (computed once)."""
        if self._description is None:
            self._description = self.config.to_dict()
        return self._description

    @torch.no_grad()
    def segment(self, images: List[np.ndarray], requests: List[List[BoxRequest]]) -> List[sv.Detections]:
        """Detections for RGB uint8 images and their boxes (see :mod:`grounded_sam2.detections`):
        confidence = box confidence x SAM 2's predicted IoU, both factors kept in ``data``. The
        boxes of all the images are decoded together, :data:`PROMPTS_PER_DECODE` per mask-decoder
        call."""
        self.predictor.set_image_batch(images)
        flat = [(i, box) for i, boxes in enumerate(requests) for box in boxes]
        masks: List[List[np.ndarray]] = [[] for _ in images]
        ious: List[List[np.ndarray]] = [[] for _ in images]
        for start in range(0, len(flat), PROMPTS_PER_DECODE):
            chunk = flat[start : start + PROMPTS_PER_DECODE]
            image_ids = torch.tensor([i for i, _ in chunk])
            per_image, iou, _ = self.predictor.predict_torch(
                boxes=torch.from_numpy(np.array([box.xyxy for _, box in chunk], np.float32)),
                multimask_output=False, img_idx=image_ids,
            )
            iou = iou[:, 0].float().cpu().numpy()
            for i, image_masks in enumerate(per_image):
                if len(image_masks):
                    masks[i].append(image_masks[:, 0].cpu().numpy())
                    ious[i].append(iou[(image_ids == i).numpy()])
        return [self._detections(image, boxes, image_masks, image_ious)
                for image, boxes, image_masks, image_ious in zip(images, requests, masks, ious)]

    def _detections(self, image: np.ndarray, boxes: List[BoxRequest], masks: List[np.ndarray],
                    ious: List[np.ndarray]) -> sv.Detections:
        """One image's detections from its decoded masks (pieces in box order)."""
        if not boxes:
            return empty_detections(*image.shape[:2])
        masks = np.concatenate(masks)
        xyxy = np.array([b.xyxy for b in boxes], np.float32)
        return make_detections(
            masks, [b.class_id for b in boxes], [b.class_name for b in boxes], [b.prompt for b in boxes],
            grounding_confidence=[b.confidence for b in boxes], sam_iou=np.concatenate(ious),
            xyxy=masks_to_xyxy(masks, fallback=xyxy) if self.config.tighten_boxes else xyxy,
        )

    def video_predictor(self) -> SAM2VideoPredictor:
        """A video predictor over this model (same weights, device and precision)."""
        return SAM2VideoPredictor(self.model, bf16=self.bf16)

    def mask_generator(self, **options: Any) -> SAM2AutomaticMaskGenerator:
        """An automatic mask generator over this model; ``options`` are its arguments."""
        return SAM2AutomaticMaskGenerator(self.model, bf16=self.bf16, **options)


def automatic_detections(records: List[dict], image_hw: Tuple[int, int]) -> sv.Detections:
    """Automatic mask generator records (binary masks) -> detections of the class ``object``,
    in their order; boxes are the masks' (a record's own ``bbox`` is Meta's, one pixel short)."""
    if not records:
        return empty_detections(*image_hw)
    n = len(records)
    return make_detections(
        np.stack([r["segmentation"] for r in records]), [0] * n, ["object"] * n, [""] * n,
        grounding_confidence=np.ones(n), sam_iou=[r["predicted_iou"] for r in records],
    )
