"""The segmentation stage: the boxes of several images decoded together, across images, give
each image the masks it gets alone."""

import numpy as np
import pytest
import torch

from grounded_sam2 import segmentation
from grounded_sam2.segmentation import BoxRequest, Segmenter, SegmenterConfig

IMAGES = [(120, 160), (90, 70), (64, 64)]  # heights and widths: the images differ in size
BOXES = [[(10, 10, 80, 90), (40, 5, 150, 110), (0, 0, 160, 120)], [], [(5, 8, 60, 50), (20, 20, 40, 40)]]


def _requests(boxes):
    return [BoxRequest(tuple(map(float, b)), j % 2, ["a", "b"][j % 2], 0.5 + 0.1 * j, "p") for j, b in enumerate(boxes)]


@pytest.fixture(scope="module")
def segmenter(small_sam2):
    torch.set_num_threads(1)
    return Segmenter(SegmenterConfig(small_sam2), "cpu", bf16=False)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in IMAGES]


@pytest.mark.parametrize("prompts_per_decode", [64, 2, 1], ids=lambda n: f"{n} per decoder call")
def test_boxes_of_several_images_decode_as_each_image_alone(segmenter, images, monkeypatch, prompts_per_decode):
    together = segmenter.segment(images, [_requests(b) for b in BOXES])  # before the patch: default chunks
    monkeypatch.setattr(segmentation, "PROMPTS_PER_DECODE", prompts_per_decode)
    chunked = segmenter.segment(images, [_requests(b) for b in BOXES])
    for i, (image, boxes) in enumerate(zip(images, BOXES)):
        [alone] = segmenter.segment([image], [_requests(boxes)])
        for detections in (together[i], chunked[i]):
            assert len(detections) == len(boxes)
            assert detections.mask.shape == (len(boxes), *image.shape[:2])
            np.testing.assert_array_equal(detections.mask, alone.mask)
            np.testing.assert_array_equal(detections.class_id, alone.class_id)
            np.testing.assert_allclose(detections.confidence, alone.confidence, rtol=1e-5, atol=1e-6)
    assert together[0].mask.any()  # random weights still draw something
