"""The video predictor's behaviour beyond parity: inputs, errors, object management, bounded
memory, offloading and hole filling. A tiny model at a 64 input keeps every frame cheap."""

import dataclasses

import cv2
import numpy as np
import pytest
import torch

import segmenter
from segmenter.tracking import MAX_OBJECT_POINTERS
from segmenter.video_predictor import FILLED_HOLE_LOGIT, SAM2VideoPredictor

SIZE = 64
H, W = 40, 60


@pytest.fixture(scope="module")
def model():
    config = dataclasses.replace(segmenter.resolve_config("sam2.1_hiera_tiny"), image_size=SIZE)
    model = segmenter.build_model(config).eval()
    model.load_state_dict(segmenter.random_state_dict("sam2.1_hiera_tiny", seed=1))
    return model


def frames(n: int):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    return [np.roll(base, i, axis=1) for i in range(n)]


@pytest.fixture
def predictor(model):
    return SAM2VideoPredictor(model)


def test_tracks_every_frame_forward_and_backward(predictor):
    state = predictor.init_state(frames(6))
    predictor.add_new_points_or_box(state, 2, "car", box=[5, 5, 30, 30])
    forward = list(predictor.propagate_in_video(state))
    backward = list(predictor.propagate_in_video(state, reverse=True))
    assert [f for f, _, _ in forward] == [2, 3, 4, 5]
    assert [f for f, _, _ in backward] == [2, 1, 0]
    for _, ids, masks in forward + backward:
        assert ids == ["car"] and masks.shape == (1, 1, H, W) and masks.dtype == torch.float32
    assert sorted(state.objects["car"].tracked) == list(range(6))


def test_max_frame_num_to_track_and_start(predictor):
    state = predictor.init_state(frames(8))
    predictor.add_new_points_or_box(state, 0, 1, points=[[10, 10]], labels=[1])
    assert [
        f for f, _, _ in predictor.propagate_in_video(state, start_frame_idx=3, max_frame_num_to_track=2)
    ] == [3, 4, 5]
    assert [f for f, _, _ in predictor.propagate_in_video(state, start_frame_idx=0, reverse=True)] == []


def test_object_added_after_tracking_is_tracked_independently(predictor):
    state = predictor.init_state(frames(5))
    predictor.add_new_points_or_box(state, 0, 1, box=[5, 5, 30, 30])
    first = {f: m for f, _, m in predictor.propagate_in_video(state)}
    _, ids, masks = predictor.add_new_points_or_box(state, 3, 2, points=[[45, 20]], labels=[1])
    assert ids == [1, 2]
    assert torch.equal(masks[0], first[3][0])  # object 1's result on frame 3 is shown unchanged
    again = {f: m for f, ids, m in predictor.propagate_in_video(state, start_frame_idx=0)}
    for frame_idx in range(5):  # object 1 does not see object 2
        torch.testing.assert_close(again[frame_idx][0], first[frame_idx][0], rtol=0, atol=1e-5)


def test_add_new_mask_returns_the_mask(predictor):
    state = predictor.init_state(frames(3))
    mask = np.zeros((H, W), bool)
    mask[10:30, 20:50] = True
    _, _, logits = predictor.add_new_mask(state, 1, 5, mask)
    predicted = (logits[0, 0] > 0).numpy()
    assert (predicted == mask).mean() > 0.95  # the given mask, through the 16x resize and back


def test_remove_object_and_reset(predictor):
    state = predictor.init_state(frames(3))
    predictor.add_new_points_or_box(state, 0, 1, box=[5, 5, 30, 30])
    predictor.add_new_points_or_box(state, 0, 2, box=[30, 5, 55, 30])
    ids, updated = predictor.remove_object(state, 1)
    assert ids == [2]
    assert [f for f, _ in updated] == [0] and updated[0][1].shape == (1, 1, H, W)
    assert predictor.remove_object(state, 99) == ([2], [])
    with pytest.raises(KeyError, match="99"):
        predictor.remove_object(state, 99, strict=True)
    assert [ids for _, ids, _ in predictor.propagate_in_video(state)] == [[2]] * 3
    predictor.reset_state(state)
    assert state.obj_ids == []
    with pytest.raises(RuntimeError, match="add prompts first"):
        next(predictor.propagate_in_video(state))


