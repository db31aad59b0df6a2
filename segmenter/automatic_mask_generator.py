"""SAM2AutomaticMaskGenerator: segment everything by prompting SAM 2 with a grid of points.

Meta's constructor arguments, defaults, behaviour and output records, so that
``sv.Detections.from_sam(generator.generate(image))`` works unchanged. Per crop (the whole image,
plus overlapping crops with ``crop_n_layers``): points in batches of ``points_per_batch``, every
point a prompt of one mask-decoder call; masks filtered by predicted IoU and stability score,
optionally refined once with their own low-res logits (``use_m2m``); masks cut by a crop edge
dropped; NMS inside each crop (by predicted IoU), then across crops preferring smaller crops.
``min_mask_region_area`` fills holes and removes specks up to that area on the low-res logits
(with OpenCV, where Meta needs its CUDA extension).

Fast path (``fast_path``, on by default on CUDA, where the predictor also runs in bfloat16
autocast unless ``bf16=False``): the crops of the image are encoded in image-encoder passes of up
to CROPS_PER_ENCODER_PASS crops (all of them for one crop layer), and
the points of all crops, each prompting its own crop's embedding, go through the mask decoder
together: as many per call as half the device's free memory holds, every point costed at the
largest crop (at least ``points_per_batch``; a call may span crops). ``use_m2m`` refines all masks
of a call in one more call. Filtering, edge removal and both NMS steps are as above, per crop, so
records and their order are those of the normal path (the default on CPU: Meta's order of work,
one crop after the other, ``points_per_batch`` points per call); larger batched products round
differently, so a pixel at the decision boundary may flip.
"""

from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from .errors import SettingsError
from .image_io import ImageInput, load_rgb
from .mask_utils import (
    box_area,
    box_near_crop_edge,
    build_point_grids,
    coco_encode_rle,
    generate_crop_boxes,
    mask_to_rle,
    masks_to_boxes,
    nms,
    rle_area,
    rle_to_mask,
    stability_scores,
)
from .modeling.sam2 import SAM2Model
from .predictor import SAM2ImagePredictor

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
CROPS_PER_ENCODER_PASS = 5  # the fast path encodes crops in passes of at most this many (1 + 4 for one crop layer)


