"""The Grounding DINO family as grounding backends: ``grounding-dino``
(``GroundingDinoForObjectDetection``) and ``mm-grounding-dino`` (``MMGroundingDinoForObjectDetection``,
which also loads LLMDet checkpoints), both native in transformers.

The prompts go in one caption, ``"p1. p2. p3."`` (``.`` separates phrases, so it is removed from
the prompts themselves), split into chunks that fit the text encoder (``max_text_len``, 256
tokens in the released models); each chunk is one forward pass. For every one of the model's
queries (candidate boxes):

- its score for a prompt is the largest sigmoid of its text logits over that prompt's tokens
  (found from the tokenizer's offset mapping);
- the box goes to the prompt with the best score, which is its confidence;
- it is kept when its largest score over all tokens is above ``box_threshold`` and its best
  prompt's score is above ``text_threshold``, as in the original Grounded-SAM, and when some of
  it lies inside the image (boxes are clipped to the image).

transformers' own post-processing returns the decoded text of the tokens above the threshold,
not which prompt they belong to; this does the same arithmetic with prompt indices. Images are
padded to the largest of a forward pass, which changes the results slightly, so only images of
the same size share a pass: a result does not depend on what else is in the batch.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from segmenter.device import resolve_device

from ..errors import SettingsError
from .base import GroundedBox, GrounderConfig, GroundingModelError, boxes_to_pixels
from .loading import load_model_and_processor

CAPTION_SEPARATOR = ". "


@dataclass(frozen=True)
class GroundingDinoConfig(GrounderConfig):
    """Which Grounding DINO and its thresholds."""

    backend = "grounding-dino"
    display_name = "Grounding DINO"
    model_type = "grounding-dino"
    model_class = "GroundingDinoForObjectDetection"
    checkpoint: str = "IDEA-Research/grounding-dino-tiny"
    box_threshold: float = 0.35  # a query's best score over all tokens must exceed it
    text_threshold: float = 0.25  # ... and its best prompt's score
    batch_size: int = 4  # images (of one size) per forward pass

    def __post_init__(self) -> None:
        for name in ("box_threshold", "text_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SettingsError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.batch_size < 1:
            raise SettingsError(f"batch_size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class MMGroundingDinoConfig(GroundingDinoConfig):
    """Which MM-Grounding-DINO (or LLMDet) and its thresholds."""

    backend = "mm-grounding-dino"
    display_name = "MM-Grounding-DINO"
    model_type = "mm-grounding-dino"
    model_class = "MMGroundingDinoForObjectDetection"
    checkpoint: str = "openmmlab-community/mm_grounding_dino_tiny_o365v1_goldg"


@dataclass(frozen=True)
class Chunk:
    """One caption and, for each of its prompts, the positions of its tokens."""

    caption: str
    prompts: Tuple[str, ...]
    token_spans: Tuple[Tuple[int, ...], ...]


def model_prompt(prompt: str) -> str:
    """A prompt as the caption holds it: without ``.`` (the phrase separator), spaces folded."""
    return " ".join(prompt.replace(".", " ").split())


class GroundingDinoGrounder:
    """Finds boxes for text prompts with a Grounding DINO model (a
    :class:`~grounded_sam2.grounding.Grounder`)."""

    def __init__(self, config: GroundingDinoConfig = GroundingDinoConfig(), device=None, bf16: bool = True) -> None:
        self.config = config
        self.device = resolve_device(device)
        self.processor, self.model = load_model_and_processor(config, self.device, bf16)
        self._max_tokens = self.model.config.max_text_len

    def describe(self) -> Dict[str, Any]:
        return self.config.to_dict()

    def check_prompts(self, prompts: Sequence[str]) -> None:
        """Raises :class:`GroundingModelError` for a prompt that alone does not fit the text encoder."""
        self.chunks(prompts)

    def chunks(self, prompts: Sequence[str]) -> List[Chunk]:
        """The prompts in as few captions as fit ``max_text_len`` tokens, in order."""
        groups: List[List[str]] = []
        for prompt in prompts:
            if not model_prompt(prompt):
                raise GroundingModelError(f"prompt {prompt!r} is empty once '.' (the phrase separator) is removed")
            if groups and self._chunk(groups[-1] + [prompt]) is not None:
                groups[-1].append(prompt)
            elif self._chunk([prompt]) is not None:
                groups.append([prompt])
            else:
                raise GroundingModelError(
                    f"prompt {prompt[:60]!r} is too long for {self.config.backend} ({self._max_tokens} text tokens)"
                )
        return [self._chunk(group) for group in groups]

    def _chunk(self, prompts: List[str]):
        """The chunk of ``prompts``, or None when they do not fit."""
        texts = [model_prompt(p) for p in prompts]
        caption = CAPTION_SEPARATOR.join(texts) + "."
        encoded = self.processor.tokenizer(caption, return_offsets_mapping=True)
        if len(encoded["input_ids"]) > self._max_tokens:
            return None
        starts = np.cumsum([0] + [len(t) + len(CAPTION_SEPARATOR) for t in texts[:-1]])
        offsets = encoded["offset_mapping"]
        spans = [tuple(i for i, (a, b) in enumerate(offsets) if b > a and a >= start and b <= start + len(text))
                 for start, text in zip(starts, texts)]
        for prompt, span in zip(prompts, spans):
            if not span:
                raise GroundingModelError(f"prompt {prompt!r} gives no token to {self.config.backend}")
        return Chunk(caption, tuple(prompts), tuple(spans))

    def prepare(self, image: np.ndarray) -> None:
        """Nothing is made ahead: the processor takes the image with the text."""
        return None

    @torch.no_grad()
    def ground(self, images: Sequence[np.ndarray], prompts: Sequence[str],
               prepared: Optional[Sequence[None]] = None) -> List[List[GroundedBox]]:
        """Boxes for ``prompts`` in each RGB HxWx3 uint8 image: one list per image, chunk by chunk.
        ``prepared`` is unused (see :meth:`prepare`)."""
        from PIL import Image

        chunks = self.chunks(prompts)
        results: List[List[GroundedBox]] = [[] for _ in images]
        by_size: Dict[Tuple[int, int], List[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.shape[:2], []).append(i)
        for (height, width), indices in by_size.items():
            for start in range(0, len(indices), self.config.batch_size):
                batch = indices[start : start + self.config.batch_size]
                pil = [Image.fromarray(np.ascontiguousarray(images[i])) for i in batch]
                for chunk in chunks:
                    for i, boxes in zip(batch, self._forward(pil, chunk, width, height)):
                        results[i] += boxes
        return results

    def _forward(self, images, chunk: Chunk, width: int, height: int) -> List[List[GroundedBox]]:
        inputs = self.processor(images=images, text=[chunk.caption] * len(images), return_tensors="pt").to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        outputs = self.model(**inputs)
        probs = outputs.logits.float().sigmoid()  # images x queries x max_text_len (-inf -> 0 past the text)
        xyxy, inside = boxes_to_pixels(outputs.pred_boxes.float(), (width, height), width, height)
        per_prompt = torch.stack([probs[..., list(span)].amax(dim=-1) for span in chunk.token_spans], dim=-1)
        best_score, best_prompt = per_prompt.max(dim=-1)
        keep = (probs.amax(dim=-1) > self.config.box_threshold) & (best_score > self.config.text_threshold) & inside
        results = []
        for b in range(len(images)):
            found = []
            for q in torch.nonzero(keep[b]).flatten().tolist():
                prompt = chunk.prompts[int(best_prompt[b, q])]
                box = tuple(xyxy[b, q].tolist())
                found.append(GroundedBox(prompt, model_prompt(prompt), box, float(best_score[b, q])))
            results.append(found)
        return results
