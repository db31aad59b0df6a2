"""Point, box and mask prompts to ``sv.Detections``: refining a mask the way the article
describes (click, add a negative point, feed the previous mask back)."""

from typing import Optional

import numpy as np
import supervision as sv

from segmenter import SAM2ImagePredictor


def detections_from_prompts(
    predictor: SAM2ImagePredictor,
    point_coords: Optional[np.ndarray] = None,
    point_labels: Optional[np.ndarray] = None,
    box: Optional[np.ndarray] = None,
    mask_input: Optional[np.ndarray] = None,
    multimask_output: bool = False,
    class_id: int = 0,
) -> sv.Detections:
    """Masks for prompts on the image set on ``predictor`` (``set_image``), one detection per
    prompt: the best of the 3 candidates with ``multimask_output``.

    Arguments are :meth:`SAM2ImagePredictor.predict`'s: points Nx2 (x, y) pixels with labels 1
    (object) / 0 (background), an XYXY box (or Bx4 boxes), ``mask_input`` the 1x256x256 logits
    of an earlier answer. Returns xyxy (mask bounds), boolean mask, class_id, confidence (SAM 2's
    predicted IoU) and ``data["low_res_logits"]`` (Nx256x256): pass ``low_res_logits[i][None]``
    as the next ``mask_input`` to refine.
    """
    masks, scores, logits = predictor.predict(
        point_coords, point_labels, box, mask_input, multimask_output=multimask_output
    )
    if masks.ndim == 3:  # one prompt: CxHxW -> 1xCxHxW
        masks, scores, logits = masks[None], scores[None], logits[None]
    best = scores.argmax(axis=1)
    rows = np.arange(len(best))
    masks = masks[rows, best] > 0.5
    return sv.Detections(
        xyxy=sv.mask_to_xyxy(masks).astype(np.float32),
        mask=masks,
        class_id=np.full(len(best), class_id, dtype=int),
        confidence=scores[rows, best].astype(np.float32),
        data={"low_res_logits": logits[rows, best]},
    )
