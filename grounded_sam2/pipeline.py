"""The text-grounded pipeline, without autodistill: ontology -> grounder -> filters ->
segmenter -> ``sv.Detections`` (see :mod:`grounded_sam2.detections`).

    pipeline = Pipeline(PipelineConfig.from_options({"dog": "dog"}, sam2="sam2.1_hiera_tiny.pt"))
    [detections] = pipeline.predict_batch([rgb_uint8_image])
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import supervision as sv

from segmenter import SAM2Model
from segmenter.checkpoint import missing_checkpoint as missing_sam2

from .config import PipelineConfig
from .errors import ModelNotAvailableError
from .filters import filter_boxes
from .grounding import Grounder, GrounderConfig, build_grounder
from .grounding.loading import missing_checkpoint as missing_grounder
from .ontology import Ontology
from .segmentation import BoxRequest, Segmenter, given_box_requests
from .speed import compile_models


@dataclass(frozen=True)
class PreparedImage:
    """An RGB HxWx3 uint8 image with what the grounder makes of it ahead
    (:meth:`Pipeline.prepare`); :meth:`Pipeline.predict_batch` takes it in place of the image."""

    rgb: np.ndarray
    grounder_inputs: Any


class Pipeline:
    """Masks for the ontology's prompts in RGB images."""

    def __init__(self, config: PipelineConfig, grounder: Optional[Grounder] = None,
                 segmenter: Optional[Segmenter] = None) -> None:
        """Builds both models from ``config``, on its device, unless already built ones are
        given (``grounder``, ``segmenter``)."""
        self.config = config
        require_models(config.grounder if grounder is None else None,
                       config.segmenter.sam2 if segmenter is None else None)
        self.device = config.placement.resolve()
        bf16 = config.placement.bf16
        self.grounder = grounder if grounder is not None else build_grounder(config.grounder, self.device, bf16)
        self.grounder.check_prompts(config.ontology.prompts)  # before the first image
        self.segmenter = segmenter if segmenter is not None else Segmenter(config.segmenter, self.device, bf16)
        if config.placement.compile:
            compile_models(self.segmenter.model, self.grounder)

    @property
    def ontology(self) -> Ontology:
        return self.config.ontology

    @property
    def classes(self) -> List[str]:
        """Class names; a detection's ``class_id`` indexes this list."""
        return list(self.ontology.classes)

    def prepare(self, image: np.ndarray) -> PreparedImage:
        """``image`` with the grounder's inputs made on the CPU (see the grounder's ``prepare``),
        for :meth:`predict_batch`: labeling's loader threads call it, off the device's path."""
        return PreparedImage(image, self.grounder.prepare(image))

    def ground(self, images: Sequence[np.ndarray], prepared: Optional[Sequence[Any]] = None) -> List[List[BoxRequest]]:
        """The filtered grounding boxes of RGB uint8 images, one list per image (the first stage
        of :meth:`predict_batch`; video labeling also uses it to start and confirm tracks).
        ``prepared``: the grounder's inputs of each image, made ahead."""
        ontology = self.ontology
        grounded = self.grounder.ground(list(images), ontology.prompts, prepared)
        return [
            [BoxRequest(b.xyxy, ontology.class_id(b.prompt), ontology.class_of(b.prompt), b.confidence, b.prompt)
             for b in filter_boxes(boxes, self.config.filters, ontology.class_id)]
            for boxes in grounded
        ]

    def predict_batch(self, images: Sequence[Union[np.ndarray, PreparedImage]]) -> List[sv.Detections]:
        """Detections with NxHxW boolean masks for RGB uint8 images (or :meth:`prepare` of
        them: the same detections): grounded together, encoded by SAM 2 in one pass."""
        rgb = [image.rgb if isinstance(image, PreparedImage) else image for image in images]
        inputs = [image.grounder_inputs if isinstance(image, PreparedImage) else None for image in images]
        prepared = inputs if all(i is not None for i in inputs) else None
        return self.segmenter.segment(rgb, self.ground(rgb, prepared))

    def segment_boxes(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray],
                      class_ids: Sequence[np.ndarray]) -> List[sv.Detections]:
        """Masks for boxes you already have (grounding skipped): per RGB uint8 image an Nx4 XYXY
        array and N class ids (indexes of :attr:`classes`). Confidence is SAM 2's predicted IoU."""
        requests = [given_box_requests(xyxy, ids, self.ontology.classes) for xyxy, ids in zip(boxes, class_ids)]
        return self.segmenter.segment(list(images), requests)

    def describe(self) -> Dict[str, Any]:
        """The pipeline's provenance, as a dataset's manifest records it: the configuration with
        the grounder's and segmenter's own descriptions and the device type actually used."""
        return {**self.config.describe(self.device), "grounder": self.grounder.describe(),
                "segmenter": self.segmenter.describe()}


def require_models(grounder: Optional[GrounderConfig], sam2) -> None:
    """Raises :class:`ModelNotAvailableError` listing every model (of those given) that is neither
    on disk nor to be had from the hub here, before any of them is loaded."""
    problems = [
        problem for problem in (
            missing_grounder(grounder) if grounder is not None else None,
            missing_sam2(sam2) if sam2 is not None and not isinstance(sam2, SAM2Model) else None,
        ) if problem
    ]
    if problems:
        raise ModelNotAvailableError("\n".join([
            "models not available:", *(f"- {p}" for p in problems),
            "To try the tool without them: `grounded-sam2 make-tiny-models tiny/` writes tiny random models "
            "(meaningless labels) to pass as --florence tiny/florence2 --sam2 tiny/sam2.pt.",
        ]))


def quiet_model_loading() -> None:
    """No progress bars from transformers and huggingface_hub (loading weights, downloads): for
    --no-progress and for worker processes, whose bars would interleave."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging

    disable_progress_bars()
    logging.disable_progress_bar()
