"""Loading a grounding backend's processor and model from a hub id or a local directory, with
clear errors for a checkpoint that is missing offline or of another kind.

Every backend's processor uses transformers' PIL image backend, also where torchvision is
installed: the two backends resize differently (up to 0.02 apart in Florence-2's pixel values),
and a dataset must not depend on whether torchvision happens to be installed.
"""

from pathlib import Path
from typing import Optional, Tuple

import torch

from segmenter.hub import cached_file, hub_offline, looks_like_path

from .base import GrounderConfig, GroundingModelError


def missing_checkpoint(config: GrounderConfig) -> Optional[str]:
    """Why the grounder's checkpoint cannot be had here, or None when it can: a local folder, a hub
    model already cached, or one the reachable hub will give."""
    source = config.checkpoint
    if Path(source).expanduser().is_dir():
        return None
    if looks_like_path(source):
        return f"{config.display_name}: folder not found: {source}"
    if not hub_offline() or cached_file(source, "config.json") is not None:
        return None
    return (f"{config.display_name} {source!r} is not downloaded and the hub cannot be reached (nor is there a "
            f"folder of that name here). Download it once where the hub is reachable: `hf download {source}`, or "
            f"pass a local folder.{config.checkpoint_help}")


def load_model_and_processor(
    config: GrounderConfig, device: torch.device, bf16: bool
) -> Tuple[object, torch.nn.Module]:
    """(processor, model) of ``config.checkpoint`` in eval mode on ``device``; bfloat16 weights
    on CUDA when ``bf16``. The checkpoint's ``model_type`` must be the backend's."""
    try:
        import transformers
        from transformers import AutoConfig, AutoProcessor

        model_class = getattr(transformers, config.model_class)
    except (ImportError, AttributeError) as e:
        raise GroundingModelError(
            f"transformers cannot import {config.model_class} ({e}). transformers >= 5.23 is needed; note that it "
            f"imports torchvision whenever torchvision is installed, so a torchvision built for another torch breaks "
            f"it: uninstall torchvision (grounded-sam2 does not need it) or install the one matching your torch."
        ) from e
    source, local = config.checkpoint, hub_offline()  # offline: the cache alone, no retries
    try:
        found = AutoConfig.from_pretrained(source, local_files_only=local)
    except (OSError, ValueError, KeyError) as e:
        raise GroundingModelError(
            f"could not load {config.display_name} from {source!r}: {str(e).splitlines()[0]}\n"
            f"Pass a local directory, or download the model once where the hub is reachable: `hf download {source}`."
            f"{config.checkpoint_help}"
        ) from e
    if found.model_type != config.model_type:
        raise GroundingModelError(
            f"{source} holds a {found.model_type!r} model, not {config.display_name} ({config.model_type!r}): "
            f"choose the grounder that matches the checkpoint"
        )
    dtype = torch.bfloat16 if (bf16 and device.type == "cuda") else torch.float32
    try:
        processor = AutoProcessor.from_pretrained(source, backend="pil", local_files_only=local)
        model = model_class.from_pretrained(source, dtype=dtype, local_files_only=local)
    except (OSError, ValueError, KeyError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GroundingModelError(f"could not load {config.display_name} from {source!r}: {message}") from e
    return processor, model.to(device).eval()
