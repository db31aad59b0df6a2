"""Text-grounded video labeling: Florence-2 finds the ontology's objects on keyframes, SAM 2's
video predictor tracks them between keyframes.

Keyframes are frame 0 and every ``every``-th frame after it. On a keyframe:
- the boxes Florence-2 finds (after the model's filters) are matched to the tracked objects by
  the IoU of each box with the bounding box of a track's mask on that frame, greedily from the
  best pair, same class only, at least ``match_iou``;
- a matched track keeps its id, and its confidence becomes the matching box's;
- a box without a track starts a new track (a new id, never reused), prompted by the box;
- a track without a box is "missed"; it ends when its mask is empty on the keyframe or after
  ``max_missed_keyframes`` keyframes in a row without a box.
Between keyframes every live track is propagated by SAM 2's memory. An object is labeled from
the keyframe where it is first found: lower ``every`` to find objects sooner.

Output per frame: ``sv.Detections`` (the schema of :mod:`grounded_sam2.detections`) with
boolean masks, ``tracker_id`` (the track id), ``class_id``, ``confidence`` (the grounding
confidence of the box that started or last confirmed the track; ``sam_iou`` is NaN, the video
predictor gives none). Objects whose mask is empty on a frame (occluded, out of view) are left
out of that frame.
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import supervision as sv
import torch

from segmenter import SAM2VideoPredictor
from segmenter.video_io import VideoInput

from .detections import empty_detections, make_detections, masks_to_xyxy
from .errors import SettingsError
from .segmentation import BoxRequest

# ground(RGB uint8 frames) -> the boxes to track on each (e.g. Pipeline.ground)
GroundFn = Callable[[List[np.ndarray]], List[List[BoxRequest]]]


@dataclass(frozen=True)
class TrackingSettings:
    """How keyframe boxes start, confirm and end tracks (see the module docstring)."""

    every: int = 15
    match_iou: float = 0.5
    max_missed_keyframes: int = 1

    def __post_init__(self) -> None:
        if self.every < 1:
            raise SettingsError(f"every must be at least 1 (ground every frame), got {self.every}")
        if not 0.0 < self.match_iou <= 1.0:
            raise SettingsError(f"match_iou must be in (0, 1], got {self.match_iou}")
        if self.max_missed_keyframes < 0:
            raise SettingsError(f"max_missed_keyframes must be >= 0, got {self.max_missed_keyframes}")


@dataclass
class Track:
    """One tracked object."""

    track_id: int
    class_id: int
    class_name: str
    prompt: str
    confidence: float  # of the box that started or last confirmed it
    missed: int = 0  # keyframes in a row without a matching box


@dataclass
class TrackedFrame:
    """One frame's result: its index, its name (file stem or number), its RGB pixels and its
    detections."""

    index: int
    name: str
    rgb: np.ndarray
    detections: sv.Detections


@dataclass
class VideoTracker:
    """Runs text-grounded tracking over one video; iterate :meth:`frames` for the results.

    ``ground`` finds the boxes on keyframes (:meth:`grounded_sam2.pipeline.Pipeline.ground`) and
    ``predictor`` tracks them (:class:`segmenter.SAM2VideoPredictor` or an object with its API)."""

    ground: GroundFn
    predictor: SAM2VideoPredictor
    video: VideoInput
    settings: TrackingSettings = field(default_factory=TrackingSettings)
    tracks: Dict[int, Track] = field(default_factory=dict, init=False)  # live tracks by id
    started: int = field(default=0, init=False)  # tracks started so far

    def __post_init__(self) -> None:
        self.state = self.predictor.init_state(self.video, offload_video_to_cpu=True)

    @property
    def num_frames(self) -> int:
        return self.state.num_frames

    @torch.inference_mode()
    def frames(self) -> Iterator[TrackedFrame]:
        """Every frame in order, each as soon as it is known."""
        every = self.settings.every
        at_keyframe: Optional[Tuple[List[int], torch.Tensor]] = None  # tracks propagated onto the next keyframe
        for key in range(0, self.num_frames, every):
            yield self._keyframe(key, at_keyframe)
            at_keyframe = None
            next_key = key + every
            if key + 1 == self.num_frames:
                break
            if not self.tracks:
                for index in range(key + 1, min(next_key, self.num_frames)):
                    yield self._frame(index, [], None)
                continue
            end = min(next_key, self.num_frames - 1)
            for index, obj_ids, logits in self.predictor.propagate_in_video(
                self.state, start_frame_idx=key + 1, max_frame_num_to_track=end - key - 1
            ):
                if index == next_key:  # finished after re-grounding
                    at_keyframe = (list(obj_ids), logits)
                else:
                    yield self._frame(index, list(obj_ids), logits)

    def _keyframe(self, index: int, propagated: Optional[Tuple[List[int], torch.Tensor]]) -> TrackedFrame:
        """Ground a keyframe, match its boxes to the tracks, end and start tracks."""
        rgb = self.state.frames.original(index)
        boxes = self.ground([rgb])[0]
        obj_ids, logits = propagated if propagated is not None else ([], None)
        masks = {i: (logits[k, 0] > 0).cpu().numpy() for k, i in enumerate(obj_ids)}
        unmatched_boxes = self._match(boxes, masks)
        for track_id in list(self.tracks):
            track = self.tracks[track_id]
            if track.missed and (track.missed > self.settings.max_missed_keyframes or not masks[track_id].any()):
                del self.tracks[track_id]
                self.predictor.remove_object(self.state, track_id, need_output=False)
        for box in unmatched_boxes:
            self.started += 1
            track = Track(self.started, box.class_id, box.class_name, box.prompt, box.confidence)
            self.tracks[track.track_id] = track
            _, obj_ids, logits = self.predictor.add_new_points_or_box(self.state, index, track.track_id, box=box.xyxy)
            obj_ids = list(obj_ids)
        live = [k for k, i in enumerate(obj_ids) if i in self.tracks]
        if logits is not None:
            logits = logits[live]
        return self._frame(index, [obj_ids[k] for k in live], logits, rgb)

    def _match(self, boxes: List[BoxRequest], masks: Dict[int, np.ndarray]) -> List[BoxRequest]:
        """Confirm tracks with boxes (greedy by IoU, same class); count misses; return the boxes
        that match no track."""
        track_ids = [i for i in self.tracks if i in masks and masks[i].any()]
        track_boxes = masks_to_xyxy(np.stack([masks[i] for i in track_ids])) if track_ids else []
        pairs = []
        for t, (track_id, track_box) in enumerate(zip(track_ids, track_boxes)):
            for b, box in enumerate(boxes):
                if box.class_id == self.tracks[track_id].class_id:
                    iou = _box_iou(track_box, np.asarray(box.xyxy, np.float32))
                    if iou >= self.settings.match_iou:
                        pairs.append((iou, t, b))
        used_tracks, used_boxes = set(), set()
        for _, t, b in sorted(pairs, key=lambda p: -p[0]):
            if t not in used_tracks and b not in used_boxes:
                used_tracks.add(t)
                used_boxes.add(b)
                track = self.tracks[track_ids[t]]
                track.confidence, track.missed = boxes[b].confidence, 0
        confirmed = {track_ids[t] for t in used_tracks}
        for track_id, track in self.tracks.items():
            if track_id not in confirmed:
                track.missed += 1
        return [box for b, box in enumerate(boxes) if b not in used_boxes]

    def _frame(
        self, index: int, obj_ids: Sequence[int], logits: Optional[torch.Tensor], rgb: Optional[np.ndarray] = None
    ) -> TrackedFrame:
        rgb = self.state.frames.original(index) if rgb is None else rgb
        names = self.state.frames.names
        return TrackedFrame(index, names[index], rgb, self._detections(obj_ids, logits, rgb.shape[:2]))

    def _detections(self, obj_ids: Sequence[int], logits: Optional[torch.Tensor], hw: Tuple[int, int]) -> sv.Detections:
        """Detections of the tracks with a non-empty mask, in track order."""
        if logits is None:
            return empty_detections(*hw, tracked=True)
        masks = (logits[:, 0] > 0).cpu().numpy()
        keep = [k for k in range(len(obj_ids)) if masks[k].any()]
        tracks = [self.tracks[obj_ids[k]] for k in keep]
        confidence = [t.confidence for t in tracks]
        return make_detections(
            masks[keep], [t.class_id for t in tracks], [t.class_name for t in tracks], [t.prompt for t in tracks],
            grounding_confidence=confidence, sam_iou=np.full(len(tracks), np.nan), confidence=confidence,
            tracker_id=[t.track_id for t in tracks],
        )


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two XYXY boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
