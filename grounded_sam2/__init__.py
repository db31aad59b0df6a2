"""grounded-sam2: text ontology -> Florence-2 boxes -> built-in SAM 2 masks -> datasets.

    from autodistill.detection import CaptionOntology
    from grounded_sam2 import GroundedSAM2
    model = GroundedSAM2(ontology=CaptionOntology({"dog": "dog"}))
    detections = model.predict("dog.jpeg")          # sv.Detections with masks

The segmentation stage is the :mod:`segmenter` package (built-in SAM 2).
"""

from .ontology import Ontology, OntologyError

__version__ = "0.1.0"
__all__ = ["GroundedSAM2", "Ontology", "OntologyError", "__version__"]


def __getattr__(name: str):
    # GroundedSAM2 pulls in transformers, supervision and autodistill: import it on first use.
    if name == "GroundedSAM2":
        from .model import GroundedSAM2

        return GroundedSAM2
    raise AttributeError(f"module 'grounded_sam2' has no attribute {name!r}")
