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
from grounded_sam2.model import GroundedSAM2
from grounded_sam2.video import TrackingSettings, VideoTracker

from dataset_files import normalized_dataset
from florence_script import ScriptedAnswers

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
    tracker = VideoTracker(scripted(model, answers).pipeline.ground, OracleTracker(), scene(num_frames), settings)
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


# -- outputs, with the real SAM 2 video predictor ------------------------------------------------

KEYFRAME_ANSWERS = [answer(true_boxes(k)) for k in (0, 5, 10)]


@pytest.fixture(scope="module")
def present_sam2():
    """SAM 2.1 tiny at a 128 input whose object-score head is biased to 'present', so that random
    weights give non-empty masks to track and write."""
    config = dataclasses.replace(segmenter.resolve_config("sam2.1_hiera_tiny"), image_size=128)
    state_dict = segmenter.random_state_dict(config, seed=3)
    state_dict["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] += 2.0
    model = segmenter.build_model(config).eval()
    model.load_state_dict(state_dict)
    return model


def labeled(tiny_florence, sam2, output, **kwargs):
    model = GroundedSAM2({"dog": "dog", "cat": "cat"}, florence=str(tiny_florence), sam2=sam2, device="cpu")
    return scripted(model, KEYFRAME_ANSWERS).label_video(scene(), output, every=5, progress=False, **kwargs)


def test_label_video_writes_frames_video_json_and_mp4(tiny_florence, present_sam2, tmp_path):
    out = tmp_path / "out"
    summary = labeled(tiny_florence, present_sam2, out, format="coco", annotated_video=True)
    # random SAM 2 weights: masks do not follow the boxes, so re-grounding may start extra tracks
    assert (summary.frames, summary.labeled, summary.already_done) == (NUM_FRAMES, NUM_FRAMES, 0)
    assert summary.tracks >= 2
    assert sorted(p.name for p in (out / "train" / "images").iterdir()) == [
        f"video_{t:05d}.jpg" for t in range(NUM_FRAMES)]

    video = json.loads((out / "video.json").read_text())
    assert video["videos"] == [{"id": 1, "name": "video", "width": W, "height": H, "length": NUM_FRAMES, "fps": None}]
    assert [i["frame_index"] for i in video["images"]] == list(range(NUM_FRAMES))
    annotations = video["annotations"]
    track_class = {t["id"]: t["category_id"] for t in video["tracks"]}
    assert annotations and sorted(track_class) == sorted({a["track_id"] for a in annotations})
    assert set(track_class.values()) == {1, 2}  # dogs and cats
    assert all(a["category_id"] == track_class[a["track_id"]] for a in annotations)
    # the frame dataset holds the same masks
    coco = json.loads((out / "train" / "_annotations.coco.json").read_text())
    by_file = {i["file_name"]: i["id"] for i in coco["images"]}
    coco_masks = {(by_file[i["file_name"].split("/")[-1]], a["category_id"], json.dumps(a["segmentation"]))
                  for i in video["images"] for a in annotations if a["image_id"] == i["id"]}
    assert coco_masks == {(a["image_id"], a["category_id"], json.dumps(a["segmentation"])) for a in coco["annotations"]}

    capture = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == NUM_FRAMES
    ok, frame = capture.read()
    assert ok and frame.shape == (H, W, 3)
    assert not (out / ".annotated.partial.mp4").exists()


def test_interrupted_run_resumes_to_the_uninterrupted_output(tiny_florence, present_sam2, tmp_path, monkeypatch):
    labeled(tiny_florence, present_sam2, tmp_path / "whole", format="yolo", annotated_video=True)
    from grounded_sam2.datasets.writer import DatasetWriter

    commit, calls = DatasetWriter.commit, []

    def interrupted(self, *args):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return commit(self, *args)

    monkeypatch.setattr(DatasetWriter, "commit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        labeled(tiny_florence, present_sam2, tmp_path / "cut", format="yolo", annotated_video=True)
    assert not (tmp_path / "cut" / "annotated.mp4").exists() and not list((tmp_path / "cut").glob(".annotated*"))
    monkeypatch.setattr(DatasetWriter, "commit", commit)
    summary = labeled(tiny_florence, present_sam2, tmp_path / "cut", format="yolo", annotated_video=True)
    assert (summary.labeled, summary.already_done) == (NUM_FRAMES - 5, 5)
    whole, resumed = normalized_dataset(tmp_path / "whole"), normalized_dataset(tmp_path / "cut")
    mp4 = "annotated.mp4"
    assert {k: v for k, v in resumed.items() if k != mp4} == {k: v for k, v in whole.items() if k != mp4}
    assert len(resumed[mp4]) > 0


# -- the command --------------------------------------------------------------------------------

CLI = [sys.executable, "-m", "grounded_sam2.cli"]
CLI_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def cli(*args):
    return subprocess.run([*CLI, *map(str, args)], cwd=ROOT, env=CLI_ENV, capture_output=True, text=True)


def write_video(path: Path, frames) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(frame[:, :, ::-1])
    writer.release()
    return path


def test_cli_label_video(tiny_models, tmp_path):
    florence, sam2 = tiny_models
    video = write_video(tmp_path / "clip.avi", scene(3))
    result = cli("label-video", video, "-o", tmp_path / "out", "--ontology", "example", "--florence", florence,
                 "--sam2", sam2, "--device", "cpu", "--every", "2", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "frames: 3 tracked, 3 written now" in result.stdout
    assert (tmp_path / "out" / "data.yaml").is_file() and (tmp_path / "out" / "video.json").is_file()
    assert len(list((tmp_path / "out" / "train" / "labels").iterdir())) == 3


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda d: d / "missing.mp4", "input not found"),
        (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", "empty.mp4"),
        (lambda d: [cv2.imwrite(str(d / f"{i:05d}.jpg"), np.zeros((8, 8, 3), np.uint8)) for i in (0, 1, 3)] and d,
         "frame 2 is missing"),
    ],
    ids=["missing", "empty video", "gap in frames"],
)
def test_cli_label_video_bad_input(tiny_models, tmp_path, make_input, message, capsys):
    """Run in this process: the start-up of a command costs more than these checks."""
    from grounded_sam2.cli import main

    florence, sam2 = tiny_models
    source = tmp_path / "in"
    source.mkdir()
    code = main([str(a) for a in ("label-video", make_input(source), "-o", tmp_path / "out", "--ontology", "example",
                                  "--florence", florence, "--sam2", sam2, "--device", "cpu", "--no-progress")])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err


def test_grounded_sam2_track_video(tiny_florence, present_sam2):
    model = GroundedSAM2({"dog": "dog", "cat": "cat"}, florence=str(tiny_florence), sam2=present_sam2, device="cpu")
    frames = list(scripted(model, [answer(true_boxes(0)), answer(true_boxes(2))]).track_video(scene(4), every=2))
    assert ([f.index for f in frames] == [0, 1, 2, 3]
            and [f.name for f in frames] == ["00000", "00001", "00002", "00003"])
    first = frames[0].detections
    assert first.tracker_id.tolist() == [1] and first.data["class_name"].tolist() == ["dog"]
    assert first.mask.shape == (1, H, W) and first.mask.any()
    assert all(f.detections.tracker_id is not None for f in frames)



@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through /proc")
def test_cli_several_videos_one_dataset_each_and_the_same_with_workers_one_killed(tiny_models, tmp_path):
    """Per video: OUT/<name>/, the dataset one video alone gives; --devices cpu:2 labels the
    videos in two workers, one killed mid-run, and writes the same files. The three commands run
    side by side (the single-process ones use one core each); the results are compared at the end."""
    import signal

    from scale_out import wait_until_written, worker_pids

    florence, sam2 = tiny_models
    videos = [write_video(tmp_path / "a.avi", scene(4)), write_video(tmp_path / "b.avi", scene(2))]
    common = ["--ontology", "example", "--florence", florence, "--sam2", sam2, "--every", "2", "--no-progress",
              "--format", "coco", "--threads", "1"]

    def start(name, *args):
        """The command running, its output going to tmp_path/<name>.out and .err."""
        with (tmp_path / f"{name}.out").open("w") as out, (tmp_path / f"{name}.err").open("w") as err:
            return subprocess.Popen([*CLI, *map(str, args)], cwd=ROOT, env=CLI_ENV, stdout=out, stderr=err)

    def finished(name, process):
        process.wait(timeout=600)
        assert process.returncode == 0, (tmp_path / f"{name}.err").read_text()
        return (tmp_path / f"{name}.out").read_text()

    output = tmp_path / "workers"
    running = {"workers": start("workers", "label-video", *videos, "-o", output, *common, "--devices", "cpu:2"),
               "alone": start("alone", "label-video", videos[1], "-o", tmp_path / "alone", *common, "--device", "cpu"),
               "one": start("one", "label-video", *videos, "-o", tmp_path / "one", *common, "--device", "cpu")}
    try:
        process = running["workers"]
        wait_until_written(process, output, "*/.work/*.json")
        victims = worker_pids(process.pid)
        assert victims, "no worker found"
        os.kill(victims[0], signal.SIGKILL)
        stdout = {name: finished(name, run) for name, run in running.items()}
    finally:
        for run in running.values():
            if run.poll() is None:
                run.kill()
                run.wait()
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["a", "b"]
    assert "frames: 4 tracked" in stdout["one"] and "frames: 2 tracked" in stdout["one"]
    assert (tmp_path / "one" / "a" / "video.json").is_file()
    assert normalized_dataset(tmp_path / "one" / "b") == normalized_dataset(tmp_path / "alone")
    assert normalized_dataset(output) == normalized_dataset(tmp_path / "one")


def test_videos_of_the_same_name_are_refused(tmp_path):
    from grounded_sam2.errors import SettingsError
    from grounded_sam2.video_labeling import video_outputs

    assert video_outputs([tmp_path / "a.mp4"], tmp_path / "out") == [tmp_path / "out"]
    with pytest.raises(SettingsError, match="same name would share"):
        video_outputs([tmp_path / "x" / "a.mp4", tmp_path / "y" / "a.mp4"], tmp_path / "out")

