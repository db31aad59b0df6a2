"""What every grounding backend is: a :class:`Grounder` that finds :class:`GroundedBox` es for
text prompts, built from a frozen, validated :class:`GrounderConfig`."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np
import torch

from ..errors import GroundedSAM2Error


class GroundingModelError(GroundedSAM2Error, RuntimeError):
    """A grounding model that could not be loaded or used."""


@dataclass(frozen=True)
class GroundedBox:
    """A box found for one prompt: XYXY in continuous pixel coordinates of the original image
    (see :mod:`grounded_sam2.detections`), the phrase the model gave and its confidence in [0, 1]."""

    prompt: str
    phrase: str
    xyxy: Tuple[float, float, float, float]
    confidence: float


@dataclass(frozen=True)
class GrounderConfig:
    """Settings of one grounding backend; each backend subclasses it with its own fields (all
    with defaults) and names itself in :attr:`backend`. ``checkpoint`` is a hub id or a local
    directory."""

    backend: ClassVar[str] = ""  # the registry's name
    display_name: ClassVar[str] = ""  # for messages
    model_type: ClassVar[str] = ""  # the transformers config's model_type a checkpoint must have
    model_class: ClassVar[str] = ""  # the transformers class that loads it
    checkpoint_help: ClassVar[str] = ""  # added to the message for a checkpoint that cannot be loaded
    checkpoint: str = ""

    @property
    def prompts_independent(self) -> bool:
        """Whether a prompt's boxes are the same whatever other prompts are asked with it (each
        prompt its own request). Backends that read all prompts at once (a caption, one text of
        phrases, queries competing for each box) are not."""
        return False

    def to_dict(self) -> Dict[str, Any]:
        """The JSON-able settings, ``backend`` first; a local checkpoint as its absolute path, so
        that the same model named two ways records the same settings."""
        settings = dataclasses.asdict(self)
        if Path(self.checkpoint).expanduser().exists():
            settings["checkpoint"] = str(Path(self.checkpoint).expanduser().resolve())
        return {"backend": self.backend, **settings}


class Grounder(Protocol):
    """Finds boxes for text prompts in RGB images."""

    config: GrounderConfig

    def check_prompts(self, prompts: Sequence[str]) -> None:
        """Raises :class:`GroundingModelError` for prompts the model cannot take (too long), so
        that a pipeline fails before its first image."""

    def prepare(self, image: np.ndarray) -> Any:
        """What the model takes of one HxWx3 RGB uint8 image that can be made ahead on the CPU
        (a loader thread calls it while the device works on other images), for ``ground``'s
        ``prepared``; None when the backend makes nothing ahead. Pure: the boxes are the same
        with it and without."""

    def ground(self, images: Sequence[np.ndarray], prompts: Sequence[str],
               prepared: Optional[Sequence[Any]] = None) -> List[List[GroundedBox]]:
        """Boxes for ``prompts`` in each HxWx3 RGB uint8 image: one list per image, each box
        naming the prompt (one of ``prompts``, never another text) it was found for.
        ``prepared``: :meth:`prepare` of each image, made ahead (None: made here)."""

    def describe(self) -> Dict[str, Any]:
        """JSON-able settings that decide the boxes (backend, checkpoint, options), for a
        dataset's manifest."""


def boxes_to_pixels(
    cxcywh: torch.Tensor, scale: Tuple[float, float], width: int, height: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Normalized centre/size boxes (...x4, how DETR-style models predict them) as XYXY pixels,
    multiplied by ``scale`` (x, y) and clipped to a ``width`` x ``height`` image; and which of them
    keep an area inside the image (a box predicted in the padding around an image has none)."""
    centre, size = cxcywh[..., :2], cxcywh[..., 2:]
    xyxy = torch.cat([centre - size / 2, centre + size / 2], dim=-1) * cxcywh.new_tensor([*scale, *scale])
    xyxy = torch.minimum(xyxy.clamp(min=0), cxcywh.new_tensor([width, height, width, height]))
    return xyxy, (xyxy[..., 2] > xyxy[..., 0]) & (xyxy[..., 3] > xyxy[..., 1])
