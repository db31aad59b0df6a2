"""Pure helpers of the automatic mask generator: point grids, crop boxes, mask boxes,
stability scores, non-maximum suppression and run-length encoding. Torch and numpy only
(no torchvision); pycocotools only for compressed COCO RLE, imported when asked for."""

import math
from itertools import product
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

Rle = Dict[str, Any]  # uncompressed COCO RLE: {"size": [h, w], "counts": [zeros, ones, zeros, ...]}


def build_point_grid(n_per_side: int) -> np.ndarray:
    """n^2 x 2 (x, y) points in [0, 1], cell centres of an n x n grid, x varying fastest."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> List[np.ndarray]:
    """One grid per crop layer; layer i has n_per_side / scale_per_layer**i points per side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    image_hw: Tuple[int, int], n_layers: int, overlap_ratio: float
) -> Tuple[List[List[int]], List[int]]:
    """XYXY crop boxes and their layer: the whole image, then (2**i)^2 overlapping crops for
    layer i = 1..n_layers."""
    h, w = image_hw
    boxes, layers = [[0, 0, w, h]], [0]
    for layer in range(1, n_layers + 1):
        n = 2**layer
        overlap = int(overlap_ratio * min(h, w) * (2 / n))
        crop_w = int(math.ceil((overlap * (n - 1) + w) / n))
        crop_h = int(math.ceil((overlap * (n - 1) + h) / n))
        x0s = [int((crop_w - overlap) * i) for i in range(n)]
        y0s = [int((crop_h - overlap) * i) for i in range(n)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, w), min(y0 + crop_h, h)])
            layers.append(layer)
    return boxes, layers


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """...xHxW boolean masks -> ...x4 XYXY boxes of inclusive pixel indices; [0, 0, 0, 0] for
    an empty mask."""
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, device=masks.device, dtype=torch.long)
    h, w = masks.shape[-2:]

    def extent(occupied: torch.Tensor, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
        coords = torch.arange(size, device=occupied.device)
        first = torch.where(occupied, coords, size).amin(-1)
        last = torch.where(occupied, coords, -1).amax(-1)
        return first, last

    y0, y1 = extent(masks.any(-1), h)
    x0, x1 = extent(masks.any(-2), w)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1)
    empty = (x1 < x0).unsqueeze(-1)
    return torch.where(empty, torch.zeros_like(boxes), boxes)


def stability_scores(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks thresholded at mask_threshold + offset and mask_threshold - offset
    (the first is inside the second): ...xHxW -> ..."""
    inner = (logits > mask_threshold + offset).sum((-1, -2), dtype=torch.int32)
    outer = (logits > mask_threshold - offset).sum((-1, -2), dtype=torch.int32)
    return inner / outer


def box_near_crop_edge(
    boxes: torch.Tensor, crop_box: Sequence[int], image_box: Sequence[int], atol: float = 20.0
) -> torch.Tensor:
    """Boxes (crop coordinates, Nx4) within ``atol`` of an edge of their crop that is not an
    edge of the image: masks likely cut by the crop."""
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    image = torch.as_tensor(image_box, dtype=torch.float, device=boxes.device)
    boxes = (boxes + crop[[0, 1, 0, 1]]).float()
    near_crop = torch.isclose(boxes, crop[None], atol=atol, rtol=0)
    near_image = torch.isclose(boxes, image[None], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of the kept boxes, highest score first (ties in
    index order), dropping every box whose IoU with a kept box exceeds ``iou_threshold``.
    Same rule and order as torchvision's ``nms``."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    boxes = boxes.float()
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order]
    area = box_area(b)
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    iou = inter / (area[:, None] + area[None, :] - inter)
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    keep = []
    overlaps = (iou > iou_threshold).cpu()
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlaps[i].to(suppressed.device)
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def mask_to_rle(masks: torch.Tensor) -> List[Rle]:
    """BxHxW boolean masks -> uncompressed COCO RLEs (column-major runs, zeros first)."""
    b, h, w = masks.shape
    flat = masks.permute(0, 2, 1).flatten(1)
    changes = (flat[:, 1:] ^ flat[:, :-1]).nonzero()  # sorted by mask
    per_mask = torch.bincount(changes[:, 0], minlength=b).tolist()
    rles = []
    for i, idx in enumerate(torch.split(changes[:, 1] + 1, per_mask)):
        bounds = torch.cat([idx.new_zeros(1), idx, idx.new_full((1,), h * w)])
        runs = (bounds[1:] - bounds[:-1]).tolist()
        rles.append({"size": [h, w], "counts": ([0] if flat[i, 0] else []) + runs})
    return rles


def rle_to_mask(rle: Rle) -> np.ndarray:
    """Uncompressed RLE -> HxW boolean mask."""
    h, w = rle["size"]
    values = np.zeros(len(rle["counts"]), bool)
    values[1::2] = True
    return np.repeat(values, rle["counts"]).reshape(w, h).T


def rle_area(rle: Rle) -> int:
    return int(sum(rle["counts"][1::2]))


def coco_encode_rle(rle: Rle) -> Rle:
    """Uncompressed RLE -> compressed COCO RLE (``counts`` a string), via pycocotools."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError as e:
        raise ImportError("output_mode='coco_rle' needs pycocotools: pip install pycocotools") from e
    h, w = rle["size"]
    encoded = mask_utils.frPyObjects(rle, h, w)
    encoded["counts"] = encoded["counts"].decode("utf-8")
    return encoded
