"""SAM2VideoPredictor: prompt objects on any frames of a video and track them through it.

Meta's API and behaviour (``sam2.sam2_video_predictor.SAM2VideoPredictor``): ``init_state``,
``add_new_points_or_box``, ``add_new_mask``, ``propagate_in_video`` (forward or ``reverse``),
``clear_all_prompts_in_frame``, ``remove_object`` and ``reset_state``. Objects may be added on
any frame, also after tracking started; each is tracked independently with its own memory bank
(see :mod:`segmenter.tracking`). Masks are returned as float logits Nx1xHxW at the video's
resolution (N objects in ``obj_ids`` order, ``> 0`` is the mask), with -1024 where an object has
no output.

Differences from Meta, all deliberate:
- the predictor holds the model instead of being it (``build_sam2_video_predictor`` returns it);
- frames are read lazily (:mod:`segmenter.video_io`): a folder of frames or a video file read
  with OpenCV, never all frames as float tensors;
- bounded memory: while propagating, outputs of tracked frames that no later frame can attend to
  (more than 16 frames behind the tracked frame and from every prompted frame) are dropped, so
  memory stays flat over long videos. Prompting such a frame again afterwards then starts from
  fewer memories and without its old logits; ``keep_all_frame_outputs=True`` keeps everything,
  as Meta does;
- small holes (``fill_hole_area``) are filled with OpenCV on every device; Meta needs a CUDA
  extension and skips the step without it;
- bfloat16 autocast on CUDA by default (``bf16=False`` for float32); memories are stored in
  bfloat16 everywhere, as Meta stores them.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Hashable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .device import autocast_context
from .modeling.prompt_encoder import BOX_BOTTOM_RIGHT_LABEL, BOX_TOP_LEFT_LABEL, NEGATIVE_LABEL, POSITIVE_LABEL
from .modeling.sam2 import SAM2Model
from .tracking import MAX_OBJECT_POINTERS, NO_OBJECT_SCORE, FrameFeatures, FrameOutput, MemoryBank, PointPrompt, Tracker
from .transforms import remove_small_regions
from .video_io import VideoFrames, load_video_frames

FILLED_HOLE_LOGIT = 0.1  # Meta's video predictor turns small holes into barely-foreground pixels
VideoResult = Tuple[int, List[Hashable], torch.Tensor]


@dataclass
class ObjectTrack:
    """One object's prompts and results in a video."""

    points: Dict[int, PointPrompt] = field(default_factory=dict)  # clicks/box per frame
    masks: Dict[int, torch.Tensor] = field(default_factory=dict)  # mask prompts per frame
    bank: MemoryBank = field(default_factory=MemoryBank)
    pending: Dict[bool, Dict[int, FrameOutput]] = field(default_factory=lambda: {True: {}, False: {}})
    tracked: Dict[int, bool] = field(default_factory=dict)  # frame -> tracked in reverse

    def output_for(self, frame_idx: int, is_cond: bool) -> Optional[FrameOutput]:
        """The newest output on a frame: a pending prompt result, else the bank's."""
        return self.pending[is_cond].get(frame_idx) or self.bank.get(frame_idx)


@dataclass
class VideoState:
    """Everything a predictor knows about one video (Meta's ``inference_state``)."""

    frames: VideoFrames
    device: torch.device
    storage_device: torch.device
    objects: Dict[Hashable, ObjectTrack] = field(default_factory=dict)  # in the order added
    cached_features: Optional[Tuple[int, FrameFeatures]] = None  # the last frame encoded

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def video_height(self) -> int:
        return self.frames.video_height

    @property
    def video_width(self) -> int:
        return self.frames.video_width

    @property
    def obj_ids(self) -> List[Hashable]:
        return list(self.objects)


