"""The grounding backends by name, and building one from a spec or a manifest.

A spec names a backend and optionally its checkpoint: ``"florence2"`` (the backend's default
checkpoint) or ``"grounding-dino:<hub id or directory>"``. Options are the fields of the
backend's config class (``Florence2Config``, ``GroundingDinoConfig``, ``MMGroundingDinoConfig``,
``Owlv2Config``).
"""

import dataclasses
from typing import Any, Callable, Dict, Mapping, NamedTuple, Type

from ..errors import SettingsError
from .base import Grounder, GrounderConfig
from .florence2 import Florence2Config, Florence2Grounder
from .grounding_dino import GroundingDinoConfig, GroundingDinoGrounder, MMGroundingDinoConfig
from .owlv2 import Owlv2Config, Owlv2Grounder

DEFAULT_GROUNDER = "florence2"


class Backend(NamedTuple):
    config: Type[GrounderConfig]
    build: Callable[..., Grounder]  # build(config, device, bf16)


GROUNDERS: Dict[str, Backend] = {
    "florence2": Backend(Florence2Config, Florence2Grounder),
    "grounding-dino": Backend(GroundingDinoConfig, GroundingDinoGrounder),
    "mm-grounding-dino": Backend(MMGroundingDinoConfig, GroundingDinoGrounder),
    "owlv2": Backend(Owlv2Config, Owlv2Grounder),
}


def _backend(name: str) -> Backend:
    if name not in GROUNDERS:
        raise SettingsError(f"unknown grounding backend {name!r}; known backends: {', '.join(GROUNDERS)}")
    return GROUNDERS[name]


def grounder_config(spec: str = DEFAULT_GROUNDER, **options: Any) -> GrounderConfig:
    """The config of the backend ``spec`` names (``"name"`` or ``"name:checkpoint"``), with
    ``options`` (its config fields) set; an unknown backend or option is a :class:`SettingsError`
    that lists the known ones."""
    name, _, checkpoint = str(spec).partition(":")
    backend = _backend(name)
    if checkpoint:
        options = {**options, "checkpoint": checkpoint}
    fields = [f.name for f in dataclasses.fields(backend.config)]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise SettingsError(f"the {name} grounder has no option {', '.join(unknown)}; its options: {', '.join(fields)}")
    return backend.config(**options)


def grounder_config_from_dict(settings: Mapping[str, Any]) -> GrounderConfig:
    """The config :meth:`GrounderConfig.to_dict` wrote (a manifest's ``grounder``)."""
    settings = dict(settings)
    return grounder_config(settings.pop("backend"), **settings)


def build_grounder(config: GrounderConfig, device=None, bf16: bool = True) -> Grounder:
    """The grounder ``config`` describes, loaded on ``device``."""
    return _backend(config.backend).build(config, device=device, bf16=bf16)
