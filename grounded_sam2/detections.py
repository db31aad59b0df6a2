"""The one place that makes ``sv.Detections``: one ``data`` schema and one box convention.

Boxes
-----
Every box this package takes or returns is XYXY in continuous pixel coordinates: pixel
(column i, row j) covers [i, i + 1) x [j, j + 1). The box of a mask covering columns 3 to 5 is
x0 = 3, x1 = 6, so x1 - x0 is the mask's width in pixels, which is what a COCO ``bbox`` needs.
:func:`masks_to_xyxy` is the one function that gives a mask's box; grounding boxes (Florence-2's
location bins) are in the same coordinates.

``data``
--------
Every result has the same keys, an empty one too (:data:`DATA_KEYS`):

- ``class_name`` (str): the class of ``class_id``;
- ``prompt`` (str): the text prompt that found the object; the class name for boxes you give,
  ``""`` where no text was involved (point prompts, automatic masks);
- ``grounding_confidence`` (float32): the grounding model's confidence in the box; 1 where the
  box or prompt was not grounded (boxes you give, point prompts, automatic masks);
- ``sam_iou`` (float32): SAM 2's predicted IoU of the mask; NaN where SAM 2 gives none (frames
  tracked by the video predictor).

``confidence`` is ``grounding_confidence * sam_iou``, except on tracked video frames, where it is
the grounding confidence of the box that started or last confirmed the track.
"""

from typing import Optional, Sequence

import numpy as np
import supervision as sv

from .errors import SettingsError

DATA_KEYS = ("class_name", "prompt", "grounding_confidence", "sam_iou")


def masks_to_xyxy(masks: np.ndarray, fallback: Optional[np.ndarray] = None) -> np.ndarray:
    """The tight box of each of N HxW masks (non-zero = inside) as an Nx4 float32 XYXY array in
    continuous pixel coordinates (see the module docstring). An empty mask gets its row of
    ``fallback`` (Nx4), or zeros without one."""
    masks = np.asarray(masks).astype(bool, copy=False)
    if masks.ndim != 3:
        raise SettingsError(f"masks must be NxHxW, got shape {masks.shape}")
    _, height, width = masks.shape
    columns, rows = masks.any(axis=1), masks.any(axis=2)
    boxes = np.stack([
        columns.argmax(axis=1), rows.argmax(axis=1),
        width - columns[:, ::-1].argmax(axis=1), height - rows[:, ::-1].argmax(axis=1),
    ], axis=1).astype(np.float32)
    empty = ~columns.any(axis=1)
    boxes[empty] = 0.0 if fallback is None else np.asarray(fallback, np.float32).reshape(-1, 4)[empty]
    return boxes


def make_detections(
    mask: np.ndarray,
    class_id: Sequence[int],
    class_name: Sequence[str],
    prompt: Sequence[str],
    grounding_confidence: Sequence[float],
    sam_iou: Sequence[float],
    xyxy: Optional[np.ndarray] = None,
    confidence: Optional[Sequence[float]] = None,
    tracker_id: Optional[Sequence[int]] = None,
    **extra_data: np.ndarray,
) -> sv.Detections:
    """Detections of N objects with the schema of the module docstring.

    Arguments:
      mask: NxHxW boolean masks at the image's size (N may be 0).
      class_id, class_name, prompt, grounding_confidence, sam_iou: N values each.
      xyxy: Nx4 boxes (continuous pixel XYXY); None: the masks' boxes (:func:`masks_to_xyxy`).
      confidence: N values; None: ``grounding_confidence * sam_iou``.
      tracker_id: N track ids (video), or None.
      extra_data: further per-object arrays for ``data``, beyond the fixed keys.
    """
    mask = np.asarray(mask).astype(bool, copy=False)
    if mask.ndim != 3:
        raise SettingsError(f"mask must be NxHxW, got shape {mask.shape}")
    n = len(mask)
    grounding_confidence = np.asarray(grounding_confidence, np.float32).reshape(n)
    sam_iou = np.asarray(sam_iou, np.float32).reshape(n)
    confidence = grounding_confidence * sam_iou if confidence is None else np.asarray(confidence, np.float32).reshape(n)
    return sv.Detections(
        xyxy=masks_to_xyxy(mask) if xyxy is None else np.asarray(xyxy, np.float32).reshape(n, 4),
        mask=mask,
        class_id=np.asarray(class_id, int).reshape(n),
        confidence=confidence,
        tracker_id=None if tracker_id is None else np.asarray(tracker_id, int).reshape(n),
        data={
            "class_name": np.array(list(class_name), dtype=object).reshape(n),
            "prompt": np.array(list(prompt), dtype=object).reshape(n),
            "grounding_confidence": grounding_confidence,
            "sam_iou": sam_iou,
            **extra_data,
        },
    )


def empty_detections(height: int, width: int, tracked: bool = False) -> sv.Detections:
    """No object: masks shaped (0, H, W) and the same ``data`` keys as any other result;
    ``tracked`` gives an empty ``tracker_id`` too, as video frames have."""
    return make_detections(np.zeros((0, height, width), bool), [], [], [], [], [], tracker_id=[] if tracked else None)
