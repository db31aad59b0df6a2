"""Point/box/mask prompts to sv.Detections, and refinement with the previous answer."""

import numpy as np
import pytest

import segmenter
from grounded_sam2.prompts import detections_from_prompts


@pytest.fixture
def predictor(small_sam2):
    p = segmenter.SAM2ImagePredictor(small_sam2)
    img = np.zeros((60, 80, 3), np.uint8)
    img[10:50, 20:70] = (220, 120, 30)
    p.set_image(img)
    return p


def test_box_and_points_give_one_detection_each(predictor):
    d = detections_from_prompts(predictor, box=np.array([[5, 5, 60, 50], [20, 10, 75, 55]]))
    assert len(d) == 2 and d.mask.shape == (2, 60, 80) and d.mask.dtype == bool
    assert d.data["low_res_logits"].shape == (2, 64, 64)  # the 256-pixel test model's low-res size
    masks, scores, _ = predictor.predict(box=np.array([[5, 5, 60, 50], [20, 10, 75, 55]]), multimask_output=False)
    np.testing.assert_array_equal(d.mask, masks[:, 0] > 0.5)
    np.testing.assert_allclose(d.confidence, scores[:, 0])


def test_multimask_keeps_the_best_candidate(predictor):
    d = detections_from_prompts(predictor, point_coords=np.array([[40, 30]]), point_labels=np.array([1]),
                                multimask_output=True)
    masks, scores, logits = predictor.predict(np.array([[40, 30]]), np.array([1]), multimask_output=True)
    best = int(np.argmax(scores))
    assert len(d) == 1 and d.confidence[0] == pytest.approx(scores[best])
    np.testing.assert_array_equal(d.mask[0], masks[best] > 0.5)
    np.testing.assert_array_equal(d.data["low_res_logits"][0], logits[best])


def test_refinement_with_a_negative_point_and_the_previous_mask(predictor):
    first = detections_from_prompts(predictor, point_coords=np.array([[40, 30]]), point_labels=np.array([1]))
    refined = detections_from_prompts(
        predictor, point_coords=np.array([[40, 30], [65, 15]]), point_labels=np.array([1, 0]),
        mask_input=first.data["low_res_logits"][0][None],
    )
    expected, _, _ = predictor.predict(np.array([[40, 30], [65, 15]]), np.array([1, 0]),
                                       mask_input=first.data["low_res_logits"][0][None], multimask_output=False)
    np.testing.assert_array_equal(refined.mask[0], expected[0] > 0.5)
    if refined.mask[0].any():
        ys, xs = np.nonzero(refined.mask[0])
        np.testing.assert_allclose(refined.xyxy[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
