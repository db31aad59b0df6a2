"""The video-path modules (memory attention with RoPE, memory encoder) against Meta's, on
identical random weights at a reduced feature size."""

import pytest
import torch

import segmenter

from meta_reference import build_meta_model
from numerics import assert_close

SIDE = 16  # feature map side; Meta's RoPE recomputes its frequencies for it


@pytest.fixture(scope="module", params=["sam2_hiera_tiny", "sam2.1_hiera_tiny"])
def models(request):
    config = segmenter.resolve_config(request.param)
    state_dict = segmenter.random_state_dict(request.param, seed=4)
    meta = build_meta_model(request.param, state_dict)
    ours = segmenter.build_model(config).eval()
    ours.load_state_dict(state_dict, strict=True)
    return meta, ours


@pytest.mark.parametrize("num_frames, num_obj_ptr_tokens", [(1, 0), (3, 8)], ids=["1 frame", "3 frames + pointers"])
@torch.no_grad()
def test_memory_attention_matches(models, num_frames, num_obj_ptr_tokens):
    meta, ours = models
    gen = torch.Generator().manual_seed(num_frames)
    batch, n = 2, SIDE * SIDE
    curr = torch.randn(batch, n, 256, generator=gen)
    curr_pos = torch.randn(batch, n, 256, generator=gen)
    memory = torch.randn(batch, num_frames * n + num_obj_ptr_tokens, 64, generator=gen)
    memory_pos = torch.randn(batch, num_frames * n + num_obj_ptr_tokens, 64, generator=gen)
    ref = meta.memory_attention(
        curr=curr.transpose(0, 1), memory=memory.transpose(0, 1), curr_pos=curr_pos.transpose(0, 1),
        memory_pos=memory_pos.transpose(0, 1), num_obj_ptr_tokens=num_obj_ptr_tokens,
    ).transpose(0, 1)
    out = ours.memory_attention(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens=num_obj_ptr_tokens)
    assert_close(out, ref, "memory attention")


@pytest.mark.parametrize("skip_mask_sigmoid", [False, True])
@torch.no_grad()
def test_memory_encoder_matches(models, skip_mask_sigmoid):
    meta, ours = models
    gen = torch.Generator().manual_seed(9)
    pix_feat = torch.randn(2, 256, SIDE, SIDE, generator=gen)
    masks = torch.randn(2, 1, SIDE * 16, SIDE * 16, generator=gen) * 5
    ref = meta.memory_encoder(pix_feat, masks, skip_mask_sigmoid=skip_mask_sigmoid)
    out = ours.memory_encoder(pix_feat, masks, skip_mask_sigmoid=skip_mask_sigmoid)
    assert_close(out["vision_features"], ref["vision_features"], "memory features")
    assert_close(out["vision_pos_enc"], ref["vision_pos_enc"][0], "memory position encoding")
