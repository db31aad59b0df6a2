"""Our video predictor against Meta's SAM2VideoPredictor on identical random weights (tiny, SAM 2
and SAM 2.1, at a 128 input to keep the CPU time small): the same session of calls on a
10-frame video gives the same object ids and mask logits on every frame.

The session: object 1 by box on frame 0, object 7 by a positive and a negative click on frame
3, object 4 by an empty mask on frame 2 (absent there: exercises the no-object pointer and
SAM 2.1's no-object memory), forward tracking, a refining click on an already tracked frame,
object 9 added by mask after tracking, reverse tracking from the last frame, then object 7
removed and three frames tracked again.

Random weights put SAM 2's object score near 0, where a rounding difference could flip an
object between present and absent. The object-score head's bias is raised by OBJECT_SCORE_SHIFT,
and the test checks that the comparison is meaningful: scores far from 0, masks neither empty
nor full, different between objects and changing over time.
"""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import segmenter
from segmenter.tracking import NO_OBJECT_SCORE
from segmenter.video_predictor import SAM2VideoPredictor

from meta_reference import build_meta_video_predictor
from numerics import assert_close

SIZE = 128
H, W = 96, 128
NUM_FRAMES = 10
OBJECT_SCORE_SHIFT = 1.0
OBJECT_SCORE_BIAS = "sam_mask_decoder.pred_obj_score_head.layers.2.bias"


def write_frames(folder, num_frames: int = NUM_FRAMES):
    """Two coloured rectangles moving in opposite directions, as numbered JPEG frames."""
    folder.mkdir(exist_ok=True)
    for t in range(num_frames):
        img = np.zeros((H, W, 3), np.uint8)
        img[:] = (30, 60, 90)
        img[20:60, 10 + 4 * t : 50 + 4 * t] = (220, 40, 40)
        img[50:90, 80 - 3 * t : 110 - 3 * t] = (40, 220, 60)
        Image.fromarray(img).save(folder / f"{t:05d}.jpg", quality=95)
    return folder


def session(predictor, video):
    """The same calls on either predictor; returns [(step, frame_idx, obj_ids, logits)] and the state."""
    state = predictor.init_state(str(video))
    steps = [("box", *predictor.add_new_points_or_box(state, 0, 1, box=[10, 20, 50, 60]))]
    steps.append(("points", *predictor.add_new_points_or_box(state, 3, 7, points=[[95, 70], [20, 30]], labels=[1, 0])))
    steps.append(("empty mask", *predictor.add_new_mask(state, 2, 4, np.zeros((H, W), bool))))
    steps += [("forward", *r) for r in predictor.propagate_in_video(state)]
    steps.append(
        (
            "refine",
            *predictor.add_new_points_or_box(state, 6, 1, points=[[40, 40]], labels=[1], clear_old_points=False),
        )
    )
    mask = np.zeros((H, W), bool)
    mask[50:90, 50:80] = True
    steps.append(("mask", *predictor.add_new_mask(state, 8, 9, mask)))
    steps += [
        ("reverse", *r) for r in predictor.propagate_in_video(state, start_frame_idx=NUM_FRAMES - 1, reverse=True)
    ]
    obj_ids, updated = predictor.remove_object(state, 7)
    steps += [("removed", frame_idx, obj_ids, masks) for frame_idx, masks in updated]
    steps += [
        ("after removal", *r) for r in predictor.propagate_in_video(state, start_frame_idx=4, max_frame_num_to_track=2)
    ]
    return steps, state


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_frames(tmp_path_factory.mktemp("video") / "frames")


@pytest.fixture(scope="module", params=["sam2_hiera_tiny", "sam2.1_hiera_tiny"])
def sessions(request, video):
    state_dict = segmenter.random_state_dict(request.param, seed=0)
    state_dict[OBJECT_SCORE_BIAS] += OBJECT_SCORE_SHIFT
    meta = build_meta_video_predictor(request.param, state_dict, image_size=SIZE)
    config = dataclasses.replace(segmenter.resolve_config(request.param), image_size=SIZE)
    model = segmenter.build_model(config).eval()
    model.load_state_dict(state_dict, strict=True)
    ours = SAM2VideoPredictor(model, fill_hole_area=0)  # Meta skips hole filling on the CPU
    with pytest.warns(UserWarning, match="Skipping the post-processing"):
        meta_steps, _ = session(meta, video)
    our_steps, our_state = session(ours, video)
    return meta_steps, our_steps, our_state


def test_same_frames_object_ids_and_logits(sessions):
    meta_steps, our_steps, _ = sessions
    assert [s[:3] for s in our_steps] == [(s[0], s[1], list(s[2])) for s in meta_steps]
    assert len([s for s in our_steps if s[0] == "forward"]) == NUM_FRAMES
    for (step, frame, ids, ref), (_, _, _, ours) in zip(meta_steps, our_steps):
        name = f"{step} frame {frame}"
        assert ours.shape == ref.shape == (len(ids), 1, H, W), name
        absent = (ref == NO_OBJECT_SCORE).flatten(1).all(dim=1)
        assert torch.equal((ours == NO_OBJECT_SCORE).flatten(1).all(dim=1), absent), name
        if (~absent).any():
            assert_close(ours[~absent], ref[~absent], name)


def test_comparison_is_meaningful(sessions):
    _, our_steps, state = sessions
    scores = [
        out.object_score_logits.item()
        for obj in state.objects.values()
        for out in [*obj.bank.cond.values(), *obj.bank.non_cond.values()]
    ]
    assert min(abs(s) for s in scores) > 0.5, "an object score is close to the present/absent threshold"
    empty_mask_score = state.objects[4].bank.cond[2].object_score_logits.item()
    assert empty_mask_score < 0, "the empty mask should make object 4 absent on frame 2"

    tracked = [logits for step, _, _, logits in our_steps if step in ("forward", "reverse")]
    assert [step for step, *_ in our_steps].count("removed") == 1
    for logits in tracked:  # objects 1 and 7, prompted by box and clicks, are tracked everywhere
        boxed, clicked = logits[0, 0] > 0, logits[1, 0] > 0
        for mask in (boxed, clicked):
            assert 0.02 < mask.float().mean() < 0.98, "a degenerate (empty or full) mask"
        assert not torch.equal(boxed, clicked), "two objects got the same mask"
    first, last = (tracked[0] > 0)[0], (tracked[NUM_FRAMES - 1] > 0)[0]
    assert (first != last).float().mean() > 0.01, "object 1's mask does not change over the video"