def test_clear_prompts_makes_the_frame_ordinary(predictor):
    state = predictor.init_state(frames(4))
    predictor.add_new_points_or_box(state, 0, 1, box=[5, 5, 30, 30])
    predictor.add_new_points_or_box(state, 2, 1, points=[[20, 20]], labels=[1])
    list(predictor.propagate_in_video(state))
    predictor.clear_all_prompts_in_frame(state, 2, 1)
    assert list(state.objects[1].bank.cond) == [0] and 2 in state.objects[1].bank.non_cond


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"frame_idx": 9, "points": [[1, 1]], "labels": [1]}, IndexError, "out of range"),
        ({"frame_idx": -1, "points": [[1, 1]], "labels": [1]}, IndexError, "out of range"),
        ({"frame_idx": 0}, ValueError, "at least one of points or box"),
        ({"frame_idx": 0, "points": [[1, 1]]}, ValueError, "provided together"),
        ({"frame_idx": 0, "points": [[1, 1], [2, 2]], "labels": [1]}, ValueError, "2 points but 1 labels"),
        ({"frame_idx": 0, "points": [[1, 1]], "labels": [2]}, ValueError, "1 \\(positive\\) or 0"),
        ({"frame_idx": 0, "box": [1, 2, 3]}, ValueError, "4 numbers"),
        ({"frame_idx": 0, "box": [1, 2, 3, 4], "clear_old_points": False}, ValueError, "clear_old_points=True"),
    ],
)
def test_bad_prompts(predictor, kwargs, error, match):
    state = predictor.init_state(frames(2))
    with pytest.raises(error, match=match):
        predictor.add_new_points_or_box(state, obj_id=1, **kwargs)
    assert state.obj_ids == []  # nothing half-added


@pytest.mark.parametrize("mask", [np.zeros((0, 5), bool), np.zeros((2, 3, 4), bool)], ids=["empty", "3-d"])
def test_bad_mask(predictor, mask):
    state = predictor.init_state(frames(2))
    with pytest.raises(ValueError, match="non-empty HxW"):
        predictor.add_new_mask(state, 0, 1, mask)


def test_propagating_without_prompts_for_an_object(predictor):
    state = predictor.init_state(frames(3))
    predictor.add_new_points_or_box(state, 0, 1, box=[5, 5, 30, 30])
    predictor.clear_all_prompts_in_frame(state, 0, 1)
    with pytest.raises(RuntimeError, match="object id 1"):
        next(predictor.propagate_in_video(state))


LONG_VIDEO = 45  # longer than the frames kept near the prompt plus the sliding window


@pytest.fixture(scope="module")
def long_runs(model):
    """Track one object over LONG_VIDEO frames with bounded memory and with everything kept:
    {keep_all: (stored tracked outputs after each frame, masks per frame, final state)}."""
    runs = {}
    for keep_all in (False, True):
        predictor = SAM2VideoPredictor(model, keep_all_frame_outputs=keep_all)
        state = predictor.init_state(frames(LONG_VIDEO))
        predictor.add_new_points_or_box(state, 0, 1, box=[5, 5, 30, 30])
        stored, masks = [], []
        for _, _, logits in predictor.propagate_in_video(state):
            stored.append(len(state.objects[1].bank.non_cond))
            masks.append(logits)
        runs[keep_all] = (stored, masks, state)
    return runs


def test_memory_stays_bounded_on_long_videos(model, long_runs):
    window = max(MAX_OBJECT_POINTERS, model.num_maskmem)
    stored, _, state = long_runs[False]
    # the frames near the prompt (where reverse tracking starts) plus the sliding window
    assert max(stored) == stored[-1] == 2 * window
    kept = sorted(state.objects[1].bank.non_cond)
    assert kept == list(range(1, window + 1)) + list(range(LONG_VIDEO - window, LONG_VIDEO))
    assert long_runs[True][0][-1] == LONG_VIDEO - 1


