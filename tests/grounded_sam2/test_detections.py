"""One detections schema and one box convention for every producer: grounding with boxes
tightened to masks, point/box prompts, automatic masks and tracked video frames."""

import dataclasses

import numpy as np
import pytest
import torch

import segmenter
from grounded_sam2 import GroundedSAM2
from grounded_sam2.datasets.formats import coco_annotation
from grounded_sam2.detections import DATA_KEYS, empty_detections, make_detections, masks_to_xyxy
from grounded_sam2.errors import SettingsError
from grounded_sam2.prompts import detections_from_prompts
from grounded_sam2.segmentation import automatic_detections
from grounded_sam2.video import TrackingSettings, VideoTracker

from florence_script import ScriptedAnswers

H, W = 48, 64


def mask_with(rows, columns):
    mask = np.zeros((H, W), bool)
    mask[rows, columns] = True
    return mask


@pytest.mark.parametrize("mask, expected", [
    (mask_with(slice(10, 20), slice(3, 6)), [3, 10, 6, 20]),  # columns 3..5: x0 = 3, x1 = 6
    (mask_with(5, 7), [7, 5, 8, 6]),  # one pixel: a 1x1 box
    (mask_with(slice(None), slice(None)), [0, 0, W, H]),  # the whole image
    (mask_with([1, 30], [2, 50]), [2, 1, 51, 31]),  # two parts: the box of both
], ids=["columns 3-5", "one pixel", "whole image", "two parts"])
def test_mask_box_has_continuous_pixel_edges(mask, expected):
    assert masks_to_xyxy(mask[None]).tolist() == [expected]
    ys, xs = np.nonzero(mask)
    bbox = coco_annotation(1, 1, 1, mask, masks_to_xyxy(mask[None])[0])["bbox"]
    assert bbox[2:] == [xs.max() - xs.min() + 1, ys.max() - ys.min() + 1], "COCO width/height = pixel extent"


def test_empty_masks_get_the_fallback_or_zeros():
    masks = np.stack([np.zeros((H, W), bool), mask_with(2, 3)])
    assert masks_to_xyxy(masks).tolist() == [[0, 0, 0, 0], [3, 2, 4, 3]]
    fallback = np.array([[1, 2, 3, 4], [9, 9, 9, 9]], np.float32)
    assert masks_to_xyxy(masks, fallback).tolist() == [[1, 2, 3, 4], [3, 2, 4, 3]]
    assert masks_to_xyxy(np.zeros((0, H, W), bool)).shape == (0, 4)


@pytest.mark.parametrize("kwargs, error", [
    (dict(mask=np.zeros((H, W), bool)), SettingsError),
    (dict(class_name=["a", "b"]), ValueError),
    (dict(sam_iou=[0.5, 0.5]), ValueError),
], ids=["2-D mask", "too many names", "too many IoUs"])
def test_make_detections_refuses_malformed_input(kwargs, error):
    arguments = dict(mask=np.zeros((1, H, W), bool), class_id=[0], class_name=["a"], prompt=["a"],
                     grounding_confidence=[1.0], sam_iou=[0.5])
    with pytest.raises(error):
        make_detections(**{**arguments, **kwargs})


def test_empty_results_have_every_key():
    empty = empty_detections(H, W)
    assert empty.mask.shape == (0, H, W) and empty.xyxy.shape == (0, 4) and tuple(empty.data) == DATA_KEYS
    assert empty.tracker_id is None and empty_detections(H, W, tracked=True).tracker_id.shape == (0,)


# --- every producer: the box of a mask-derived detection is its mask's box ------------------------

IMAGE = np.zeros((H, W, 3), np.uint8)
IMAGE[8:40, 10:50] = (200, 120, 40)


def grounded_and_tightened(tiny_florence, small_sam2):
    model = GroundedSAM2({"dog": "dog"}, florence=str(tiny_florence), sam2=small_sam2, device="cpu", tighten_boxes=True)
    answer = "dog" + "".join(f"<loc_{b}>" for b in (100, 100, 900, 900))
    model.grounder.logits_processor = [ScriptedAnswers(model.grounder.processor.tokenizer, [answer])]
    return model.predict(IMAGE, rgb=True)


def prompted(tiny_florence, small_sam2):
    predictor = segmenter.SAM2ImagePredictor(small_sam2)
    predictor.set_image(IMAGE)
    return detections_from_prompts(predictor, box=np.array([[5, 5, 55, 45], [20, 10, 60, 40]]))


def automatic(tiny_florence, small_sam2):
    generator = segmenter.SAM2AutomaticMaskGenerator(small_sam2, points_per_side=4, pred_iou_thresh=0.0,
                                                     stability_score_thresh=0.3, box_nms_thresh=1.0)
    return automatic_detections(generator.generate(IMAGE), (H, W))


class FixedMaskPredictor:
    """A stand-in video predictor whose one object always has the mask of ``IMAGE``'s square."""

    def init_state(self, video, offload_video_to_cpu=False):
        frames = segmenter.load_video_frames(video, 64)
        return dataclasses.make_dataclass("State", ["frames", "num_frames"])(frames, len(frames))

    def logits(self):
        return torch.from_numpy(np.where(IMAGE[..., 0] > 0, 1.0, -1.0)[None, None].astype(np.float32))

    def add_new_points_or_box(self, state, frame_idx, obj_id, box):
        return frame_idx, [obj_id], self.logits()

    def propagate_in_video(self, state, start_frame_idx, max_frame_num_to_track):
        for frame in range(start_frame_idx, start_frame_idx + max_frame_num_to_track + 1):
            yield frame, [1], self.logits()


def tracked(tiny_florence, small_sam2):
    model = GroundedSAM2({"dog": "dog"}, florence=str(tiny_florence), sam2=small_sam2, device="cpu")
    answer = "dog" + "".join(f"<loc_{b}>" for b in (100, 100, 900, 900))
    model.grounder.logits_processor = [ScriptedAnswers(model.grounder.processor.tokenizer, [answer])]
    tracker = VideoTracker(model.pipeline.ground, FixedMaskPredictor(), [IMAGE, IMAGE], TrackingSettings(every=5))
    frames = list(tracker.frames())
    assert frames[1].detections.xyxy.tolist() == [[10, 8, 50, 40]]
    return frames[0].detections


@pytest.mark.parametrize("produce", [grounded_and_tightened, prompted, automatic, tracked],
                         ids=["grounding + tighten_boxes", "point/box prompts", "automatic masks", "video tracking"])
def test_every_producer_gives_the_mask_box_and_the_schema(tiny_florence, small_sam2, produce):
    detections = produce(tiny_florence, small_sam2)
    assert len(detections) and set(DATA_KEYS) <= set(detections.data)
    for mask, box in zip(detections.mask, detections.xyxy):
        ys, xs = np.nonzero(mask)
        assert len(xs), "random weights gave an empty mask; choose another prompt"
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        bbox = coco_annotation(1, 1, 1, mask, box)["bbox"]
        assert bbox[2:] == [xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
