"""SAM 2's input preprocessing, prompt coordinate transforms and mask postprocessing.

Preprocessing equals Meta's: pixels / 255, antialiased bilinear resize of the whole image to the
model's square input (aspect ratio not kept), ImageNet mean/std normalisation. Postprocessing:
optional hole/sprinkle removal on the 256x256 logits (8-connected components, done with OpenCV
where Meta uses a CUDA extension), then bilinear upsampling straight to the original size.
"""

from typing import Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """HxWx3 RGB array (uint8, or float in [0, 1]) -> 3xHxW float32 in [0, 1] on ``device``.

    uint8 pixels travel to the device as bytes and are converted there."""
    if not rgb.flags.writeable:  # e.g. arrays backed by a PIL image; torch wants writable memory
        rgb = rgb.copy()
    tensor = torch.from_numpy(rgb).to(device).permute(2, 0, 1)
    if tensor.dtype == torch.uint8:
        return tensor.float().div(255)
    return tensor.float()


def preprocess(images: Sequence[torch.Tensor], resolution: int) -> torch.Tensor:
    """List of 3xHxW float images in [0, 1] (any sizes) -> Bx3xRxR normalised model input."""
    mean = torch.tensor(IMAGENET_MEAN, device=images[0].device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images[0].device).view(3, 1, 1)
    resized = [
        F.interpolate(img[None], (resolution, resolution), mode="bilinear", align_corners=False, antialias=True)[0]
        for img in images
    ]
    return (torch.stack(resized) - mean) / std


def transform_coords(
    coords: torch.Tensor, orig_hw: Tuple[int, int], resolution: int, normalize: bool = True
) -> torch.Tensor:
    """...x2 (x, y) coordinates -> pixels of the RxR model input.

    ``normalize=True``: coordinates are pixels of the original image (W, H = orig_hw[::-1]);
    ``normalize=False``: coordinates are already relative, in [0, 1]."""
    if normalize:
        h, w = orig_hw
        coords = coords / torch.tensor([w, h], dtype=coords.dtype, device=coords.device)
    return coords * resolution


def remove_small_regions(
    logits: torch.Tensor,
    threshold: float,
    max_hole_area: float,
    max_sprinkle_area: float,
    hole_value: float = 10.0,
) -> torch.Tensor:
    """Fill background components of at most ``max_hole_area`` pixels (set to threshold +
    ``hole_value``) and erase foreground components of at most ``max_sprinkle_area`` pixels
    (threshold - 10), in each ...xHxW logit map, with 8-connectivity. The defaults are Meta's
    ``SAM2Transforms.postprocess_masks``; its video predictor fills holes with 0.1."""
    flat = logits.detach().float().reshape(-1, *logits.shape[-2:]).cpu().numpy()
    out = flat.copy()
    for i, mask in enumerate(flat):
        if max_hole_area > 0:
            small = _small_components(mask <= threshold, max_hole_area)
            out[i][small] = threshold + hole_value
        if max_sprinkle_area > 0:
            small = _small_components(mask > threshold, max_sprinkle_area)
            out[i][small] = threshold - 10.0
    return torch.from_numpy(out).to(device=logits.device, dtype=logits.dtype).reshape(logits.shape)


def _small_components(binary: np.ndarray, max_area: float) -> np.ndarray:
    """Pixels of ``binary`` whose 8-connected component has at most ``max_area`` pixels."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    areas = stats[:, cv2.CC_STAT_AREA].copy()
    areas[0] = np.iinfo(areas.dtype).max  # label 0 is everything outside ``binary``
    return areas[labels] <= max_area


def postprocess_masks(
    low_res_logits: torch.Tensor,
    orig_hw: Tuple[int, int],
    threshold: float = 0.0,
    max_hole_area: float = 0.0,
    max_sprinkle_area: float = 0.0,
) -> torch.Tensor:
    """BxCx256x256 logits -> BxCxHxW float32 logits at the original image size."""
    logits = low_res_logits.float()
    if max_hole_area > 0 or max_sprinkle_area > 0:
        logits = remove_small_regions(logits, threshold, max_hole_area, max_sprinkle_area)
    return F.interpolate(logits, orig_hw, mode="bilinear", align_corners=False)
