"""The grounding stage: text prompts -> boxes, behind one interface (:class:`Grounder`).

- :mod:`.base`: the interface, its result (:class:`GroundedBox`) and config base class;
- :mod:`.registry`: the backends by name and building one from a spec (``"florence2"``,
  ``"florence2:<hub id or dir>"``);
- :mod:`.matching`: mapping returned phrases back to prompts, for every backend;
- :mod:`.florence2` and :mod:`.florence2_tokens`: the Florence-2 backend and its token parsing.
"""

from .base import GroundedBox, Grounder, GrounderConfig, GroundingModelError
from .florence2 import DEFAULT_FLORENCE, Florence2Config, Florence2Grounder
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
]