def test_bounded_memory_does_not_change_results(long_runs):
    for bounded, full in zip(long_runs[False][1], long_runs[True][1]):
        assert torch.equal(bounded, full)


def test_offload_state_to_cpu_keeps_memories_there(model):
    predictor = SAM2VideoPredictor(model)
    state = predictor.init_state(frames(3), offload_video_to_cpu=True, offload_state_to_cpu=True)
    predictor.add_new_points_or_box(state, 0, 1, box=[5, 5, 30, 30])
    list(predictor.propagate_in_video(state))
    for out in state.objects[1].bank.non_cond.values():
        assert out.maskmem_features.device.type == "cpu" and out.maskmem_features.dtype == torch.bfloat16
        assert out.pred_masks.device.type == "cpu"


def test_small_holes_are_filled_like_meta():
    logits = -torch.ones(1, 1, 16, 16)
    logits[0, 0, 2:10, 2:10] = 5.0
    logits[0, 0, 4:6, 4:6] = -3.0  # a 4-pixel hole
    from segmenter.transforms import remove_small_regions

    filled = remove_small_regions(logits, 0.0, 8, 0, FILLED_HOLE_LOGIT)
    assert (filled[0, 0, 4:6, 4:6] == FILLED_HOLE_LOGIT).all()
    assert torch.equal(filled[0, 0, 10:], logits[0, 0, 10:])  # the large background stays


def test_video_file_input(model, tmp_path):
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    for frame in frames(4):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    predictor = SAM2VideoPredictor(model)
    state = predictor.init_state(path)
    assert (state.num_frames, state.video_height, state.video_width) == (4, H, W)
    predictor.add_new_points_or_box(state, 0, 1, box=[5, 5, 30, 30])
    assert len(list(predictor.propagate_in_video(state))) == 4


def test_build_sam2_video_predictor_from_checkpoint(tmp_path):
    path = segmenter.save_random_checkpoint(tmp_path / "sam2.1_hiera_tiny.pt", "sam2.1_hiera_tiny")
    predictor = segmenter.build_sam2_video_predictor(None, path, device="cpu")
    assert isinstance(predictor, SAM2VideoPredictor)
    assert predictor.fill_hole_area == 8 and predictor.tracker.binarize_prompted_masks
    plain = segmenter.build_sam2_video_predictor("sam2.1_hiera_t.yaml", path, device="cpu", apply_postprocessing=False)
    assert plain.fill_hole_area == 0 and not plain.tracker.binarize_prompted_masks


def test_batched_objects_equal_one_at_a_time(model, monkeypatch):
    """batch_objects tracks objects whose banks hold the same frames in one batch: the same masks
    (up to rounding) in fewer memory-attention calls."""
    calls = []
    attention = type(model.memory_attention).forward

    def counted(self, *args, **kwargs):
        calls.append(args[0].shape[0])  # batch size
        return attention(self, *args, **kwargs)

    monkeypatch.setattr(type(model.memory_attention), "forward", counted)
    results = {}
    for batch in (False, True):
        calls.clear()
        predictor = SAM2VideoPredictor(model, batch_objects=batch)
        state = predictor.init_state(frames(6))
        predictor.add_new_points_or_box(state, 0, 1, box=[5, 5, 30, 30])
        predictor.add_new_points_or_box(state, 0, 2, points=[[45, 20]], labels=[1])
        predictor.add_new_points_or_box(state, 2, 3, box=[20, 10, 50, 35])  # another layout: its own batch
        results[batch] = ([m for _, _, m in predictor.propagate_in_video(state)], list(calls))
    (alone, alone_calls), (batched, batched_calls) = results[False], results[True]
    assert alone_calls == [1] * 15  # objects 1 and 2 on frames 1-5, object 3 on frames 0, 1, 3, 4, 5
    assert sorted(batched_calls) == [1] * 5 + [2] * 5
    for a, b in zip(alone, batched):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