class SAM2AutomaticMaskGenerator:
    """Generates masks for everything in an image."""

    def __init__(
        self,
        model: SAM2Model,
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[List[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        use_m2m: bool = False,
        multimask_output: bool = True,
        bf16: bool = True,
        fast_path: Optional[bool] = None,
    ) -> None:
        """Arguments as Meta's (see the module docstring); ``point_grids`` replaces
        ``points_per_side`` with one Nx2 grid in [0, 1] per crop layer; ``bf16`` is the
        predictor's CUDA autocast switch; ``fast_path`` encodes all crops at once and decodes their
        points in as few calls as memory allows (None: on for CUDA only)."""
        if (points_per_side is None) == (point_grids is None):
            raise SettingsError("Exactly one of points_per_side or point_grids must be provided.")
        if output_mode not in OUTPUT_MODES:
            raise SettingsError(f"Unknown output_mode {output_mode!r}; expected one of {OUTPUT_MODES}")
        if points_per_batch < 1:
            raise SettingsError("points_per_batch must be at least 1")
        self.point_grids = (
            build_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
            if points_per_side is not None else list(point_grids)
        )
        if len(self.point_grids) < crop_n_layers + 1:
            raise SettingsError(f"point_grids needs one grid per crop layer ({crop_n_layers + 1})")
        self.predictor = SAM2ImagePredictor(
            model, max_hole_area=min_mask_region_area, max_sprinkle_area=min_mask_region_area, bf16=bf16
        )
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.mask_threshold = mask_threshold
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.use_m2m = use_m2m
        self.multimask_output = multimask_output
        self.fast_path = self.predictor.device.type == "cuda" if fast_path is None else fast_path

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs) -> "SAM2AutomaticMaskGenerator":
        """Generator for a hub id such as ``"facebook/sam2.1-hiera-large"``."""
        from .build_sam import build_sam2_hf

        build_keys = {"device", "mode", "apply_postprocessing"}
        model = build_sam2_hf(model_id, **{k: v for k, v in kwargs.items() if k in build_keys})
        return cls(model, **{k: v for k, v in kwargs.items() if k not in build_keys})

    @torch.no_grad()
    def generate(
        self, image: ImageInput, progress: Optional[Callable[[int, int], None]] = None
    ) -> List[Dict[str, Any]]:
        """Masks for everything in an RGB image (HxWx3 uint8 array, PIL image or path).

        Returns one record per mask, as Meta's: ``segmentation`` (HxW bool array, or an RLE dict
        for the RLE output modes), ``area`` (pixels), ``bbox`` (XYWH), ``predicted_iou``,
        ``point_coords`` ([[x, y]]), ``stability_score`` and ``crop_box`` (XYWH). ``progress``, if
        given, is called after each decoder call with (point prompts done, point prompts in all)."""
        image = load_rgb(image)
        data = self._generate_masks(image, progress)
        records = []
        for i, rle in enumerate(data["rles"]):
            if self.output_mode == "coco_rle":
                segmentation = coco_encode_rle(rle)
            elif self.output_mode == "binary_mask":
                segmentation = rle_to_mask(rle)
            else:
                segmentation = rle
            records.append({
                "segmentation": segmentation,
                "area": rle_area(rle),
                "bbox": _xywh(data["boxes"][i]),
                "predicted_iou": data["iou_preds"][i].item(),
                "point_coords": [data["points"][i].tolist()],
                "stability_score": data["stability_score"][i].item(),
                "crop_box": _xywh(data["crop_boxes"][i]),
            })
        return records

    def _generate_masks(self, image: np.ndarray, progress: Optional[Callable[[int, int], None]]) -> Dict[str, Any]:
        crop_boxes, layers = generate_crop_boxes(image.shape[:2], self.crop_n_layers, self.crop_overlap_ratio)
        total, done = sum(len(self.point_grids[layer]) for layer in layers), [0]

        def decoded(points: int) -> None:
            done[0] += points
            if progress is not None:
                progress(done[0], total)

        if self.fast_path:
            crops = self._process_crops(image, crop_boxes, layers, decoded)
        else:  # Meta's order of work: one crop after the other
            crops = [self._process_crops(image, [box], [layer], decoded)[0] for box, layer in zip(crop_boxes, layers)]
        data = _cat(crops)
        if len(crop_boxes) > 1:  # duplicates between crops: prefer masks from smaller crops
            keep = nms(data["boxes"], 1 / box_area(data["crop_boxes"]).float(), self.crop_nms_thresh)
            data = _select(data, keep)
        return data

    def _process_crops(
        self, image: np.ndarray, crop_boxes: List[List[int]], layers: List[int], decoded: Callable[[int], None]
    ) -> List[Dict[str, Any]]:
        """The masks of each crop: the crops encoded in passes of CROPS_PER_ENCODER_PASS, the points of all
        of them decoded in calls of :meth:`_points_per_call` points (a call may span crops), NMS inside each
        crop."""
        crops = [image[y0:y1, x0:x1] for x0, y0, x1, y1 in crop_boxes]
        self.predictor.set_image_batch(crops, images_per_pass=CROPS_PER_ENCODER_PASS)
        points = [self._crop_points(box, layer) for box, layer in zip(crop_boxes, layers)]
        image_ids = torch.repeat_interleave(torch.arange(len(points)), torch.tensor([len(p) for p in points]))
        points = np.concatenate(points)
        step = self._points_per_call(max((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in crop_boxes), len(points))
        parts: List[List[Dict[str, Any]]] = [[] for _ in crop_boxes]
        for i in range(0, len(points), step):
            batch = self._process_batch(points[i : i + step], image_ids[i : i + step], crop_boxes, image.shape[:2])
            for crop, data in batch.items():
                parts[crop].append(data)
            decoded(len(points[i : i + step]))
        self.predictor.reset_predictor()
        return [self._crop_nms(_cat(crop_parts), box) for crop_parts, box in zip(parts, crop_boxes)]

    def _crop_points(self, crop_box: List[int], layer: int) -> np.ndarray:
        """The point grid of ``layer`` in pixels of the crop: Nx2 (x, y)."""
        x0, y0, x1, y1 = crop_box
        return self.point_grids[layer] * np.array([x1 - x0, y1 - y0])[None]

    def _crop_nms(self, data: Dict[str, Any], crop_box: List[int]) -> Dict[str, Any]:
        """NMS inside a crop by predicted IoU, then boxes and points moved into image pixels."""
        data = _select(data, nms(data["boxes"], data["iou_preds"], self.box_nms_thresh))
        x0, y0 = crop_box[:2]
        offset = torch.tensor([x0, y0, x0, y0])
        data["boxes"] = data["boxes"] + offset
        data["points"] = data["points"] + offset[:2]
        data["crop_boxes"] = torch.tensor([crop_box] * len(data["rles"]), dtype=torch.long).reshape(-1, 4)
        return data

    def _process_batch(
        self, points: np.ndarray, image_ids: torch.Tensor, crop_boxes: List[List[int]], image_hw: Tuple[int, int]
    ) -> Dict[int, Dict[str, Any]]:
        """Decode Px2 points in crop pixels, point i on crop ``image_ids[i]`` (an index into
        ``crop_boxes`` and into the images set), in one decoder call; return the filtered masks of
        each crop of the batch, by crop index, in point order."""
        device = self.predictor.device
        points = torch.as_tensor(points, dtype=torch.float32, device=device)
        image_ids = image_ids.to(device)
        labels = torch.ones((len(points), 1), dtype=torch.int32, device=device)
        masks, iou, low_res = self.predictor.predict_torch(
            points[:, None], labels, multimask_output=self.multimask_output, return_logits=True, img_idx=image_ids
        )
        per_point = iou.shape[1]
        points = points.repeat_interleave(per_point, dim=0)
        image_ids = image_ids.repeat_interleave(per_point)
        iou = iou.flatten(0, 1)
        masks = [m.flatten(0, 1) for m in masks]
        if self.use_m2m:  # one refinement step with each mask's own low-res logits as mask prompt
            masks, iou = self._refine_with_m2m(points, low_res.flatten(0, 1), image_ids)
        batch: Dict[int, Dict[str, Any]] = {}
        for crop in image_ids.unique().tolist():
            rows = image_ids == crop
            data = {"masks": masks[crop], "iou_preds": iou[rows], "points": points[rows]}
            batch[crop] = self._filter_masks(data, crop_boxes[crop], image_hw)
        return batch

    def _filter_masks(self, data: Dict[str, Any], crop_box: List[int], image_hw: Tuple[int, int]) -> Dict[str, Any]:
        """Masks of one crop kept by the IoU and stability thresholds and not cut by the crop's
        edge, as RLEs of the whole image, with their boxes (crop pixels) and scores, on the CPU."""
        if self.pred_iou_thresh > 0.0:
            data = _select(data, data["iou_preds"] > self.pred_iou_thresh)
        data["stability_score"] = stability_scores(data["masks"], self.mask_threshold, self.stability_score_offset)
        if self.stability_score_thresh > 0.0:
            data = _select(data, data["stability_score"] >= self.stability_score_thresh)

        masks = data.pop("masks") > self.mask_threshold
        data["boxes"] = masks_to_boxes(masks)
        h, w = image_hw
        keep = ~box_near_crop_edge(data["boxes"], crop_box, [0, 0, w, h])
        if not bool(keep.all()):
            data = _select(data, keep)
            masks = masks[keep]
        x0, y0, x1, y1 = crop_box
        masks = torch.nn.functional.pad(masks, (x0, w - x1, y0, h - y1))  # back into the whole image
        data["rles"] = mask_to_rle(masks)
        return {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in data.items()}

    def _points_per_call(self, crop_pixels: int, num_points: int) -> int:
        """``points_per_batch``, or on the fast path as many points as half the free device memory
        holds (decoder activations plus the full-size logits of every mask of a point), with every
        point costed at ``crop_pixels``, the area of the largest crop."""
        if not self.fast_path:
            return self.points_per_batch
        masks_per_point = 3 if self.multimask_output else 1
        prompts_per_point = masks_per_point if self.use_m2m else 1  # m2m decodes every mask again
        decoder_bytes = prompts_per_point * 16 * 2**20  # image-token activations of a prompt in the transformer
        logits_bytes = masks_per_point * crop_pixels * 4 * 3  # logits, threshold, padding
        fits = int(0.5 * _free_memory(self.predictor.device) // (decoder_bytes + logits_bytes))
        return max(self.points_per_batch, min(num_points, fits))

    def _refine_with_m2m(
        self, points: torch.Tensor, low_res: torch.Tensor, image_ids: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Decode each of M masks again from its point and its own Mx256x256 low-res logits, on its
        image (``image_ids``, M), in calls of ``points_per_batch`` masks (all at once on the fast
        path): the refined full-size logits per image set, as :meth:`predict_torch` with image
        indices returns them, and the M IoUs."""
        masks, ious = [], []
        labels = torch.ones((len(points), 1), dtype=torch.int32, device=points.device)
        step = self.points_per_batch if not self.fast_path else len(points)
        for i in range(0, len(points), step):
            batch = slice(i, i + step)
            m, iou, _ = self.predictor.predict_torch(
                points[batch, None], labels[batch], mask_input=low_res[batch, None],
                multimask_output=False, return_logits=True, img_idx=image_ids[batch],
            )
            masks.append([per_image[:, 0] for per_image in m])
            ious.append(iou[:, 0])
        return [torch.cat(per_image) for per_image in zip(*masks)], torch.cat(ious)


def _free_memory(device: torch.device) -> int:
    """Bytes free on ``device``: CUDA's own count, else the available system memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import os

    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _select(data: Dict[str, Any], keep: torch.Tensor) -> Dict[str, Any]:
    """The entries of every field at ``keep`` (a boolean mask or indices, order kept)."""
    keep = keep.cpu() if keep.dtype != torch.bool else keep
    out = {}
    for key, value in data.items():
        if isinstance(value, torch.Tensor):
            out[key] = value[keep.to(value.device)]
        else:
            indices = keep.nonzero().flatten() if keep.dtype == torch.bool else keep
            out[key] = [value[int(i)] for i in indices]
    return out


def _cat(parts: List[Dict[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        out[key] = torch.cat(values) if isinstance(values[0], torch.Tensor) else sum(values, [])
    return out


def _xywh(box: torch.Tensor) -> List:
    x0, y0, x1, y1 = box.tolist()
    return [x0, y0, x1 - x0, y1 - y0]
