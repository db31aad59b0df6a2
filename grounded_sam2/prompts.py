"""Point, box and mask prompts to ``sv.Detections``: refining a mask the way the article
describes (click, add a negative point, feed the previous mask back)."""

from typing import Optional

import numpy as np
import supervision as sv

from segmenter import SAM2ImagePredictor

from .detections import make_detections


def detections_from_prompts(
    predictor: SAM2ImagePredictor,
    point_coords: Optional[np.ndarray] = None,
    point_labels: Optional[np.ndarray] = None,
    box: Optional[np.ndarray] = None,
    mask_input: Optional[np.ndarray] = None,
    multimask_output: bool = False,
    class_id: int = 0,
    class_name: str = "object",
) -> sv.Detections:
    """Masks for prompts on the image set on ``predictor`` (``set_image``), one detection per
    prompt: the best of the 3 candidates with ``multimask_output``.

    Arguments are :meth:`SAM2ImagePredictor.predict`'s: points Nx2 (x, y) pixels with labels 1
    (object) / 0 (background), an XYXY box (or Bx4 boxes), ``mask_input`` the 1x256x256 logits
    of an earlier answer. Returns the schema of :mod:`grounded_sam2.detections` (xyxy: the
    masks' boxes; confidence and ``sam_iou``: SAM 2's predicted IoU; ``class_id`` and
    ``class_name`` as given) plus ``data["low_res_logits"]`` (Nx256x256): pass
    ``low_res_logits[i][None]`` as the next ``mask_input`` to refine.
    """
    masks, scores, logits = predictor.predict(
        point_coords, point_labels, box, mask_input, multimask_output=multimask_output
    )
    if masks.ndim == 3:  # one prompt: CxHxW -> 1xCxHxW
        masks, scores, logits = masks[None], scores[None], logits[None]
    best = scores.argmax(axis=1)
    rows = np.arange(len(best))
    n = len(best)
    return make_detections(
        masks[rows, best] > 0.5, [class_id] * n, [class_name] * n, [""] * n,
        grounding_confidence=np.ones(n), sam_iou=scores[rows, best], low_res_logits=logits[rows, best],
    )
