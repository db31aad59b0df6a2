"""grounded-sam2: text ontology -> Florence-2 boxes -> built-in SAM 2 masks -> datasets.

The segmentation stage is the :mod:`segmenter` package (built-in SAM 2)."""

__version__ = "0.1.0"
