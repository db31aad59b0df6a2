"""OWLv2 as a grounding backend (``owlv2``, transformers' ``Owlv2ForObjectDetection``).

Every prompt is one text query; all of an image's queries go through one forward pass with it,
and several images share a pass (each is padded to a square on its own, so a result does not
depend on the others). Every image of a pass gets the same query list, so the processor never
pads a list with ``" "`` queries, which OWLv2 does not mask and which could win a box.

Each of the model's boxes goes to the query with the highest sigmoid logit, which is its
confidence; boxes above ``box_threshold`` are kept. The padded square puts boxes in
max(height, width) pixels; they are clipped to the image, and those lying wholly in the padding
are dropped. A query is at most 16 tokens: longer prompts are truncated, with a warning.
"""

import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from segmenter.device import resolve_device

from ..errors import SettingsError
from .base import GroundedBox, GrounderConfig, boxes_to_pixels
from .loading import load_model_and_processor


@dataclass(frozen=True)
class Owlv2Config(GrounderConfig):
    """Which OWLv2 and its threshold."""

    backend = "owlv2"
    display_name = "OWLv2"
    model_type = "owlv2"
    model_class = "Owlv2ForObjectDetection"
    checkpoint: str = "google/owlv2-base-patch16-ensemble"
    box_threshold: float = 0.1  # minimum sigmoid score of a box's best query
    batch_size: int = 4  # images per forward pass

    def __post_init__(self) -> None:
        if not 0.0 <= self.box_threshold <= 1.0:
            raise SettingsError(f"box_threshold must be in [0, 1], got {self.box_threshold}")
        if self.batch_size < 1:
            raise SettingsError(f"batch_size must be at least 1, got {self.batch_size}")


class Owlv2Grounder:
    """Finds boxes for text prompts with OWLv2 (a :class:`~grounded_sam2.grounding.Grounder`)."""

    def __init__(self, config: Owlv2Config = Owlv2Config(), device=None, bf16: bool = True) -> None:
        self.config = config
        self.device = resolve_device(device)
        self.processor, self.model = load_model_and_processor(config, self.device, bf16)
        self._max_tokens = self.model.config.text_config.max_position_embeddings

    def describe(self) -> Dict[str, Any]:
        return self.config.to_dict()

    def check_prompts(self, prompts: Sequence[str]) -> None:
        """Warns about prompts longer than a query (they are truncated)."""
        for prompt in prompts:
            length = len(self.processor.tokenizer(prompt)["input_ids"])
            if length > self._max_tokens:
                warnings.warn(f"prompt {prompt!r} has {length} tokens; OWLv2 reads the first {self._max_tokens}",
                              stacklevel=2)

    def prepare(self, image: np.ndarray) -> None:
        """Nothing is made ahead: the processor takes the image with the text."""
        return None

    @torch.no_grad()
    def ground(self, images: Sequence[np.ndarray], prompts: Sequence[str],
               prepared: Optional[Sequence[None]] = None) -> List[List[GroundedBox]]:
        """Boxes for ``prompts`` in each RGB HxWx3 uint8 image: one list per image. ``prepared`` is unused
        (see :meth:`prepare`)."""
        from PIL import Image

        results: List[List[GroundedBox]] = []
        for start in range(0, len(images), self.config.batch_size):
            batch = [np.ascontiguousarray(image) for image in images[start : start + self.config.batch_size]]
            inputs = self.processor(
                images=[Image.fromarray(image) for image in batch], text=[list(prompts)] * len(batch),
                truncation=True, max_length=self._max_tokens, return_tensors="pt",
            ).to(self.device)
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
            outputs = self.model(**inputs)
            scores, best = outputs.logits.float().sigmoid().max(dim=-1)  # images x boxes
            for b, image in enumerate(batch):
                height, width = image.shape[:2]
                side = max(height, width)  # the padded square the boxes are relative to
                pixels, inside = boxes_to_pixels(outputs.pred_boxes[b].float(), (side, side), width, height)
                found = []
                for q in torch.nonzero((scores[b] > self.config.box_threshold) & inside).flatten().tolist():
                    prompt = prompts[int(best[b, q])]
                    found.append(GroundedBox(prompt, prompt, tuple(pixels[q].tolist()), float(scores[b, q])))
                results.append(found)
        return results
