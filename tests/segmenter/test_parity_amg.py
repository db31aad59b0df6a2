"""The automatic mask generator against Meta's on identical random weights: small grids with
thresholds lowered so random weights yield masks, with and without crop layers, with use_m2m.
Same masks in the same order, scores within 1e-4."""

import numpy as np
import pytest
import torch

import segmenter
from meta_reference import build_meta_model, import_meta_sam2

# Random weights give large, overlapping masks: most cases turn box NMS off (threshold 1) so that
# many masks are compared, in NMS order; "default NMS" checks which mask suppression keeps.
CASES = {
    "sam2.1 whole image": ("sam2.1_hiera_tiny", dict(points_per_side=4, box_nms_thresh=1.0), 10),
    "sam2 whole image": ("sam2_hiera_tiny", dict(points_per_side=3, box_nms_thresh=1.0), 5),
    "sam2.1 default NMS": ("sam2.1_hiera_tiny", dict(points_per_side=3), 1),
    "sam2.1 crop layer": ("sam2.1_hiera_tiny", dict(points_per_side=2, crop_n_layers=1, box_nms_thresh=1.0, crop_nms_thresh=1.0), 3),
    "sam2.1 m2m": ("sam2.1_hiera_tiny", dict(points_per_side=2, use_m2m=True, box_nms_thresh=1.0), 3),
    "sam2.1 single mask": ("sam2.1_hiera_tiny", dict(points_per_side=3, multimask_output=False, box_nms_thresh=1.0), 3),
}
LOW_THRESHOLDS = dict(pred_iou_thresh=0.0, stability_score_thresh=0.3, points_per_batch=16)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(5)
    img = np.full((180, 240, 3), 40, np.uint8)
    img[30:120, 40:150] = (200, 60, 60)
    img[90:170, 120:230] = (60, 200, 90)
    return np.clip(img + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(variant):
        if variant not in cache:
            state_dict = segmenter.random_state_dict(variant, seed=21)
            ours = segmenter.build_model(segmenter.resolve_config(variant)).eval()
            ours.load_state_dict(state_dict)
            cache[variant] = (build_meta_model(variant, state_dict), ours)
        return cache[variant]

    return get


@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_generate_matches_meta(models, image, case):
    import_meta_sam2()
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator as MetaGenerator

    variant, kwargs, min_masks = CASES[case]
    meta_model, ours_model = models(variant)
    settings = {**LOW_THRESHOLDS, **kwargs}
    with torch.no_grad():
        reference = MetaGenerator(meta_model, **settings).generate(image)
    ours = segmenter.SAM2AutomaticMaskGenerator(ours_model, **settings).generate(image)
    assert len(reference) >= min_masks, "random weights yielded too few masks for a meaningful comparison"
    assert len(ours) == len(reference)
    for i, (o, m) in enumerate(zip(ours, reference)):
        assert o.keys() == m.keys()
        np.testing.assert_array_equal(o["segmentation"], m["segmentation"], err_msg=f"mask {i}")
        assert o["bbox"] == m["bbox"] and o["area"] == m["area"] and o["crop_box"] == m["crop_box"]
        assert o["point_coords"][0] == pytest.approx(m["point_coords"][0])
        assert o["predicted_iou"] == pytest.approx(m["predicted_iou"], abs=1e-4)
        assert o["stability_score"] == pytest.approx(m["stability_score"], abs=1e-4)


def test_rle_output_modes_decode_to_the_binary_masks(image):
    """uncompressed_rle and coco_rle encode exactly the binary_mask output (a 256-pixel model)."""
    import dataclasses

    from pycocotools import mask as mask_utils

    from segmenter.mask_utils import rle_to_mask

    config = dataclasses.replace(segmenter.resolve_config("sam2.1_hiera_tiny"), image_size=256)
    model = segmenter.build_model(config).eval()
    model.load_state_dict(segmenter.random_state_dict(config, seed=2))
    settings = {**LOW_THRESHOLDS, "points_per_side": 4, "box_nms_thresh": 1.0}
    outputs = {
        mode: segmenter.SAM2AutomaticMaskGenerator(model, output_mode=mode, **settings).generate(image)
        for mode in ("binary_mask", "uncompressed_rle", "coco_rle")
    }
    assert len(outputs["binary_mask"]) >= 3
    for binary, rle, coco in zip(*outputs.values()):
        np.testing.assert_array_equal(rle_to_mask(rle["segmentation"]), binary["segmentation"])
        np.testing.assert_array_equal(mask_utils.decode(coco["segmentation"]).astype(bool), binary["segmentation"])
        assert binary["area"] == int(binary["segmentation"].sum()) == int(mask_utils.area(coco["segmentation"]))


def test_records_work_with_supervision_from_sam(image):
    """The article's code: sv.Detections.from_sam(generator.generate(image))."""
    import dataclasses

    import supervision as sv

    config = dataclasses.replace(segmenter.resolve_config("sam2.1_hiera_tiny"), image_size=256)
    model = segmenter.build_model(config).eval()
    model.load_state_dict(segmenter.random_state_dict(config, seed=2))
    records = segmenter.SAM2AutomaticMaskGenerator(model, points_per_side=4, **{
        k: v for k, v in LOW_THRESHOLDS.items() if k != "points_per_batch"}, box_nms_thresh=1.0).generate(image)
    detections = sv.Detections.from_sam(records)
    assert len(detections) == len(records) >= 3
    assert detections.mask.shape == (len(records), *image.shape[:2])
    largest = max(records, key=lambda r: r["area"])  # from_sam orders masks by area, largest first
    x, y, w, h = largest["bbox"]
    np.testing.assert_allclose(detections.xyxy[0], [x, y, x + w, y + h])
    np.testing.assert_array_equal(detections.mask[0], largest["segmentation"])


@pytest.mark.parametrize("use_m2m", [False, True], ids=["plain", "m2m"])
def test_fast_path_changes_only_the_batching(image, use_m2m, monkeypatch):
    """The CUDA fast path (all points of a crop in as few decoder calls as memory allows) gives the
    same records as points_per_batch batching, up to the float rounding of larger batched matrix
    products (a pixel at the decision boundary may flip); forced on here, on CPU."""
    import dataclasses

    config = dataclasses.replace(segmenter.resolve_config("sam2.1_hiera_tiny"), image_size=256)
    model = segmenter.build_model(config).eval()
    model.load_state_dict(segmenter.random_state_dict(config, seed=2))
    settings = {**LOW_THRESHOLDS, "points_per_side": 5, "points_per_batch": 4, "box_nms_thresh": 1.0, "use_m2m": use_m2m}
    slow = segmenter.SAM2AutomaticMaskGenerator(model, fast_path=False, **settings)
    fast = segmenter.SAM2AutomaticMaskGenerator(model, fast_path=True, **settings)
    calls = {"slow": 0, "fast": 0}
    decoder = model.sam_mask_decoder
    original = decoder.forward
    for name, generator in (("slow", slow), ("fast", fast)):
        monkeypatch.setattr(decoder, "forward", lambda *a, _n=name, **k: calls.__setitem__(_n, calls[_n] + 1) or original(*a, **k))
        records = generator.generate(image)
        if name == "slow":
            reference = records
    assert calls["fast"] == (2 if use_m2m else 1) and calls["slow"] > calls["fast"]
    assert len(records) == len(reference) >= 3
    for a, b in zip(records, reference):
        assert (a["segmentation"] != b["segmentation"]).mean() < 1e-3
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-4)
