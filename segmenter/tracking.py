"""One step of SAM 2's video tracking: a frame's features conditioned on an object's memory bank,
decoded into a mask and an object pointer, and encoded into a new memory.

The behaviour is that of Meta's released video models (``SAM2Base`` with the settings every
released config shares): up to ``num_maskmem - 1`` = 6 previous frames and every prompted frame
as spatial memories, up to 16 object pointers (prompted frames only from the past), multimask
output for prompts of at most one point and for tracking, object-score gating of masks and
pointers, and memories of prompted frames encoded from binarised masks (Meta's
``apply_postprocessing``). The SAM 2 / SAM 2.1 differences are read from the model:
``no_obj_embed_spatial`` and the (projected, signed) temporal encoding of object pointers.

Shapes: B objects tracked together (one per memory bank; Meta tracks every object alone, the
predictor batches objects whose banks hold the same frames), S the model's input size,
h = w = S/16, C = 256 and M = 64 the memory channels. Tensors are batch-first.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .modeling.position_encoding import sine_encoding_1d
from .modeling.prompt_encoder import PADDING_LABEL
from .modeling.sam2 import SAM2Model

NO_OBJECT_SCORE = -1024.0  # mask logit of every pixel of a frame where the object is absent
MAX_OBJECT_POINTERS = 16
MEMORY_MASK_SCALE, MEMORY_MASK_BIAS = 20.0, -10.0  # sigmoid probabilities -> memory encoder input
MASK_INPUT_SCALE, MASK_INPUT_BIAS = 20.0, -10.0  # binary mask prompts -> mask logits


@dataclass
class FrameFeatures:
    """Image-encoder features of one frame."""

    vision_feats: torch.Tensor  # BxCxhxw, stride 16
    vision_pos: torch.Tensor  # BxCxhxw sine position encoding
    high_res: List[torch.Tensor]  # [Bx32x4hx4w, Bx64x2hx2w], projected for the mask decoder

    def expand(self, batch: int) -> "FrameFeatures":
        """The same features for ``batch`` objects (no copy)."""
        grow = lambda x: x.expand(batch, *x.shape[1:])  # noqa: E731
        return FrameFeatures(grow(self.vision_feats), grow(self.vision_pos), [grow(f) for f in self.high_res])


@dataclass
class PointPrompt:
    """Clicks and box corners of one frame in model-input pixels: coords Bx N x2 (x, y), labels
    BxN (1 positive, 0 negative, 2/3 box corners, box first)."""

    coords: torch.Tensor
    labels: torch.Tensor

    def extend(self, other: "PointPrompt") -> "PointPrompt":
        return PointPrompt(torch.cat([self.coords, other.coords], dim=1), torch.cat([self.labels, other.labels], dim=1))


@dataclass
class FrameOutput:
    """What tracking keeps of B objects on one frame."""

    pred_masks: torch.Tensor  # Bx1xS/4xS/4 float32 mask logits
    obj_ptr: torch.Tensor  # BxC object pointer
    object_score_logits: torch.Tensor  # Bx1, > 0 where the object is present
    maskmem_features: Optional[torch.Tensor] = None  # BxMxhxw bfloat16 memory, once encoded

    def row(self, i: int) -> "FrameOutput":
        """Object ``i``'s output (B = 1), in storage of its own."""
        def take(x: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if x is None else x[i : i + 1].clone()

        return FrameOutput(
            take(self.pred_masks), take(self.obj_ptr), take(self.object_score_logits), take(self.maskmem_features)
        )


@dataclass
class MemoryBank:
    """One object's outputs by frame index: prompted (conditioning) frames and tracked frames.
    Dict order is the order frames were added; it is the memories' order in attention."""

    cond: Dict[int, FrameOutput] = field(default_factory=dict)
    non_cond: Dict[int, FrameOutput] = field(default_factory=dict)

    def get(self, frame_idx: int) -> Optional[FrameOutput]:
        return self.cond.get(frame_idx, self.non_cond.get(frame_idx))

    def layout(self, frame_idx: int, reverse: bool) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """The frames tracking ``frame_idx`` can attend to: the prompted frames (in order) and the
        tracked frames up to MAX_OBJECT_POINTERS - 1 back. Banks with equal layouts can be
        tracked together."""
        sign = -1 if reverse else 1
        recent = (frame_idx - sign * d for d in range(1, MAX_OBJECT_POINTERS))
        return tuple(self.cond), tuple(t for t in recent if t in self.non_cond)


class Tracker:
    """The video-path computations of a :class:`SAM2Model` (all under the caller's no_grad and
    autocast)."""

    def __init__(self, model: SAM2Model, binarize_prompted_masks: bool = True) -> None:
        self.model = model
        self.binarize_prompted_masks = binarize_prompted_masks
        self._memory_pos: Optional[torch.Tensor] = None

    def frame_features(self, image: torch.Tensor) -> FrameFeatures:
        """Features of one preprocessed frame 1x3xSxS."""
        out = self.model.forward_image(image)
        return FrameFeatures(out["backbone_fpn"][-1], out["vision_pos_enc"][-1], list(out["backbone_fpn"][:-1]))

    def track(
        self,
        features: FrameFeatures,
        frame_idx: int,
        banks: Optional[Sequence[MemoryBank]],
        num_frames: int,
        reverse: bool = False,
        points: Optional[PointPrompt] = None,
        mask_prompt: Optional[torch.Tensor] = None,
        prev_mask_logits: Optional[torch.Tensor] = None,
    ) -> Tuple[FrameOutput, torch.Tensor]:
        """Segment B objects on a frame.

        Arguments:
          features: the frame's features, expanded to B.
          banks: the B objects' memories, all with the same :meth:`MemoryBank.layout`, or None
            on a frame prompted before any tracking of the object (it is then segmented from its
            prompts alone).
          points: the frame's clicks/box, if any.
          mask_prompt: Bx1xSxS binary mask given as the object's mask on this frame (taken as
            the output, as Meta does); excludes ``points``.
          prev_mask_logits: Bx1xS/4xS/4 logits of an earlier prediction on this frame, refined
            by new ``points``.

        Returns the output (memory not yet encoded) and the Bx1xSxS mask logits for the memory
        encoder.
        """
        if mask_prompt is not None:
            return self._mask_as_output(features, mask_prompt)
        pix_feat = self._condition_on_memory(features, frame_idx, banks, num_frames, reverse)
        num_points = 0 if points is None else points.labels.shape[1]
        return self._decode(pix_feat, features.high_res, points, prev_mask_logits, multimask=num_points <= 1)

    def encode_memory(
        self, features: FrameFeatures, high_res_masks: torch.Tensor, object_score_logits: torch.Tensor, prompted: bool
    ) -> torch.Tensor:
        """Memory BxMxhxw (bfloat16, as Meta stores it) of masks Bx1xSxS on a frame; the masks of
        prompted frames are binarised first."""
        model = self.model
        if prompted and self.binarize_prompted_masks:
            mask = (high_res_masks > 0).float()
        else:
            mask = torch.sigmoid(high_res_masks)
        mask = mask * MEMORY_MASK_SCALE + MEMORY_MASK_BIAS
        memory = model.memory_encoder(features.vision_feats, mask, skip_mask_sigmoid=True)["vision_features"]
        if hasattr(model, "no_obj_embed_spatial"):  # SAM 2.1 marks memories of absent objects
            absent = (object_score_logits <= 0).to(memory.dtype)[..., None, None]
            memory = memory + absent * model.no_obj_embed_spatial[..., None, None]
        return memory.to(torch.bfloat16)

    def _condition_on_memory(
        self,
        features: FrameFeatures,
        frame_idx: int,
        banks: Optional[Sequence[MemoryBank]],
        num_frames: int,
        reverse: bool,
    ) -> torch.Tensor:
        """The frame's stride-16 features attending to each object's bank: BxCxhxw."""
        model = self.model
        feats = features.vision_feats
        b, c, h, w = feats.shape
        if banks is None:
            return feats + model.no_mem_embed.view(1, c, 1, 1)
        sign = -1 if reverse else 1  # direction of time while tracking
        bank = banks[0]  # all banks hold the same frames
        # (temporal position, prompted?, frame): prompted frames at position 0, then the previous
        # num_maskmem - 1 tracked frames
        memories = [(0, True, t) for t in bank.cond]
        for t_pos in range(1, model.num_maskmem):
            t = frame_idx - sign * (model.num_maskmem - t_pos)
            if t in bank.non_cond:
                memories.append((t_pos, False, t))
        memory_pos = self._memory_pos_encoding(h, w, feats)
        tokens = []
        for _, prompted, t in memories:
            stacked = torch.cat([(k.cond if prompted else k.non_cond)[t].maskmem_features for k in banks])
            tokens.append(stacked.to(feats.device, feats.dtype).flatten(2).transpose(1, 2))
        positions = [memory_pos + model.maskmem_tpos_enc[model.num_maskmem - t_pos - 1] for t_pos, _, _ in memories]

        pointers, pointer_pos = self._object_pointers(frame_idx, banks, num_frames, sign, b, c)
        memory = torch.cat(tokens + [pointers.to(feats.dtype)], dim=1)
        memory_pos = torch.cat([p.expand(b, -1, -1) for p in positions] + [pointer_pos.to(feats.dtype)], dim=1)
        curr = feats.flatten(2).transpose(1, 2)
        curr_pos = features.vision_pos.flatten(2).transpose(1, 2)
        out = model.memory_attention(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens=pointers.shape[1])
        return out.transpose(1, 2).reshape(b, c, h, w)

    def _object_pointers(
        self, frame_idx: int, banks: Sequence[MemoryBank], num_frames: int, sign: int, b: int, c: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Object pointers of prompted frames in the past and of up to 15 previous tracked
        frames, each split into C/M tokens: Bx(4P)xM and their temporal encodings."""
        model = self.model
        max_pointers = min(num_frames, MAX_OBJECT_POINTERS)
        bank = banks[0]  # all banks hold the same frames
        entries = [
            ((frame_idx - t) * sign if model.use_signed_tpos_enc_to_obj_ptrs else abs(frame_idx - t),
             [k.cond[t].obj_ptr for k in banks])
            for t in bank.cond
            if (t - frame_idx) * sign <= 0
        ]
        for distance in range(1, max_pointers):
            t = frame_idx - sign * distance
            if not 0 <= t < num_frames:
                break
            if t in bank.non_cond:
                entries.append((distance, [k.non_cond[t].obj_ptr for k in banks]))
        device = model.no_obj_ptr.device
        if not entries:
            return torch.zeros(b, 0, model.mem_dim, device=device), torch.zeros(b, 0, model.mem_dim, device=device)
        distances, ptrs = zip(*entries)
        pointers = torch.stack([torch.cat(p).to(device) for p in ptrs], dim=1)  # BxPxC
        if model.add_tpos_enc_to_obj_ptrs:
            relative = torch.tensor(distances, dtype=torch.float32, device=device) / (max_pointers - 1)
            if hasattr(model, "obj_ptr_tpos_proj"):
                pos = model.obj_ptr_tpos_proj(sine_encoding_1d(relative, c))
            else:
                pos = sine_encoding_1d(relative, model.mem_dim)
            pos = pos.unsqueeze(0).expand(b, -1, -1)
        else:
            pos = pointers.new_zeros(b, len(entries), model.mem_dim)
        split = c // model.mem_dim
        pointers = pointers.reshape(b, len(entries) * split, model.mem_dim)
        return pointers, pos.repeat_interleave(split, dim=1)

    def _memory_pos_encoding(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """Sine encoding of the memories' hxw grid, 1x(hw)xM (the same for every memory)."""
        if self._memory_pos is None or self._memory_pos.shape[1] != h * w or self._memory_pos.device != like.device:
            grid = like.new_zeros(1, self.model.mem_dim, h, w)
            self._memory_pos = self.model.memory_encoder.position_encoding(grid).flatten(2).transpose(1, 2)
        return self._memory_pos.to(like.dtype)

    def _decode(
        self,
        pix_feat: torch.Tensor,
        high_res: List[torch.Tensor],
        points: Optional[PointPrompt],
        mask_logits: Optional[torch.Tensor],
        multimask: bool,
    ) -> Tuple[FrameOutput, torch.Tensor]:
        """Prompt encoder and mask decoder on memory-conditioned features; the best mask by
        predicted IoU when ``multimask``; masks of absent objects set to NO_OBJECT_SCORE."""
        model = self.model
        b = pix_feat.shape[0]
        if points is None:  # a lone padding point, as Meta
            points = PointPrompt(
                torch.zeros(b, 1, 2, device=pix_feat.device),
                torch.full((b, 1), PADDING_LABEL, dtype=torch.int32, device=pix_feat.device),
            )
        sparse, dense = model.sam_prompt_encoder(points=(points.coords, points.labels), masks=mask_logits)
        masks, ious, tokens, object_score_logits = model.sam_mask_decoder(
            image_embeddings=pix_feat,
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            high_res_features=high_res,
        )
        present = object_score_logits > 0
        masks = torch.where(present[:, None, None], masks, NO_OBJECT_SCORE).float()
        token = tokens[:, 0]
        if multimask:
            best = ious.argmax(dim=-1)
            rows = torch.arange(b, device=masks.device)
            masks = masks[rows, best].unsqueeze(1)
            token = tokens[rows, best]
        high_res_masks = F.interpolate(masks, size=(model.image_size,) * 2, mode="bilinear", align_corners=False)
        obj_ptr = self._gate_pointer(model.obj_ptr_proj(token), present.to(token.dtype))
        return FrameOutput(masks, obj_ptr, object_score_logits), high_res_masks

    def _mask_as_output(self, features: FrameFeatures, mask_prompt: torch.Tensor) -> Tuple[FrameOutput, torch.Tensor]:
        """A given binary mask Bx1xSxS taken as the frame's output (logits -10/+10); its pointer
        comes from the decoder prompted with the downsampled mask, without memory."""
        model = self.model
        mask = mask_prompt.float()
        high_res_masks = mask * MASK_INPUT_SCALE + MASK_INPUT_BIAS
        low_res = F.interpolate(
            high_res_masks, size=(model.image_size // 4,) * 2, mode="bilinear", align_corners=False, antialias=True
        )
        decoded, _ = self._decode(
            features.vision_feats, features.high_res, None, model.mask_downsample(mask), multimask=False
        )
        present = (mask.flatten(1) > 0).any(dim=1, keepdim=True).float()
        obj_ptr = self._gate_pointer(decoded.obj_ptr, present)
        scores = present * MASK_INPUT_SCALE + MASK_INPUT_BIAS
        return FrameOutput(low_res, obj_ptr, scores), high_res_masks

    def _gate_pointer(self, obj_ptr: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Pointers of absent objects (present 0, Bx1) replaced by the learned ``no_obj_ptr``."""
        return present * obj_ptr + (1 - present) * self.model.no_obj_ptr
