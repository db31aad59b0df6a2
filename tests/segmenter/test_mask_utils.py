"""RLE encoding of masks: uncompressed runs that decode back exactly and compress to the counts
pycocotools gives for the same mask."""

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from segmenter.mask_utils import coco_encode_rle, mask_to_rle, rle_area, rle_to_mask

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")


def _masks(name):
    h, w = 7, 5
    rng = np.random.default_rng(0)
    first_pixel = np.zeros((h, w), bool)
    first_pixel[0, 0] = True
    last_pixel = np.zeros((h, w), bool)
    last_pixel[-1, -1] = True
    return {
        "empty": np.zeros((1, h, w), bool),
        "full": np.ones((1, h, w), bool),
        "first pixel": first_pixel[None],
        "last pixel": last_pixel[None],
        "several, one empty in between": np.stack([first_pixel, np.zeros((h, w), bool), ~last_pixel]),
        "random": rng.random((6, h, w)) > 0.5,
    }[name]


@pytest.mark.parametrize("name", ["empty", "full", "first pixel", "last pixel", "several, one empty in between",
                                  "random"])
def test_rle_decodes_back_and_matches_pycocotools(name):
    masks = _masks(name)
    rles = mask_to_rle(torch.from_numpy(masks))
    assert len(rles) == len(masks)
    for mask, rle in zip(masks, rles):
        np.testing.assert_array_equal(rle_to_mask(rle), mask)
        assert rle_area(rle) == mask.sum()
        expected = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
        assert coco_encode_rle(rle)["counts"] == expected