class SAM2VideoPredictor:
    """Tracks prompted objects through a video with a :class:`SAM2Model`."""

    def __init__(
        self,
        model: SAM2Model,
        fill_hole_area: int = 8,
        binarize_mask_from_pts_for_mem_enc: bool = True,
        bf16: bool = True,
        keep_all_frame_outputs: bool = False,
        batch_objects: Optional[bool] = None,
    ) -> None:
        """
        Arguments:
          model: the model, from :func:`segmenter.build_sam2` (or use
            :func:`build_sam2_video_predictor`).
          fill_hole_area: fill background holes of up to this many pixels of the S/4 logits
            (Meta's ``apply_postprocessing`` value, 8; 0 turns it off).
          binarize_mask_from_pts_for_mem_enc: encode prompted frames' memories from their
            binarised masks (Meta's ``apply_postprocessing``).
          bf16: bfloat16 autocast when the model is on CUDA.
          keep_all_frame_outputs: keep every frame's output instead of only those later frames
            can attend to (see the module docstring).
          batch_objects: while propagating, track the objects whose memory banks hold the same
            frames (e.g. objects prompted on the same frames) in one batch. Numerically this
            differs from one object at a time (Meta's order) only by rounding. None: on for
            CUDA, off elsewhere.
        """
        self.model = model
        self.tracker = Tracker(model, binarize_prompted_masks=binarize_mask_from_pts_for_mem_enc)
        self.fill_hole_area = fill_hole_area
        self.bf16 = bf16
        self.keep_all_frame_outputs = keep_all_frame_outputs
        self.batch_objects = model.device.type == "cuda" if batch_objects is None else batch_objects

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs) -> "SAM2VideoPredictor":
        """Predictor for a hub id such as ``"facebook/sam2.1-hiera-large"``."""
        return build_sam2_video_predictor(model_id, model_id, **kwargs)

    @torch.inference_mode()
    def init_state(
        self,
        video_path: Union[str, Path, Sequence[np.ndarray]],
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
    ) -> VideoState:
        """A new tracking state for a video: a folder of frames named by number (``00000.jpg``...),
        a video file, or a list of HxWx3 RGB arrays. ``offload_video_to_cpu`` keeps decoded
        frames in CPU memory; ``offload_state_to_cpu`` keeps memories and masks there (slower
        on a GPU, but GPU memory then does not grow with the number of objects)."""
        frames = load_video_frames(
            video_path, self.image_size, offload_video_to_cpu=offload_video_to_cpu, device=self.device
        )
        storage = torch.device("cpu") if offload_state_to_cpu else self.device
        return VideoState(frames=frames, device=self.device, storage_device=storage)

    @torch.inference_mode()
    def add_new_points_or_box(
        self,
        inference_state: VideoState,
        frame_idx: int,
        obj_id: Hashable,
        points: Optional[Any] = None,
        labels: Optional[Any] = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: Optional[Any] = None,
    ) -> VideoResult:
        """Prompt object ``obj_id`` on a frame with clicks (Nx2 (x, y) ``points`` and N
        ``labels``, 1 positive, 0 negative) and/or an XYXY ``box``, in video pixels (relative
        [0, 1] with ``normalize_coords=False``). ``clear_old_points=False`` adds the clicks to
        the frame's earlier ones. Returns (frame_idx, obj_ids, masks Nx1xHxW logits of every
        object on that frame)."""
        state = inference_state
        self._check_frame(state, frame_idx)
        prompt = self._point_prompt(state, points, labels, box, clear_old_points, normalize_coords)
        obj = state.objects.setdefault(obj_id, ObjectTrack())
        if not clear_old_points and frame_idx in obj.points:
            prompt = obj.points[frame_idx].extend(prompt)
        obj.points[frame_idx] = prompt
        obj.masks.pop(frame_idx, None)

        is_cond = frame_idx not in obj.tracked  # a new conditioning frame for this object
        previous = obj.output_for(frame_idx, is_cond)
        prev_logits = None
        if previous is not None:
            prev_logits = torch.clamp(previous.pred_masks.to(state.device), -32.0, 32.0)
        out = self._run_frame(
            state, [obj], frame_idx, not is_cond, reverse=obj.tracked.get(frame_idx, False), points=prompt,
            prev_mask_logits=prev_logits,
        )
        obj.pending[is_cond][frame_idx] = out
        return frame_idx, state.obj_ids, self._consolidated_masks(state, frame_idx, is_cond)

    @torch.inference_mode()
    def add_new_mask(self, inference_state: VideoState, frame_idx: int, obj_id: Hashable, mask: Any) -> VideoResult:
        """Give object ``obj_id``'s mask on a frame: an HxW boolean array or tensor (any size;
        resized to the model's input). Returns as :meth:`add_new_points_or_box`."""
        state = inference_state
        self._check_frame(state, frame_idx)
        mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
        if mask.ndim != 2 or mask.shape[0] == 0 or mask.shape[1] == 0:
            raise ValueError(f"mask must be a non-empty HxW array, got shape {tuple(mask.shape)}")
        mask = mask.bool()[None, None].float().to(state.device)
        size = (self.image_size, self.image_size)
        if mask.shape[-2:] != size:
            mask = F.interpolate(mask, size=size, mode="bilinear", align_corners=False, antialias=True)
            mask = (mask >= 0.5).float()
        obj = state.objects.setdefault(obj_id, ObjectTrack())
        obj.masks[frame_idx] = mask
        obj.points.pop(frame_idx, None)
        is_cond = frame_idx not in obj.tracked
        reverse = obj.tracked.get(frame_idx, False)
        out = self._run_frame(state, [obj], frame_idx, not is_cond, reverse=reverse, mask=mask)
        obj.pending[is_cond][frame_idx] = out
        return frame_idx, state.obj_ids, self._consolidated_masks(state, frame_idx, is_cond)

    @torch.inference_mode()
    def propagate_in_video(
        self,
        inference_state: VideoState,
        start_frame_idx: Optional[int] = None,
        max_frame_num_to_track: Optional[int] = None,
        reverse: bool = False,
    ) -> Iterator[VideoResult]:
        """Track every object from ``start_frame_idx`` (default: the first prompted frame)
        forward, or backward with ``reverse``, over at most ``max_frame_num_to_track`` more
        frames. Yields (frame_idx, obj_ids, masks Nx1xHxW logits) per frame."""
        state = inference_state
        self._commit_prompts(state)
        if start_frame_idx is None:
            start_frame_idx = min(t for obj in state.objects.values() for t in obj.bank.cond)
        self._check_frame(state, start_frame_idx)
        span = state.num_frames if max_frame_num_to_track is None else max_frame_num_to_track
        if reverse:
            end = max(start_frame_idx - span, 0)
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
        else:
            end = min(start_frame_idx + span, state.num_frames - 1)
            order = range(start_frame_idx, end + 1)
        for frame_idx in order:
            to_track = [obj for obj in state.objects.values() if frame_idx not in obj.bank.cond]
            for group in self._track_groups(to_track, frame_idx, reverse):
                out = self._run_frame(state, group, frame_idx, True, reverse, encode_memory=True)
                for i, obj in enumerate(group):
                    obj.bank.non_cond[frame_idx] = out.row(i)
                    self._forget_unreachable(obj, frame_idx, -1 if reverse else 1)
            masks = []
            for obj in state.objects.values():
                obj.tracked[frame_idx] = reverse
                masks.append(obj.bank.get(frame_idx).pred_masks.to(state.device))
            yield frame_idx, state.obj_ids, self._video_resolution(state, torch.cat(masks))

    @torch.inference_mode()
    def clear_all_prompts_in_frame(
        self, inference_state: VideoState, frame_idx: int, obj_id: Hashable, need_output: bool = True
    ) -> Optional[VideoResult]:
        """Remove ``obj_id``'s prompts on a frame; its result there becomes an ordinary tracked
        frame. Returns the frame's masks as :meth:`add_new_points_or_box` (unless
        ``need_output=False``)."""
        state = inference_state
        obj = state.objects.setdefault(obj_id, ObjectTrack())
        obj.points.pop(frame_idx, None)
        obj.masks.pop(frame_idx, None)
        obj.pending[True].pop(frame_idx, None)
        obj.pending[False].pop(frame_idx, None)
        out = obj.bank.cond.pop(frame_idx, None)
        if out is not None:
            obj.bank.non_cond[frame_idx] = out
            obj.tracked.pop(frame_idx, None)
        if not need_output:
            return None
        is_cond = any(frame_idx in o.pending[True] for o in state.objects.values())
        return frame_idx, state.obj_ids, self._consolidated_masks(state, frame_idx, is_cond)

    @torch.inference_mode()
    def remove_object(
        self, inference_state: VideoState, obj_id: Hashable, strict: bool = False, need_output: bool = True
    ) -> Tuple[List[Hashable], List[Tuple[int, torch.Tensor]]]:
        """Forget an object. Returns the remaining obj_ids and, with ``need_output``, the masks
        of the frames it was prompted on, as (frame_idx, masks) pairs."""
        state = inference_state
        if obj_id not in state.objects:
            if strict:
                raise KeyError(f"cannot remove object id {obj_id!r}: it does not exist; object ids: {state.obj_ids}")
            return state.obj_ids, []
        removed = state.objects.pop(obj_id)
        updated = []
        if need_output and state.objects:
            for frame_idx in sorted(set(removed.points) | set(removed.masks)):
                is_cond = any(frame_idx in o.pending[True] for o in state.objects.values())
                updated.append((frame_idx, self._consolidated_masks(state, frame_idx, is_cond)))
        return state.obj_ids, updated

    @torch.inference_mode()
    def reset_state(self, inference_state: VideoState) -> None:
        """Forget every object, prompt and result (the video stays loaded)."""
        inference_state.objects.clear()

    # -- internals -------------------------------------------------------------------------

    def _check_frame(self, state: VideoState, frame_idx: int) -> None:
        if not isinstance(frame_idx, (int, np.integer)) or not 0 <= frame_idx < state.num_frames:
            raise IndexError(f"frame_idx {frame_idx!r} is out of range: the video has {state.num_frames} frames")

    def _point_prompt(
        self, state: VideoState, points, labels, box, clear_old_points: bool, normalize_coords: bool
    ) -> PointPrompt:
        """Clicks and box as one prompt in model-input pixels (box corners first)."""
        if (points is None) != (labels is None):
            raise ValueError("points and labels must be provided together")
        if points is None and box is None:
            raise ValueError("at least one of points or box must be provided as input")
        coords = torch.as_tensor(np.asarray(points if points is not None else np.zeros((0, 2))), dtype=torch.float32)
        point_labels = torch.as_tensor(np.asarray(labels if labels is not None else np.zeros(0)), dtype=torch.int32)
        coords = coords.reshape(-1, 2)
        point_labels = point_labels.reshape(-1)
        if coords.shape[0] != point_labels.shape[0]:
            raise ValueError(f"{coords.shape[0]} points but {point_labels.shape[0]} labels")
        valid = (point_labels == POSITIVE_LABEL) | (point_labels == NEGATIVE_LABEL)
        if not bool(valid.all()):
            raise ValueError("labels must be 1 (positive) or 0 (negative)")
        if box is not None:
            if not clear_old_points:
                raise ValueError(
                    "cannot add a box without clearing old points: a box must come before any click "
                    "(use clear_old_points=True)"
                )
            corners = torch.as_tensor(np.asarray(box), dtype=torch.float32).reshape(-1)
            if corners.numel() != 4:
                raise ValueError(f"box must be 4 numbers (x0, y0, x1, y1), got {corners.numel()}")
            coords = torch.cat([corners.reshape(2, 2), coords])
            corner_labels = torch.tensor([BOX_TOP_LEFT_LABEL, BOX_BOTTOM_RIGHT_LABEL], dtype=torch.int32)
            point_labels = torch.cat([corner_labels, point_labels])
        if normalize_coords:
            coords = coords / torch.tensor([state.video_width, state.video_height], dtype=torch.float32)
        coords = coords * self.image_size
        return PointPrompt(coords[None].to(state.device), point_labels[None].to(state.device))

    def _features(self, state: VideoState, frame_idx: int) -> FrameFeatures:
        """A frame's image features, computed once while the frame is being worked on."""
        if state.cached_features is None or state.cached_features[0] != frame_idx:
            image = state.frames[frame_idx].to(state.device).float()[None]
            with autocast_context(state.device, self.bf16):
                state.cached_features = (frame_idx, self.tracker.frame_features(image))
        return state.cached_features[1]

    def _run_frame(
        self,
        state: VideoState,
        objects: Sequence[ObjectTrack],
        frame_idx: int,
        use_memory: bool,
        reverse: bool,
        points: Optional[PointPrompt] = None,
        mask: Optional[torch.Tensor] = None,
        prev_mask_logits: Optional[torch.Tensor] = None,
        encode_memory: bool = False,
    ) -> FrameOutput:
        """B objects on one frame in one batch (their banks hold the same frames when
        ``use_memory``; a frame prompted before the object was tracked there uses no memory)."""
        features = self._features(state, frame_idx).expand(len(objects))
        banks = [obj.bank for obj in objects] if use_memory else None
        with autocast_context(state.device, self.bf16):
            out, high_res_masks = self.tracker.track(
                features, frame_idx, banks, state.num_frames, reverse,
                points=points, mask_prompt=mask, prev_mask_logits=prev_mask_logits,
            )
            if encode_memory:
                memory = self.tracker.encode_memory(features, high_res_masks, out.object_score_logits, prompted=False)
                out.maskmem_features = memory.to(state.storage_device)
        if self.fill_hole_area > 0:
            out.pred_masks = remove_small_regions(out.pred_masks, 0.0, self.fill_hole_area, 0, FILLED_HOLE_LOGIT)
        out.pred_masks = out.pred_masks.to(state.storage_device)
        return out

    def _track_groups(self, objects: List[ObjectTrack], frame_idx: int, reverse: bool) -> List[List[ObjectTrack]]:
        """The objects to track on a frame, in groups decoded together: objects whose banks hold
        the same frames when ``batch_objects``, else one group per object (Meta's order)."""
        if not self.batch_objects:
            return [[obj] for obj in objects]
        groups: Dict[Any, List[ObjectTrack]] = {}
        for obj in objects:
            groups.setdefault(obj.bank.layout(frame_idx, reverse), []).append(obj)
        return list(groups.values())

    def _commit_prompts(self, state: VideoState) -> None:
        """Before tracking: encode the memories of prompted frames and move pending results into
        the memory banks (Meta's ``propagate_in_video_preflight``)."""
        if not state.objects:
            raise RuntimeError("No points, boxes or masks have been added for any object; add prompts first.")
        for obj_id, obj in state.objects.items():
            for is_cond in (False, True):
                key = obj.bank.cond if is_cond else obj.bank.non_cond
                for frame_idx, out in obj.pending[is_cond].items():
                    if out.maskmem_features is None:
                        features = self._features(state, frame_idx)
                        high_res = F.interpolate(
                            out.pred_masks.to(state.device), size=(self.image_size,) * 2, mode="bilinear",
                            align_corners=False,
                        )
                        with autocast_context(state.device, self.bf16):
                            memory = self.tracker.encode_memory(
                                features, high_res, out.object_score_logits, prompted=True
                            )
                        out.maskmem_features = memory.to(state.storage_device)
                    key[frame_idx] = out
                obj.pending[is_cond].clear()
            if not obj.bank.cond:
                raise RuntimeError(
                    f"No points, boxes or masks have been added for object id {obj_id!r}; add prompts first."
                )
            for frame_idx in obj.bank.cond:
                obj.bank.non_cond.pop(frame_idx, None)

    def _forget_unreachable(self, obj: ObjectTrack, frame_idx: int, sign: int) -> None:
        """Drop the tracked output that just left the window later frames attend to (unless it
        is near a prompted frame, where reverse tracking or refinement may start)."""
        if self.keep_all_frame_outputs:
            return
        window = max(MAX_OBJECT_POINTERS, self.model.num_maskmem)
        old = frame_idx - sign * window
        if old in obj.bank.non_cond and all(abs(old - t) > window for t in obj.bank.cond):
            del obj.bank.non_cond[old]

    def _consolidated_masks(self, state: VideoState, frame_idx: int, is_cond: bool) -> torch.Tensor:
        """Every object's newest mask logits on a frame at video resolution: Nx1xHxW, -1024
        for objects without an output there."""
        size = (state.video_height, state.video_width)
        masks = torch.full((len(state.objects), 1, *size), NO_OBJECT_SCORE, dtype=torch.float32, device=state.device)
        for i, obj in enumerate(state.objects.values()):
            out = obj.output_for(frame_idx, is_cond)
            if out is not None:
                masks[i : i + 1] = self._video_resolution(state, out.pred_masks.to(state.device))
        return masks

    def _video_resolution(self, state: VideoState, low_res: torch.Tensor) -> torch.Tensor:
        """Nx1xS/4xS/4 logits -> Nx1xHxW at the video's size (bilinear, as Meta)."""
        size = (state.video_height, state.video_width)
        return F.interpolate(low_res.float(), size=size, mode="bilinear", align_corners=False)


def build_sam2_video_predictor(
    config_file: Union[str, Path, None] = None,
    ckpt_path: Union[str, Path, None] = None,
    device: Union[str, torch.device, None] = None,
    mode: str = "eval",
    apply_postprocessing: bool = True,
    **predictor_kwargs,
) -> SAM2VideoPredictor:
    """Meta's ``build_sam2_video_predictor``: the model as :func:`segmenter.build_sam2` builds it
    (same arguments) wrapped in a :class:`SAM2VideoPredictor`. ``apply_postprocessing`` also
    sets hole filling (8 pixels) and binarised prompt memories, as Meta's does; further keyword
    arguments go to the predictor."""
    from .build_sam import build_sam2

    model = build_sam2(config_file, ckpt_path, device=device, mode=mode, apply_postprocessing=apply_postprocessing)
    predictor_kwargs.setdefault("fill_hole_area", 8 if apply_postprocessing else 0)
    predictor_kwargs.setdefault("binarize_mask_from_pts_for_mem_enc", apply_postprocessing)
    return SAM2VideoPredictor(model, **predictor_kwargs)
