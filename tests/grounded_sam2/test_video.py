"""Text-grounded video labeling: track bookkeeping, outputs, resuming and the CLI.

The bookkeeping tests (ids kept across re-grounding, new objects, ends) replace SAM 2 by
``OracleTracker``, a test double that returns each object's true mask, so that what is tested is
the matching and track logic alone; SAM 2's own tracking is tested against Meta's in
tests/segmenter/test_parity_video.py, and the output tests below run the real predictor.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import segmenter
from florence_script import ScriptedAnswers
from grounded_sam2.model import GroundedSAM2
from grounded_sam2.tiny_models import make_tiny_models
from grounded_sam2.video import TrackingSettings, VideoTracker
from grounded_sam2.video_labeling import label_video

ROOT = Path(__file__).resolve().parents[2]
H, W = 60, 100
NUM_FRAMES = 12


def true_boxes(frame: int) -> dict:
    """Where each object of the synthetic scene is (XYXY), by name; absent objects are left out.
    The dog walks right and leaves after frame 8; the cat appears on frame 4."""
    boxes = {}
    if frame <= 8:
        boxes["dog"] = (5 + 4 * frame, 10, 30 + 4 * frame, 40)
    if frame >= 4:
        boxes["cat"] = (60, 30, 90, 55)
    return boxes


def scene(num_frames: int = NUM_FRAMES):
    frames = []
    for t in range(num_frames):
        img = np.full((H, W, 3), 40, np.uint8)
        for name, (x0, y0, x1, y1) in true_boxes(t).items():
            img[y0:y1, x0:x1] = (200, 120, 40) if name == "dog" else (60, 60, 220)
        frames.append(img)
    return frames


def answer(boxes: dict) -> str:
    """Florence-2's answer text for boxes: class name then four location bins per box."""
    def bins(x0, y0, x1, y1):
        return "".join(f"<loc_{round(v / s * 1000)}>" for v, s in ((x0, W), (y0, H), (x1, W), (y1, H)))

    return "".join(f"{name}{bins(*box)}" for name, box in boxes.items())


def scripted(model: GroundedSAM2, answers):
    model.grounder.logits_processor = [ScriptedAnswers(model.grounder.processor.tokenizer, answers)]
    return model


class OracleTracker:
    """A stand-in for SAM2VideoPredictor that returns each prompted object's true mask."""

    def init_state(self, video, offload_video_to_cpu=False):
        self.objects = {}  # obj_id -> scene object name
        frames = segmenter.load_video_frames(video, 64)
        return dataclasses.make_dataclass("State", ["frames", "num_frames"])(frames, len(frames))

    def _masks(self, frame):
        logits = -torch.ones(len(self.objects), 1, H, W)
        for k, name in enumerate(self.objects.values()):
            if name in true_boxes(frame):
                x0, y0, x1, y1 = true_boxes(frame)[name]
                logits[k, 0, y0:y1, x0:x1] = 1.0
        return logits

    def add_new_points_or_box(self, state, frame_idx, obj_id, box):
        def iou(a, b):
            inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
            return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

        truths = true_boxes(frame_idx)
        self.objects[obj_id] = max(truths, key=lambda name: iou(truths[name], box))
        return frame_idx, list(self.objects), self._masks(frame_idx)

    def propagate_in_video(self, state, start_frame_idx, max_frame_num_to_track):
        for frame in range(start_frame_idx, min(start_frame_idx + max_frame_num_to_track, state.num_frames - 1) + 1):
            yield frame, list(self.objects), self._masks(frame)

    def remove_object(self, state, obj_id, need_output=True):
        del self.objects[obj_id]


@pytest.fixture
def model(tiny_florence, small_sam2):
    return GroundedSAM2({"dog": "dog", "cat": "cat"}, florence=str(tiny_florence), sam2=small_sam2, device="cpu")


def run_oracle(model, answers, settings, num_frames=NUM_FRAMES):
    tracker = VideoTracker(scripted(model, answers), scene(num_frames), settings, predictor=OracleTracker())
    return {f.index: f.detections for f in tracker.frames()}, tracker


def ids_by_class(detections):
    return {name: int(t) for name, t in zip(detections.data["class_name"], detections.tracker_id)}


def test_ids_stay_across_regrounding_new_objects_start_and_vanished_ones_end(model):
    keyframes = [0, 5, 10]
    results, tracker = run_oracle(model, [answer(true_boxes(k)) for k in keyframes], TrackingSettings(every=5))
    assert sorted(results) == list(range(NUM_FRAMES))
    expected = {t: {"dog": 1} for t in range(5)}  # the cat (from frame 4) is first seen on keyframe 5
    expected.update({t: {"dog": 1, "cat": 2} for t in range(5, 9)})
    expected.update({t: {"cat": 2} for t in range(9, NUM_FRAMES)})
    assert {t: ids_by_class(d) for t, d in results.items()} == expected
    assert tracker.started == 2 and list(tracker.tracks) == [2]  # the dog's track ended on keyframe 10
    dog_on_3 = results[3]
    assert dog_on_3.mask.shape == (1, H, W) and dog_on_3.xyxy.tolist() == [[17.0, 10.0, 42.0, 40.0]]


def test_a_track_without_boxes_ends_after_max_missed_keyframes(model):
    # Keyframes 0, 4, 8, 12: the detector misses the cat on 8 and 12 although it is in view.
    answers = [answer(true_boxes(0)), answer(true_boxes(4)), answer({}), answer({})]
    for max_missed, cat_until in [(0, 7), (1, 11), (2, 12)]:
        settings = TrackingSettings(every=4, max_missed_keyframes=max_missed)
        results, _ = run_oracle(model, answers, settings, num_frames=13)
        frames_with_cat = [t for t, d in results.items() if "cat" in ids_by_class(d)]
        assert frames_with_cat == list(range(4, cat_until + 1)), max_missed


def shifted(box, dx):
    x0, y0, x1, y1 = box
    return (x0 + dx, y0, x1 + dx, y1)


@pytest.mark.parametrize(
    "keyframe_5, expected",
    [
        ({"dog": shifted(true_boxes(5)["dog"], 3)}, [("dog", 1)]),  # IoU 0.79: the same dog
        ({"dog": shifted(true_boxes(5)["dog"], 15)}, [("dog", 2)]),  # IoU 0.25: a new dog; the old one ends
        ({"cat": true_boxes(5)["dog"]}, [("cat", 2)]),  # another class never confirms a track
    ],
    ids=["overlap", "too little overlap", "other class"],
)
def test_matching_needs_the_same_class_and_enough_overlap(model, keyframe_5, expected):
    answers = [answer({"dog": true_boxes(0)["dog"]}), answer(keyframe_5), answer({})]
    results, _ = run_oracle(model, answers, TrackingSettings(every=5, max_missed_keyframes=0))
    found = list(zip(results[5].data["class_name"], results[5].tracker_id.tolist()))
    assert found == expected


@pytest.mark.parametrize(
    "kwargs, match",
    [({"every": 0}, "every"), ({"match_iou": 0.0}, "match_iou"), ({"max_missed_keyframes": -1}, "max_missed")],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrackingSettings(**kwargs)
