"""The automatic mask generator against Meta's on identical random weights: small grids with
thresholds lowered so random weights yield masks, with and without crop layers, with use_m2m.
Same masks in the same order, scores within 1e-4."""

import math

import numpy as np
import pytest
import torch

import segmenter

from meta_reference import import_meta_sam2, meta_config_name

# Random weights give large, overlapping masks: most cases turn box NMS off (threshold 1) so that
# many masks are compared, in NMS order; "default NMS" checks which mask suppression keeps. The
# whole-image cases run the models at their 1024 input; the others, whose settings change the
# generator's logic and not the model's, at a 256 input (the crop layer encodes five crops with
# each model: sixteen times cheaper there). At 256 every point of some crop falls under a stability
# of 0.3, which Meta's generator cannot take (an empty crop fails in its box_area): the crop layer
# keeps all stabilities there.
CASES = {
    "sam2.1 whole image": ("sam2.1_hiera_tiny", dict(points_per_side=4, box_nms_thresh=1.0), 10, 1024),
    "sam2 whole image": ("sam2_hiera_tiny", dict(points_per_side=3, box_nms_thresh=1.0), 5, 1024),
    "sam2.1 default NMS": ("sam2.1_hiera_tiny", dict(points_per_side=3), 1, 256),
    "sam2.1 crop layer": (
        "sam2.1_hiera_tiny",
        dict(points_per_side=2, crop_n_layers=1, box_nms_thresh=1.0, crop_nms_thresh=1.0, stability_score_thresh=0.0),
        3, 256,
    ),
    "sam2.1 m2m": ("sam2.1_hiera_tiny", dict(points_per_side=2, use_m2m=True, box_nms_thresh=1.0), 3, 256),
    "sam2.1 single mask": (
        "sam2.1_hiera_tiny", dict(points_per_side=3, multimask_output=False, box_nms_thresh=1.0), 3, 256
    ),
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
    """models(variant, image_size): Meta's model and ours on the same random weights, built once."""
    cache = {}

    def get(variant, image_size):
        if (variant, image_size) not in cache:
            import dataclasses

            sam2 = import_meta_sam2()
            state_dict = segmenter.random_state_dict(variant, seed=21)
            config = dataclasses.replace(segmenter.resolve_config(variant), image_size=image_size)
            ours = segmenter.build_model(config).eval()
            ours.load_state_dict(state_dict)
            meta = sam2.build_sam.build_sam2(meta_config_name(variant), ckpt_path=None, device="cpu",
                                             apply_postprocessing=True,
                                             hydra_overrides_extra=[f"++model.image_size={image_size}"])
            meta.load_state_dict(state_dict, strict=True)
            assert meta.image_size == ours.image_size == image_size
            cache[variant, image_size] = (meta.eval(), ours)
        return cache[variant, image_size]

    return get


@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_generate_matches_meta(models, image, case):
    import_meta_sam2()
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator as MetaGenerator

    variant, kwargs, min_masks, image_size = CASES[case]
    meta_model, ours_model = models(variant, image_size)
    settings = {**LOW_THRESHOLDS, **kwargs}
    meta_generator = MetaGenerator(meta_model, **settings)
    # Meta's image predictor writes the backbone's feature sizes for a 1024 input out in full
    meta_generator.predictor._bb_feat_sizes = [(image_size // stride,) * 2 for stride in (4, 8, 16)]
    with torch.no_grad():
        reference = meta_generator.generate(image)
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


# Fast path against the normal path: settings, the free memory the fast path sees ("plenty": all
# points in one decoder call; "none": points_per_batch points per call, so calls span crops) and
# whether masks at inner crop edges are kept (random weights give masks that fill a crop, which
# edge removal drops: only whole-image masks would be compared).
FAST_PATH_CASES = {
    "whole image": (dict(points_per_side=5), "plenty", False),
    "whole image, m2m": (dict(points_per_side=5, use_m2m=True), "plenty", False),
    "crop layer": (dict(points_per_side=3, crop_n_layers=1, crop_nms_thresh=1.0), "plenty", False),
    "crop layer, edge masks kept, m2m": (
        dict(points_per_side=3, crop_n_layers=1, use_m2m=True, crop_nms_thresh=1.0), "plenty", True,
    ),
    "crop layer, edge masks kept, calls span crops": (dict(points_per_side=3, crop_n_layers=1), "none", True),
}
FREE_MEMORY = {"plenty": 2**50, "none": 0}


@pytest.fixture(scope="module")
def small_model() -> segmenter.SAM2Model:
    import dataclasses

    config = dataclasses.replace(segmenter.resolve_config("sam2.1_hiera_tiny"), image_size=256)
    model = segmenter.build_model(config).eval()
    model.load_state_dict(segmenter.random_state_dict(config, seed=2))
    return model


@pytest.mark.parametrize("case", list(FAST_PATH_CASES), ids=str)
def test_fast_path_changes_only_the_batching(small_model, image, case, monkeypatch):
    """The CUDA fast path (all crops encoded in one pass, the points of all crops decoded together
    in as few decoder calls as memory allows) gives the records of crop-by-crop encoding and
    points_per_batch batching, in the same order, up to the float rounding of larger batched
    matrix products (a pixel at the decision boundary may flip); forced on here, on CPU."""
    import segmenter.automatic_mask_generator as amg

    kwargs, memory, keep_edge_masks = FAST_PATH_CASES[case]
    settings = {**LOW_THRESHOLDS, "points_per_batch": 4, "box_nms_thresh": 1.0, **kwargs}
    monkeypatch.setattr(amg, "_free_memory", lambda device: FREE_MEMORY[memory])
    if keep_edge_masks:
        monkeypatch.setattr(amg, "box_near_crop_edge", lambda boxes, *_: torch.zeros(len(boxes), dtype=torch.bool))
    calls = {}

    def counting(name, method):
        def counted(*args, **kw):
            calls[name] += 1
            return method(*args, **kw)

        return counted

    monkeypatch.setattr(
        small_model.sam_mask_decoder, "forward", counting("decoder", small_model.sam_mask_decoder.forward)
    )
    monkeypatch.setattr(small_model, "encode_images", counting("encoder", small_model.encode_images))
    records, counts = {}, {}
    for fast_path in (False, True):
        calls.update(decoder=0, encoder=0)
        generator = segmenter.SAM2AutomaticMaskGenerator(small_model, fast_path=fast_path, **settings)
        records[fast_path] = generator.generate(image)
        counts[fast_path] = dict(calls)

    num_crops = 5 if settings.get("crop_n_layers") else 1
    num_points = num_crops * settings["points_per_side"] ** 2
    points_per_call = num_points if memory == "plenty" else settings["points_per_batch"]
    decodes_per_call = 2 if settings.get("use_m2m") else 1
    assert counts[True] == dict(decoder=math.ceil(num_points / points_per_call) * decodes_per_call, encoder=1)
    assert counts[False]["encoder"] == num_crops and counts[False]["decoder"] > counts[True]["decoder"]
    fast, slow = records[True], records[False]
    assert len(fast) == len(slow) >= 3
    if keep_edge_masks:
        assert len({tuple(r["crop_box"]) for r in slow}) > 1, "only whole-image masks: crops not compared"
    for i, (a, b) in enumerate(zip(fast, slow)):
        assert (
            a["crop_box"] == b["crop_box"] and a["point_coords"][0] == pytest.approx(b["point_coords"][0])
        ), f"mask {i}"
        assert (a["segmentation"] != b["segmentation"]).mean() < 1e-3, f"mask {i}"
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-4)
        assert a["stability_score"] == pytest.approx(b["stability_score"], abs=1e-3)


@pytest.mark.parametrize("fast_path, calls_at_least", [(False, 5 * 3), (True, 1)], ids=["crop by crop", "fast path"])
def test_progress_counts_every_point_prompt_of_every_crop(small_model, image, fast_path, calls_at_least):
    """generate(image, progress) reports after each decoder call: (prompts done, prompts in all)."""
    generator = segmenter.SAM2AutomaticMaskGenerator(small_model, points_per_side=3, points_per_batch=4,
                                                     crop_n_layers=1, fast_path=fast_path)
    calls = []
    generator.generate(image, progress=lambda done, total: calls.append((done, total)))
    total = 9 + 4 * 9  # the whole image's 3x3 grid, and four crops of layer 1 with 3x3 each (downscale 1)
    assert calls[-1] == (total, total) and len(calls) >= calls_at_least  # 5 crops, 9 points in 4s: 3 calls each
    assert all(t == total for _, t in calls) and [d for d, _ in calls] == sorted(d for d, _ in calls)
