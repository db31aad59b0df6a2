"""One configuration: frozen, validated dataclasses, each default written once.

Each stage's settings live next to the stage (:class:`~grounded_sam2.grounding.GrounderConfig`
per backend, :class:`~grounded_sam2.filters.FilterConfig`,
:class:`~grounded_sam2.segmentation.SegmenterConfig`); :class:`PipelineConfig` puts them
together with the ontology and :class:`DeviceConfig`. Its :meth:`~PipelineConfig.to_dict` is what
a dataset's manifest records, and :meth:`~PipelineConfig.from_dict` rebuilds the configuration
from it.

The flat option names that ``GroundedSAM2(...)`` and the command line take are mapped here, and
only here (:meth:`PipelineConfig.from_options`):

- ``grounder``: a backend spec, ``"florence2"`` (the default), ``"grounding-dino"``,
  ``"mm-grounding-dino"`` or ``"owlv2"``, optionally with ``":<hub id or dir>"``; ``florence``: the
  Florence-2 checkpoint (the same as ``grounder="florence2:<it>"``);
- the grounder's own options, the fields of its config: Florence-2 ``strategy``, ``num_beams``,
  ``max_new_tokens``, ``no_repeat_ngram_size``, ``batch_size`` (rows per generate call); the
  Grounding DINO family ``box_threshold``, ``text_threshold``, ``batch_size`` (images per pass);
  OWLv2 ``box_threshold``, ``batch_size``;
- the filters: ``min_confidence``, ``nms_threshold`` (None: off), ``class_agnostic_nms``,
  ``min_box_area``;
- the segmenter: ``sam2``, ``tighten_boxes``;
- ``device``, ``bf16``, ``threads`` and ``compile``.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

import torch

from segmenter.device import resolve_device

from .errors import SettingsError
from .filters import FilterConfig
from .grounding import DEFAULT_GROUNDER, GrounderConfig, grounder_config, grounder_config_from_dict
from .ontology import Ontology
from .segmentation import SegmenterConfig


@dataclass(frozen=True)
class DeviceConfig:
    """Where the models run, in which precision, and with how many CPU threads.

    On a CPU the number of torch threads changes results in their last digits (reductions are
    split differently), so it is part of the configuration: a dataset's manifest records the
    count used, and a resume with another is refused."""

    device: Optional[str] = None  # cpu, cuda, cuda:1, mps; None: the best available
    bf16: bool = True  # bfloat16 on CUDA for every model (ignored elsewhere)
    threads: Optional[int] = None  # torch threads on a CPU; None: torch's default for this machine
    compile: bool = False  # torch.compile the models' heavy functions (grounded_sam2.speed)

    def __post_init__(self) -> None:
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise SettingsError(f"threads must be a whole number of at least 1, got {self.threads!r}")

    def resolve(self) -> torch.device:
        """The device, with the thread count applied (to this process) on a CPU."""
        device = resolve_device(self.device)
        if device.type == "cpu" and self.threads is not None:
            torch.set_num_threads(self.threads)
        return device

    def describe(self, device: torch.device) -> Dict[str, Any]:
        """What a manifest records: the device type, bf16, on a CPU the thread count in use, and
        ``compile`` when it is on (so that datasets made without it keep their manifest)."""
        threads = (self.threads or torch.get_num_threads()) if device.type == "cpu" else None
        compiled = {"compile": True} if self.compile else {}
        return {"device": device.type, "bf16": self.bf16, "threads": threads, **compiled}


def pick_fields(options: Dict[str, Any], config_class: type) -> Dict[str, Any]:
    """Remove from ``options`` and return those that are fields of the dataclass ``config_class``:
    how flat options are routed to the config they belong to."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return {name: options.pop(name) for name in list(options) if name in names}


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that decides a text-grounded pipeline's results."""

    ontology: Ontology
    grounder: GrounderConfig = field(default_factory=grounder_config)
    filters: FilterConfig = FilterConfig()
    segmenter: SegmenterConfig = SegmenterConfig()
    placement: DeviceConfig = DeviceConfig()

    def __post_init__(self) -> None:
        object.__setattr__(self, "ontology", Ontology.load(self.ontology))

    @classmethod
    def from_options(cls, ontology: Any, **options: Any) -> "PipelineConfig":
        """The configuration from an ontology (anything :meth:`Ontology.load` takes) and flat
        options (see the module docstring); every option left out keeps its default. The
        ontology is checked first, before any option."""
        ontology = Ontology.load(ontology)
        options = dict(options)
        filters = FilterConfig(**pick_fields(options, FilterConfig))
        segmenter = SegmenterConfig(**pick_fields(options, SegmenterConfig))
        placement = DeviceConfig(**pick_fields(options, DeviceConfig))
        spec = options.pop("grounder", DEFAULT_GROUNDER)
        florence = options.pop("florence", None)
        if florence is not None:
            if spec.partition(":")[0] != "florence2":
                raise SettingsError(f"florence= names a Florence-2 checkpoint, but the grounder is {spec!r}")
            spec = f"florence2:{florence}"
        return cls(ontology, grounder_config(spec, **options), filters, segmenter, placement)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able settings, as a dataset's manifest records them."""
        return {
            "ontology": [list(pair) for pair in self.ontology.to_dict().items()],
            "grounder": self.grounder.to_dict(),
            "filters": dataclasses.asdict(self.filters),
            "segmenter": self.segmenter.to_dict(),
            "placement": dataclasses.asdict(self.placement),
        }

    def describe(self, device: torch.device) -> Dict[str, Any]:
        """:meth:`to_dict` with the placement as used on ``device`` (what a manifest records)."""
        return {**self.to_dict(), "placement": self.placement.describe(device)}

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> "PipelineConfig":
        """The configuration :meth:`to_dict` (or a manifest's ``pipeline``) describes. A SAM 2
        that was passed as a built model is recorded by its checksum only and cannot be rebuilt."""
        segmenter = dict(settings["segmenter"])
        if isinstance(segmenter["sam2"], Mapping):
            raise SettingsError(
                f"the SAM 2 of these settings was a model object ({segmenter['sam2'].get('variant')}); "
                f"it cannot be rebuilt from its checksum: pass the model or its checkpoint"
            )
        return cls(
            Ontology.from_pairs(settings["ontology"]),
            grounder_config_from_dict(settings["grounder"]),
            FilterConfig(**settings["filters"]),
            SegmenterConfig(**segmenter),
            DeviceConfig(**settings["placement"]),
        )
