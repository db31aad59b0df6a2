"""Identity with Meta's SAM 2 on identical random weights, tiny variants at full 1024 resolution:
stage by stage (trunk, neck, embeddings, prompt encodings) and end to end (predictor outputs)."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

import segmenter
from segmenter.transforms import preprocess, to_tensor

from meta_reference import build_meta_model, import_meta_sam2
from numerics import assert_close, assert_masks_match

TINY_VARIANTS = ["sam2_hiera_tiny", "sam2.1_hiera_tiny"]


def synthetic_image(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth blobs plus noise: structure at several scales, uint8 RGB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.zeros((h, w, 3))
    for _ in range(6):
        cy, cx, r = rng.random(), rng.random(), 0.05 + 0.2 * rng.random()
        img += rng.random(3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r**2)[..., None]
    img = img / img.max() * 200 + rng.random((h, w, 3)) * 55
    return img.astype(np.uint8)


@dataclass
class Pair:
    meta_model: torch.nn.Module
    ours_model: segmenter.SAM2Model
    meta: object  # Meta's SAM2ImagePredictor, image set
    ours: segmenter.SAM2ImagePredictor
    image: np.ndarray


@pytest.fixture(scope="module", params=TINY_VARIANTS, ids=str)
def pair(request) -> Pair:
    sam2 = import_meta_sam2()
    state_dict = segmenter.random_state_dict(request.param, seed=7)
    meta_model = build_meta_model(request.param, state_dict)
    ours_model = segmenter.build_model(segmenter.resolve_config(request.param)).eval()
    ours_model.load_state_dict(state_dict, strict=True)
    image = synthetic_image(480, 640, seed=1)  # non-square
    meta = sam2.sam2_image_predictor.SAM2ImagePredictor(meta_model)
    ours = segmenter.SAM2ImagePredictor(ours_model)
    meta.set_image(image)
    ours.set_image(image)
    return Pair(meta_model, ours_model, meta, ours, image)


@torch.no_grad()
def test_preprocessing_matches(pair):
    ref = pair.meta._transforms(pair.image)[None]
    ours = preprocess([to_tensor(pair.image, torch.device("cpu"))], 1024)
    assert_close(ours, ref, "preprocessed image", rel=1e-6)


@torch.no_grad()
def test_trunk_and_neck_match(pair):
    x = pair.meta._transforms(pair.image)[None]
    meta_levels = pair.meta_model.image_encoder.trunk(x)
    ours_levels = pair.ours_model.image_encoder.trunk(x)
    assert len(ours_levels) == len(meta_levels) == 4
    for i, (o, m) in enumerate(zip(ours_levels, meta_levels)):
        assert_close(o, m, f"trunk level {i}")
    meta_fpn, meta_pos = pair.meta_model.image_encoder.neck(meta_levels)
    ours_fpn = pair.ours_model.image_encoder.neck(ours_levels)
    for i, (o, m) in enumerate(zip(ours_fpn, meta_fpn)):
        assert_close(o, m, f"neck level {i}")
    for i, (f, m) in enumerate(zip(ours_fpn, meta_pos)):
        assert_close(pair.ours_model.image_encoder.neck.position_encoding(f), m, f"neck position encoding {i}")


def test_image_embeddings_match(pair):
    assert_close(pair.ours.get_image_embedding(), pair.meta.get_image_embedding(), "image embedding")
    for i, (o, m) in enumerate(zip(pair.ours._features.high_res_feats, pair.meta._features["high_res_feats"])):
        assert_close(o, m, f"high-res features {i}")


@torch.no_grad()
def test_prompt_embeddings_match(pair):
    coords = torch.tensor([[[10.0, 20.0], [500.0, 300.0], [100.5, 900.0]]])
    labels = torch.tensor([[2, 3, 0]], dtype=torch.int32)
    mask = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(3))
    meta_sparse, meta_dense = pair.meta_model.sam_prompt_encoder((coords, labels), None, mask)
    ours_sparse, ours_dense = pair.ours_model.sam_prompt_encoder((coords, labels), mask)
    assert_close(ours_sparse, meta_sparse, "sparse prompt embeddings")
    assert_close(ours_dense, meta_dense, "dense prompt embeddings")
    assert_close(
        pair.ours_model.sam_prompt_encoder.get_dense_pe(), pair.meta_model.sam_prompt_encoder.get_dense_pe(), "dense pe"
    )


BOX = np.array([150, 100, 420, 390])
BOXES = np.array([[150, 100, 420, 390], [10, 10, 300, 200], [330, 40, 630, 470]])
CLICKS = np.array([[260, 240], [400, 120]])
CLICK_LABELS = np.array([1, 0])

PROMPT_CASES = {
    "one box, multimask": dict(box=BOX),
    "one box, single mask": dict(box=BOX, multimask_output=False),
    "several boxes, single mask": dict(box=BOXES, multimask_output=False),
    "several boxes, multimask": dict(box=BOXES),
    "points with a negative, multimask": dict(point_coords=CLICKS, point_labels=CLICK_LABELS),
    "points with a negative, single mask": dict(point_coords=CLICKS, point_labels=CLICK_LABELS, multimask_output=False),
    "box plus points": dict(box=BOX, point_coords=CLICKS, point_labels=CLICK_LABELS, multimask_output=False),
    "boxes plus points per box": dict(
        box=BOXES, point_coords=np.stack([CLICKS] * 3), point_labels=np.stack([CLICK_LABELS] * 3),
        multimask_output=False,
    ),
    "relative coordinates": dict(box=BOX / np.array([640, 480, 640, 480]), normalize_coords=False),
}


@pytest.mark.parametrize("case", list(PROMPT_CASES), ids=str)
def test_predict_matches(pair, case):
    kwargs = PROMPT_CASES[case]
    meta_masks, meta_iou, meta_low = pair.meta.predict(**kwargs)
    meta_logits, _, _ = pair.meta.predict(**kwargs, return_logits=True)
    masks, iou, low = pair.ours.predict(**kwargs)
    logits, _, _ = pair.ours.predict(**kwargs, return_logits=True)
    assert masks.dtype == meta_masks.dtype == np.float32
    assert_close(low, meta_low, "low-res logits")
    assert_close(iou, meta_iou, "IoU predictions")
    assert_close(logits, meta_logits, "full-size logits")
    assert_masks_match(masks, meta_masks, meta_logits, "masks")
    assert 0.001 < masks.mean() < 0.999, "random weights gave a degenerate mask; the comparison would be weak"


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single mask"])
def test_mask_input_matches(pair, multimask):
    """A previous low-res answer fed back as ``mask_input``, with and without a new click."""
    _, iou, low = pair.meta.predict(box=BOX)
    previous = low[np.argmax(iou)][None]
    for extra in (dict(point_coords=CLICKS[:1], point_labels=CLICK_LABELS[:1]), {}):
        meta_masks, meta_iou, meta_low = pair.meta.predict(mask_input=previous, multimask_output=multimask, **extra)
        meta_logits, _, _ = pair.meta.predict(
            mask_input=previous, multimask_output=multimask, return_logits=True, **extra
        )
        masks, iou_ours, low_ours = pair.ours.predict(mask_input=previous, multimask_output=multimask, **extra)
        assert_close(low_ours, meta_low, f"low-res logits {extra.keys()}")
        assert_close(iou_ours, meta_iou, "IoU predictions")
        assert_masks_match(masks, meta_masks, meta_logits, "masks")


def test_batch_of_images_matches(pair):
    """Images of different sizes encoded together; predict_batch per image."""
    sam2 = import_meta_sam2()
    images = [synthetic_image(300, 500, seed=2), synthetic_image(640, 360, seed=3)]
    boxes = [np.array([[20, 30, 400, 280]]), np.array([[10, 50, 300, 600], [100, 100, 200, 200]])]
    meta = sam2.sam2_image_predictor.SAM2ImagePredictor(pair.meta_model)
    ours = segmenter.SAM2ImagePredictor(pair.ours_model)
    meta.set_image_batch(images)
    ours.set_image_batch(images)
    assert_close(ours.get_image_embedding(), meta.get_image_embedding(), "batched image embeddings")
    meta_out = meta.predict_batch(box_batch=boxes, multimask_output=False)
    meta_logits = meta.predict_batch(box_batch=boxes, multimask_output=False, return_logits=True)[0]
    ours_out = ours.predict_batch(box_batch=boxes, multimask_output=False)
    for i in range(len(images)):
        assert ours_out[0][i].shape == meta_out[0][i].shape
        assert_close(ours_out[2][i], meta_out[2][i], f"image {i} low-res logits")
        assert_close(ours_out[1][i], meta_out[1][i], f"image {i} IoU")
        assert_masks_match(ours_out[0][i], meta_out[0][i], meta_logits[i], f"image {i} masks")
