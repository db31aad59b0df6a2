"""grounded-sam2: text ontology -> grounding boxes (Florence-2) -> built-in SAM 2 masks -> datasets.

    from autodistill.detection import CaptionOntology
    from grounded_sam2 import GroundedSAM2
    model = GroundedSAM2(ontology=CaptionOntology({"dog": "dog"}))
    detections = model.predict("dog.jpeg")          # sv.Detections with masks

Without autodistill: ``Pipeline(PipelineConfig.from_options(ontology, ...))``. The segmentation
stage is the :mod:`segmenter` package (built-in SAM 2); docs/architecture.md maps the modules.
"""

from .errors import GroundedSAM2Error
from .ontology import Ontology, OntologyError

__version__ = "0.1.0"
__all__ = ["GroundedSAM2", "Pipeline", "PipelineConfig", "Ontology", "OntologyError", "GroundedSAM2Error",
           "__version__"]

# These pull in transformers, supervision or autodistill: imported on first use.
_LAZY = {"GroundedSAM2": ".model", "Pipeline": ".pipeline", "PipelineConfig": ".config"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'grounded_sam2' has no attribute {name!r}")
