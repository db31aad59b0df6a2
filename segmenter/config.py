"""Model variants: the YAML files in ``configs/`` read into validated dataclasses.

Every released SAM 2 and SAM 2.1 variant has one file. A variant can be named by its canonical
name (``sam2.1_hiera_large``), Meta's config name with or without folder and ``.yaml``
(``sam2_hiera_l.yaml``, ``configs/sam2.1/sam2.1_hiera_t.yaml``), its hub id
(``facebook/sam2.1-hiera-tiny``) or the path of a YAML file in the same format.
"""

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple, Union

import yaml

from .errors import GroundedSAM2Error


@dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk hyper-parameters (see :class:`segmenter.modeling.hiera.Hiera`)."""

    embed_dim: int
    num_heads: int
    stages: Tuple[int, ...]
    global_att_blocks: Tuple[int, ...]
    window_spec: Tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: Tuple[int, int] = (14, 14)


@dataclass(frozen=True)
class SAM2Config:
    """One SAM 2 variant: architecture, where its official weights live, and the SAM 2.1 flags."""

    name: str
    version: str
    hub_id: str
    checkpoint_file: str
    checkpoint_url: str
    trunk: HieraConfig
    backbone_channel_list: Tuple[int, ...]
    image_size: int = 1024
    aliases: Tuple[str, ...] = ()
    no_obj_embed_spatial: bool = False
    add_tpos_enc_to_obj_ptrs: bool = False
    proj_tpos_enc_in_obj_ptrs: bool = False
    use_signed_tpos_enc_to_obj_ptrs: bool = False

    @property
    def num_trunk_blocks(self) -> int:
        return sum(self.trunk.stages)


class ConfigError(GroundedSAM2Error, ValueError):
    """A variant name or config file that cannot be used."""


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def load_config(path: Union[str, Path]) -> SAM2Config:
    """Read and validate one variant YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read SAM 2 config {path}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a SAM 2 config: expected a mapping at top level")
    if "model" in data and "_target_" in str(data.get("model")):
        raise ConfigError(
            f"{path} is a Meta/hydra config; pass its name (e.g. 'sam2.1_hiera_t.yaml') instead of its path"
        )
    fields = {f.name for f in dataclasses.fields(SAM2Config)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}")
    try:
        trunk = HieraConfig(**{k: _tuples(v) for k, v in data.pop("trunk").items()})
        config = SAM2Config(trunk=trunk, **{k: _tuples(v) for k, v in data.items()})
    except (KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path}: incomplete or malformed SAM 2 config ({e})") from e
    if len(config.trunk.stages) != len(config.trunk.window_spec):
        raise ConfigError(f"{path}: trunk.stages and trunk.window_spec differ in length")
    return config


def config_dir() -> Path:
    """The folder holding the variant YAML files: ``configs/`` in a source checkout, installed
    as ``segmenter/configs`` by ``pip install``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "configs", here.parent / "configs"):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"SAM 2 configs not found next to {here}; the installation is incomplete")


@functools.cache
def variants() -> Dict[str, SAM2Config]:
    """All shipped variants by canonical name, SAM 2 then SAM 2.1, smallest first."""
    configs = [load_config(p) for p in config_dir().glob("*/*.yaml")]
    configs.sort(key=lambda c: (c.version, c.num_trunk_blocks))
    return {c.name: c for c in configs}


def _lookup_table() -> Dict[str, SAM2Config]:
    table = {}
    for config in variants().values():
        for key in (config.name, config.hub_id, *config.aliases):
            table[key.lower()] = config
    return table


def resolve_config(name: Union[str, Path, SAM2Config]) -> SAM2Config:
    """A variant from any of its names (see module docstring) or from a YAML file path."""
    if isinstance(name, SAM2Config):
        return name
    text = str(name)
    key = text.replace("\\", "/").rsplit("/", 1)[-1] if not text.startswith("facebook/") else text
    key = key[: -len(".yaml")] if key.endswith(".yaml") else key
    table = _lookup_table()
    if key.lower() in table:
        return table[key.lower()]
    if Path(text).is_file():
        return load_config(text)
    raise ConfigError(f"unknown SAM 2 variant or config {text!r}; known variants: {', '.join(variants())}")
