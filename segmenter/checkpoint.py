"""Finding, reading and checking SAM 2 checkpoints in Meta's format (``{"model": state_dict}``).

Files are read with ``torch.load(weights_only=True)``: a pickle that tries to run code is
refused. Every failure is a :class:`CheckpointError` whose message says what is wrong and what
to do, never a traceback from deep inside torch.
"""

from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch

from .config import SAM2Config, variants
from .errors import GroundedSAM2Error
from .hub import cached_file, hub_offline, looks_like_path

DOWNLOAD_HELP = (
    "Download it with `bash checkpoints/download_ckpts.sh` from a source checkout, or with "
    "`hf download {hub_id} {file}`, or from {url}, then pass the file's path."
)


class CheckpointError(GroundedSAM2Error, RuntimeError):
    """A checkpoint that cannot be found, read or loaded."""


def _download_help(config: SAM2Config) -> str:
    return DOWNLOAD_HELP.format(hub_id=config.hub_id, file=config.checkpoint_file, url=config.checkpoint_url)


def _hub_config(name: str) -> Union[SAM2Config, None]:
    for config in variants().values():
        if name in (config.hub_id, config.name, config.checkpoint_file):
            return config
    return None


def missing_checkpoint(ckpt: Union[str, Path]) -> Union[str, None]:
    """Why the checkpoint ``ckpt`` (a path, hub id or variant name) cannot be had here, or None
    when it can: a local file, a hub model already cached, or one the reachable hub will give."""
    path = Path(ckpt).expanduser()
    if path.is_file():
        return None
    config = _hub_config(str(ckpt))
    if config is not None:
        if not hub_offline() or cached_file(config.hub_id, config.checkpoint_file) is not None:
            return None
        return f"SAM 2 {str(ckpt)!r} is not downloaded and the hub cannot be reached. {_download_help(config)}"
    if looks_like_path(ckpt):
        return f"SAM 2 checkpoint file not found: {ckpt}"
    return (f"SAM 2 checkpoint {str(ckpt)!r} not found: it is neither a file nor a known hub id "
            f"({', '.join(c.hub_id for c in variants().values())})")


def download_checkpoint(config: SAM2Config) -> Path:
    """The official checkpoint of ``config`` through the Hugging Face cache (downloaded once;
    from the cache alone when the hub cannot be reached)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:  # declared dependency, but keep the message useful
        raise CheckpointError(f"huggingface_hub is needed to fetch {config.hub_id}. {_download_help(config)}") from e
    if hub_offline():
        cached = cached_file(config.hub_id, config.checkpoint_file)
        if cached is None:
            raise CheckpointError(
                f"{config.checkpoint_file} of {config.hub_id} is not downloaded and the hub cannot be reached. "
                f"{_download_help(config)}"
            )
        return cached
    try:
        return Path(hf_hub_download(repo_id=config.hub_id, filename=config.checkpoint_file))
    except Exception as e:  # offline, no network, hub errors: all mean "not available here"
        raise CheckpointError(
            f"could not get {config.checkpoint_file} from the hub repository {config.hub_id} "
            f"({type(e).__name__}: {e}). {_download_help(config)}"
        ) from e


def resolve_checkpoint(ckpt: Union[str, Path]) -> Path:
    """A local path for ``ckpt``: an existing file, or a hub id / variant name to download."""
    path = Path(ckpt).expanduser()
    if path.is_file():
        return path
    config = _hub_config(str(ckpt))
    if config is not None:
        return download_checkpoint(config)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; pass the .pt file inside it")
    raise CheckpointError(missing_checkpoint(ckpt))


def read_checkpoint(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """The state dict stored in a Meta-format checkpoint file."""
    return load_checkpoint(path)[0]


def load_checkpoint(path: Union[str, Path]) -> Tuple[Dict[str, torch.Tensor], Optional[int]]:
    """(state dict, input size or None) of a Meta-format checkpoint file. Meta's files hold only
    ``"model"``; a file may also name the input size it is meant for (``"image_size"``, an integer
    multiple of 16), as the tiny smoke-test checkpoints of ``make-tiny-models`` do."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types on bad bytes (KeyError, EOFError, ...)
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Weights only load failed" in str(e):
            raise CheckpointError(
                f"{path} was refused: it is not a plain weights file (loading it would need to run code "
                f"from the pickle, which is never done). Details: {detail}"
            ) from e
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or corrupt download?): {detail}"
        ) from e
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise CheckpointError(f"{path} is not a SAM 2 checkpoint: expected a dict with a 'model' state dict")
    state_dict = data["model"]
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {_short_list(bad)}")
    image_size = data.get("image_size")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size <= 0 or image_size % 16):
        raise CheckpointError(f"{path}: image_size must be a positive multiple of 16, got {image_size!r}")
    return state_dict, image_size


def detect_variant(state_dict: Dict[str, torch.Tensor], source: Union[str, Path] = "checkpoint") -> SAM2Config:
    """The variant a state dict belongs to, from the trunk width, the number of trunk blocks and
    the SAM 2.1-only key ``no_obj_embed_spatial``."""
    patch = state_dict.get("image_encoder.trunk.patch_embed.proj.weight")
    if patch is None:
        raise CheckpointError(f"{source} is not a SAM 2 checkpoint: no image_encoder.trunk.patch_embed weights")
    prefix = "image_encoder.trunk.blocks."
    blocks = {int(k[len(prefix):].split(".", 1)[0]) for k in state_dict if k.startswith(prefix)}
    version = "2.1" if "no_obj_embed_spatial" in state_dict else "2"
    width = patch.shape[0]
    for config in variants().values():
        if (config.trunk.embed_dim, config.num_trunk_blocks, config.version) == (width, len(blocks), version):
            return config
    raise CheckpointError(
        f"{source} matches no known SAM 2 variant (trunk width {width}, {len(blocks)} blocks, SAM {version})"
    )


def _short_list(keys: List[str], limit: int = 20) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_state_dict_into(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], source="checkpoint") -> None:
    """Load strictly, reporting missing, unexpected and mis-shaped keys by name."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mis_shaped = [
        f"{k} {tuple(state_dict[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_short_list(unexpected)}")
    if mis_shaped:
        problems.append(f"wrong shapes: {_short_list(mis_shaped)}")
    if problems:
        raise CheckpointError(f"{source} does not fit this SAM 2 model; " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)
