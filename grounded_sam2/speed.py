"""Speed switches that change numbers in their last digits, each off by default and named in a
dataset's manifest when on.

``compile`` (``--compile``): ``torch.compile`` of the functions that carry the work, compiled
from outside the parity-tested modules (the modules themselves are untouched): SAM 2's image
encoder and mask decoder ``forward``, Florence-2's image features (its vision tower and
projection) and its decoding: a static KV cache (transformers' ``cache_implementation="static"``,
the same tokens as the dynamic one) whose decoding step transformers then compiles, on every
device. Other grounders are left as they are. The first batches are slow (compilation, and a
recompilation when a new number of boxes first appears); worth it on a GPU for long runs.
"""

from typing import Any, Callable, Optional

import torch

COMPILE_BACKEND = "inductor"  # torch.compile's backend


def compiled(function: Callable) -> Callable:
    """``function`` compiled with :data:`COMPILE_BACKEND` (shapes marked dynamic when they change)."""
    return torch.compile(function, backend=COMPILE_BACKEND)


def compile_models(sam2: torch.nn.Module, grounder: Optional[Any] = None) -> None:
    """Compile, in place, SAM 2's image encoder and mask decoder and, for Florence-2, the
    grounder's image features (see the module docstring)."""
    sam2.image_encoder.forward = compiled(sam2.image_encoder.forward)
    sam2.sam_mask_decoder.forward = compiled(sam2.sam_mask_decoder.forward)
    from .grounding.florence2 import Florence2Grounder

    if isinstance(grounder, Florence2Grounder):
        grounder.model.get_image_features = compiled(grounder.model.get_image_features)
        from transformers import CompileConfig

        mode = "reduce-overhead" if COMPILE_BACKEND == "inductor" else None  # CUDA graphs; other backends: none
        decoding = CompileConfig(backend=COMPILE_BACKEND, mode=mode)
        decoding._compile_all_devices = True  # transformers compiles only on accelerators unless told
        grounder.generation_options = {"cache_implementation": "static", "compile_config": decoding}
