"""Deterministic random SAM 2 weights in the official checkpoint format.

Real weights cannot be downloaded everywhere (CI, air-gapped machines), so tests, benchmarks and
offline smoke runs use these. They are meaningless as a segmenter but exercise every code path:
unlike Meta's initialisation, LayerNorm gains are near 1 (not exactly 1), biases, layer scales
and ``pos_embed`` are non-zero (a zero ``pos_embed`` would hide its bicubic resize), and
weights are scaled by fan-in so activations stay in a sane range through the deep trunk.
"""

from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torch import nn

from .build_sam import build_model
from .config import SAM2Config, resolve_config
from .modeling.common import LayerNorm2d


def _fill(name: str, module: nn.Module, param_name: str, tensor: torch.Tensor, gen: torch.Generator) -> None:
    def randn(scale: float) -> torch.Tensor:
        return torch.randn(tensor.shape, generator=gen) * scale

    if isinstance(module, (nn.LayerNorm, LayerNorm2d)):
        tensor.copy_(1.0 + randn(0.1) if param_name == "weight" else randn(0.1))
    elif param_name == "bias":
        tensor.copy_(randn(0.02))
    elif isinstance(module, nn.ConvTranspose2d):
        # (in, out, k, k) with stride == kernel: each output pixel sees in_channels inputs
        tensor.copy_(randn(tensor.shape[0] ** -0.5))
    elif isinstance(module, (nn.Linear, nn.Conv2d)) and param_name == "weight":
        tensor.copy_(randn(tensor[0].numel() ** -0.5))
    elif isinstance(module, nn.Embedding) or name.endswith("positional_encoding_gaussian_matrix"):
        tensor.copy_(randn(1.0))
    else:  # free parameters: pos_embed, layer scales, memory embeddings
        tensor.copy_(randn(0.1))


def random_state_dict(variant: Union[str, SAM2Config], seed: int = 0) -> Dict[str, torch.Tensor]:
    """A float32 state dict with exactly the keys and shapes of the official checkpoint."""
    config = resolve_config(variant)
    model = build_model(config)
    gen = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    state = model.state_dict()
    with torch.no_grad():
        for name, tensor in state.items():
            module_name, _, param_name = name.rpartition(".")
            _fill(name, modules[module_name], param_name, tensor, gen)
    return state


def save_random_checkpoint(path: Union[str, Path], variant: Union[str, SAM2Config], seed: int = 0,
                           image_size: Optional[int] = None) -> Path:
    """Write ``{"model": random_state_dict(variant, seed)}`` to ``path``, as Meta's files are laid out.
    ``image_size``: also record an input size (``"image_size"``, which Meta's loader ignores and
    :func:`~segmenter.build_sam2` builds the model at); the weights are the same at every size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"model": random_state_dict(variant, seed)}
    if image_size is not None:
        data["image_size"] = int(image_size)
    torch.save(data, path)
    return path
