"""Every released variant against Meta's at a reduced input size: the random official-format
state dict loads strictly into both, and trunk and neck outputs agree."""

import pytest
import torch

import segmenter

from meta_reference import build_meta_model
from numerics import assert_close

INPUT_SIZE = 256  # stride-16 map 16x16: smaller than the 14/16 windows, so padding is exercised


@pytest.mark.parametrize("variant", list(segmenter.variants()))
@torch.no_grad()
def test_trunk_and_neck_match_meta(variant):
    config = segmenter.resolve_config(variant)
    state_dict = segmenter.random_state_dict(variant, seed=11)
    meta = build_meta_model(variant, state_dict)  # strict load: same keys and shapes
    ours = segmenter.build_model(config).eval()
    ours.load_state_dict(state_dict, strict=True)
    assert set(meta.state_dict()) == set(ours.state_dict())

    x = torch.randn(2, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    meta_levels = meta.image_encoder.trunk(x)
    ours_levels = ours.image_encoder.trunk(x)
    for i, (o, m) in enumerate(zip(ours_levels, meta_levels)):
        assert_close(o, m, f"{variant} trunk level {i}")
    meta_fpn, _ = meta.image_encoder.neck(meta_levels)
    for i, (o, m) in enumerate(zip(ours.image_encoder.neck(ours_levels), meta_fpn)):
        assert_close(o, m, f"{variant} neck level {i}")
