"""The grounding stage: text prompts -> boxes, behind one interface (:class:`Grounder`).

- :mod:`.base`: the interface, its result (:class:`GroundedBox`) and config base class;
- :mod:`.registry`: the backends by name and building one from a spec (``"florence2"``,
  ``"florence2:<hub id or dir>"``);
- :mod:`.matching`: mapping returned phrases back to prompts, for every backend;
- :mod:`.loading`: loading a backend's processor and model, with clear errors;
- the backends: :mod:`.florence2` (+ :mod:`.florence2_tokens`, its token parsing),
  :mod:`.grounding_dino` (Grounding DINO and MM-Grounding-DINO / LLMDet), :mod:`.owlv2`.
"""

from .base import GroundedBox, Grounder, GrounderConfig, GroundingModelError
from .florence2 import DEFAULT_FLORENCE, Florence2Config, Florence2Grounder
from .grounding_dino import GroundingDinoConfig, GroundingDinoGrounder, MMGroundingDinoConfig
from .owlv2 import Owlv2Config, Owlv2Grounder
from .registry import DEFAULT_GROUNDER, GROUNDERS, build_grounder, grounder_config, grounder_config_from_dict

__all__ = [
    "Grounder",
    "GroundedBox",
    "GrounderConfig",
    "GroundingModelError",
    "GROUNDERS",
    "DEFAULT_GROUNDER",
    "build_grounder",
    "grounder_config",
    "grounder_config_from_dict",
    "DEFAULT_FLORENCE",
    "Florence2Config",
    "Florence2Grounder",
    "GroundingDinoConfig",
    "MMGroundingDinoConfig",
    "GroundingDinoGrounder",
    "Owlv2Config",
    "Owlv2Grounder",
]
