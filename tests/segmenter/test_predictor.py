"""SAM2ImagePredictor behaviour beyond parity: inputs, errors, batching, torch entry point,
hole/sprinkle filling. Uses tiny at a 256-pixel input so each encode takes a fraction of a second."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import segmenter
from segmenter.device import resolve_device
from segmenter.transforms import remove_small_regions

from numerics import assert_close


@pytest.fixture(scope="module")
def model() -> segmenter.SAM2Model:
    config = dataclasses.replace(segmenter.resolve_config("sam2.1_hiera_tiny"), image_size=256)
    model = segmenter.build_model(config).eval()
    model.load_state_dict(segmenter.random_state_dict(config, seed=2))
    return model


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((90, 120, 3)) * 255).astype(np.uint8)


@pytest.fixture
def predictor(model, image) -> segmenter.SAM2ImagePredictor:
    p = segmenter.SAM2ImagePredictor(model)
    p.set_image(image)
    return p


def test_prediction_needs_an_image(model):
    p = segmenter.SAM2ImagePredictor(model)
    with pytest.raises(RuntimeError, match="must be set"):
        p.predict(box=[0, 0, 10, 10])
    with pytest.raises(RuntimeError, match="set_image_batch"):
        p.predict_batch(box_batch=[[0, 0, 10, 10]])


BAD_PROMPTS = {
    "points without labels": (dict(point_coords=[[1, 2]]), ValueError, "point_labels must be supplied"),
    "label 2 is reserved for boxes": (
        dict(point_coords=[[1, 2]], point_labels=[2]), ValueError, "1 \\(positive\\) or 0",
    ),
    "labels do not match points": (dict(point_coords=[[1, 2], [3, 4]], point_labels=[1]), ValueError, "Nx2 or BxNx2"),
    "points are not pairs": (dict(point_coords=[[1, 2, 3]], point_labels=[1]), ValueError, "Nx2 or BxNx2"),
    "point sets do not match boxes": (
        dict(
            box=[[0, 0, 5, 5], [1, 1, 6, 6], [2, 2, 7, 7]], point_coords=[[[1, 2]], [[3, 4]]], point_labels=[[1], [1]]
        ),
        ValueError, "3 boxes but 2 point sets",
    ),
}


@pytest.mark.parametrize("case", list(BAD_PROMPTS), ids=str)
def test_bad_prompts_give_clear_errors(predictor, case):
    kwargs, error, message = BAD_PROMPTS[case]
    with pytest.raises(error, match=message):
        predictor.predict(**kwargs)


BAD_IMAGE_INDICES = {
    "index out of range": (1, IndexError, "img_idx 1 out of range for 1 image"),
    "per-prompt index out of range": (torch.tensor([0, 1]), IndexError, "must lie in \\[0, 1\\)"),
    "fewer indices than prompts": (
        torch.tensor([0]), ValueError, "one image index per prompt \\(2\\), got shape \\(1,\\)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_IMAGE_INDICES), ids=str)
def test_bad_image_indices(predictor, case):
    img_idx, error, message = BAD_IMAGE_INDICES[case]
    with pytest.raises(error, match=message):
        predictor.predict_torch(boxes=torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20]]), img_idx=img_idx)


@pytest.mark.parametrize(
    "kwargs, mask_shape, iou_shape",
    [
        (dict(box=[10, 10, 60, 50]), (3, 90, 120), (3,)),
        (dict(box=[10, 10, 60, 50], multimask_output=False), (1, 90, 120), (1,)),
        (dict(box=[[10, 10, 60, 50], [0, 0, 30, 30]], multimask_output=False), (2, 1, 90, 120), (2, 1)),
        (dict(point_coords=[[20, 30]], point_labels=[1]), (3, 90, 120), (3,)),
    ],
    ids=["box", "box single", "two boxes", "click"],
)
def test_numpy_output_conventions(predictor, kwargs, mask_shape, iou_shape):
    masks, iou, low_res = predictor.predict(**kwargs)
    assert masks.shape == mask_shape and masks.dtype == np.float32
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert iou.shape == iou_shape
    assert low_res.shape == mask_shape[:-2] + (64, 64)  # 256-pixel model: 64x64 low-res logits
    assert np.abs(low_res).max() <= 32.0


def test_shared_clicks_broadcast_over_boxes(predictor):
    boxes = np.array([[10, 10, 60, 50], [0, 0, 30, 30], [40, 20, 110, 80]])
    shared = predictor.predict(box=boxes, point_coords=[[25, 25]], point_labels=[0], multimask_output=False)
    explicit = predictor.predict(
        box=boxes, point_coords=np.tile([[[25, 25]]], (3, 1, 1)), point_labels=np.zeros((3, 1)), multimask_output=False
    )
    for a, b in zip(shared, explicit):
        np.testing.assert_array_equal(a, b)


def test_all_boxes_are_decoded_in_one_decoder_call(predictor, monkeypatch):
    calls = []
    decoder = predictor.model.sam_mask_decoder
    original = decoder.forward
    monkeypatch.setattr(decoder, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    predictor.predict(box=np.array([[10, 10, 60, 50]] * 8), multimask_output=False)
    assert len(calls) == 1


def test_boxes_decoded_together_equal_boxes_decoded_alone(predictor):
    boxes = np.array([[10, 10, 60, 50], [0, 0, 30, 30]])
    together = predictor.predict(box=boxes, multimask_output=False, return_logits=True)[0]
    for i, box in enumerate(boxes):
        alone = predictor.predict(box=box, multimask_output=False, return_logits=True)[0]
        assert_close(together[i], alone, f"box {i}")


def test_path_pil_and_array_give_the_same_embedding(model, image, tmp_path):
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    embeddings = []
    for source in (image, Image.fromarray(image), path, str(path)):
        p = segmenter.SAM2ImagePredictor(model)
        p.set_image(source)
        assert p.orig_hw == [(90, 120)]
        embeddings.append(p.get_image_embedding())
    for e in embeddings[1:]:
        assert torch.equal(e, embeddings[0])


@pytest.mark.parametrize("images_per_pass", [None, 2], ids=["one pass", "passes of 2"])
def test_batch_encoding_equals_one_by_one(model, images_per_pass):
    rng = np.random.default_rng(1)
    images = [(rng.random(shape) * 255).astype(np.uint8) for shape in ((50, 70, 3), (200, 100, 3), (64, 64, 3))]
    batch = segmenter.SAM2ImagePredictor(model)
    batch.set_image_batch(images, images_per_pass=images_per_pass)
    assert batch.orig_hw == [(50, 70), (200, 100), (64, 64)]
    boxes = [np.array([[5, 5, 40, 30]]), np.array([[10, 20, 90, 180], [0, 0, 50, 50]]), None]
    points = [None, None, np.array([[30, 30]])]
    labels = [None, None, np.array([1])]
    masks, ious, lows = batch.predict_batch(points, labels, boxes, multimask_output=False, return_logits=True)
    for i, img in enumerate(images):
        single = segmenter.SAM2ImagePredictor(model)
        single.set_image(img)
        assert_close(batch.get_image_embedding()[i], single.get_image_embedding()[0], f"image {i} embedding")
        m, iou, low = single.predict(points[i], labels[i], boxes[i], multimask_output=False, return_logits=True)
        assert masks[i].shape == m.shape
        assert_close(lows[i], low, f"image {i} low-res logits")
        assert_close(ious[i], iou, f"image {i} IoU")


def test_prompts_on_several_images_decoded_together_equal_each_image_alone(model, monkeypatch):
    """predict_torch with one image index per prompt: prompts on images of different sizes, in
    pixels of their own image, decoded in one decoder call; masks come per image, in prompt order."""
    rng = np.random.default_rng(3)
    images = [(rng.random(shape) * 255).astype(np.uint8) for shape in ((50, 70, 3), (200, 100, 3), (64, 64, 3))]
    p = segmenter.SAM2ImagePredictor(model)
    p.set_image_batch(images)
    image_ids = torch.tensor([1, 0, 1, 1, 0])
    boxes = torch.tensor([[10.0, 20, 90, 180], [5, 5, 40, 30], [0, 0, 50, 50], [20, 40, 80, 190], [30, 10, 69, 49]])
    points = torch.tensor([[[50.0, 100]], [[20, 15]], [[25, 25]], [[60, 150]], [[45, 30]]])
    labels = torch.tensor([[1], [1], [0], [1], [1]])
    calls = []
    decoder = model.sam_mask_decoder
    original = decoder.forward
    monkeypatch.setattr(decoder, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    masks, iou, low = p.predict_torch(points, labels, boxes, return_logits=True, img_idx=image_ids)
    assert len(calls) == 1
    assert [tuple(m.shape) for m in masks] == [(2, 3, 50, 70), (3, 3, 200, 100), (0, 3, 64, 64)]
    assert iou.shape == (5, 3) and low.shape == (5, 3, 64, 64)
    for i in (0, 1):
        rows = image_ids == i
        alone = p.predict_torch(points[rows], labels[rows], boxes[rows], return_logits=True, img_idx=i)
        for name, together, single in zip(("masks", "IoU", "low-res logits"), (masks[i], iou[rows], low[rows]), alone):
            assert_close(together, single, f"image {i} {name}")
    binary = p.predict_torch(points, labels, boxes, img_idx=image_ids)[0]
    for i in (0, 1):
        assert binary[i].dtype == torch.bool and torch.equal(binary[i], masks[i] > 0)


def test_predict_batch_needs_one_entry_per_image(model, image):
    p = segmenter.SAM2ImagePredictor(model)
    p.set_image_batch([image, image])
    with pytest.raises(ValueError, match="one prompt entry per image \\(2\\), got 1"):
        p.predict_batch(box_batch=[[0, 0, 5, 5]])


@pytest.mark.parametrize(
    "bad", [[], np.zeros((4, 4, 3), np.uint8), "image.png", Image.new("RGB", (4, 4))],
    ids=["empty", "array", "str", "PIL"],
)
def test_set_image_batch_needs_a_list(model, bad):
    with pytest.raises(TypeError, match="non-empty list"):
        segmenter.SAM2ImagePredictor(model).set_image_batch(bad)


def test_predict_torch_keeps_tensors_on_the_device(predictor):
    masks, iou, low = predictor.predict_torch(boxes=torch.tensor([[10.0, 10, 60, 50]]), multimask_output=False)
    assert masks.dtype == torch.bool and masks.shape == (1, 1, 90, 120)
    assert all(t.device == predictor.device for t in (masks, iou, low))
    logits, _, _ = predictor.predict_torch(boxes=torch.tensor([[10.0, 10, 60, 50]]), return_logits=True)
    assert logits.dtype == torch.float32 and logits.shape == (1, 3, 90, 120)


def test_bf16_switch_is_a_no_op_on_cpu(model, image):
    results = []
    for bf16 in (True, False):
        p = segmenter.SAM2ImagePredictor(model, bf16=bf16)
        p.set_image(image)
        results.append(p.predict(box=[10, 10, 60, 50])[2])
    np.testing.assert_array_equal(*results)


def _logits(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.where(mask, 5.0, -5.0).astype(np.float32))[None, None]


def test_hole_filling_uses_8_connectivity():
    mask = np.ones((12, 12), bool)
    mask[2:4, 2:4] = False  # 4-pixel hole
    mask[6:9, 6:9] = False  # 9-pixel hole
    mask[0, 10] = mask[1, 11] = False  # two diagonal pixels touching the border: one 2-pixel hole
    out = remove_small_regions(_logits(mask), 0.0, max_hole_area=4, max_sprinkle_area=0)[0, 0].numpy() > 0
    expected = mask.copy()
    expected[2:4, 2:4] = True
    expected[0, 10] = expected[1, 11] = True
    np.testing.assert_array_equal(out, expected)


def test_sprinkle_removal():
    mask = np.zeros((12, 12), bool)
    mask[1, 1] = True  # 1-pixel speck
    mask[5:10, 5:10] = True  # 25-pixel object
    out = remove_small_regions(_logits(mask), 0.0, max_hole_area=0, max_sprinkle_area=3)[0, 0].numpy() > 0
    expected = mask.copy()
    expected[1, 1] = False
    np.testing.assert_array_equal(out, expected)


def test_predictor_fills_holes_before_upsampling(model, image):
    plain = segmenter.SAM2ImagePredictor(model)
    filled = segmenter.SAM2ImagePredictor(model, max_hole_area=64 * 64, max_sprinkle_area=0)
    for p in (plain, filled):
        p.set_image(image)
    kwargs = dict(box=[10, 10, 100, 80], multimask_output=False)
    m_plain, _, low_plain = plain.predict(**kwargs)
    m_filled, _, low_filled = filled.predict(**kwargs)
    np.testing.assert_array_equal(low_plain, low_filled)  # low-res logits are returned unfilled
    assert m_filled.sum() >= m_plain.sum()
    assert (m_filled >= m_plain).all()


def test_device_resolution():
    assert resolve_device(None).type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


def test_bf16_autocast_path(model, image, monkeypatch):
    """The CUDA bf16 path, run under CPU autocast: mixed dtypes flow through encoder, decoder and
    postprocessing, outputs come back float32, and masks stay close to the float32 ones."""
    import contextlib

    import segmenter.predictor as predictor_module

    def cpu_bf16(device, bf16):
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    monkeypatch.setattr(predictor_module, "autocast_context", cpu_bf16)
    outputs = {}
    for bf16 in (False, True):
        p = segmenter.SAM2ImagePredictor(model, bf16=bf16)
        p.set_image(image)
        outputs[bf16] = p.predict(box=[[10, 10, 60, 50], [0, 0, 100, 80]], multimask_output=False)
    assert outputs[True][0].dtype == outputs[True][1].dtype == outputs[True][2].dtype == np.float32
    assert np.isfinite(outputs[True][2]).all()
    assert (outputs[True][0] == outputs[False][0]).mean() > 0.9
    np.testing.assert_allclose(outputs[True][1], outputs[False][1], atol=0.1)
