"""Meta's SAM 2 (PyPI ``sam2==1.1.0``, byte-identical to facebookresearch/sam2 @2b90b9f) as the
reference implementation for parity tests. Test-only: runtime code never imports it.

tests/run.sh installs it, with its torchvision and hydra, into ``<venv>/reference``, outside the
venv's site-packages: there they cannot break the product (transformers imports torchvision
whenever it finds it), and the venv the tests build is one the tool works in. Only this module
puts that folder on ``sys.path``. That torchvision is a CUDA build that does not import with the
CPU torch ("operator torchvision::nms does not exist"); defining the two op schemas it expects
first makes it import.
"""

import functools
import os
import sys
from pathlib import Path

import pytest
import torch

import segmenter


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    order = torch.sort(scores, descending=True, stable=True).indices  # as torchvision's CPU kernel
    keep = []
    while order.numel():
        i = order[0]
        keep.append(i)
        if order.numel() == 1:
            break
        rest = boxes[order[1:]]
        lt = torch.maximum(boxes[i, :2], rest[:, :2])
        rb = torch.minimum(boxes[i, 2:], rest[:, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=1)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        iou = inter / (area(boxes[i]) + area(rest) - inter)
        order = order[1:][iou <= iou_threshold]
    return torch.stack(keep) if keep else torch.empty(0, dtype=torch.long)


REFERENCE = Path(sys.prefix) / "reference"  # where tests/run.sh installs Meta's sam2, torchvision, ultralytics


def reference_env(env: dict) -> dict:
    """``env`` for a child process that imports ultralytics: the reference folder on its path
    (ultralytics reads torchvision's version when imported, and is installed there too)."""
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REFERENCE)) if p)}


def has_ultralytics() -> bool:
    import importlib.util

    return (REFERENCE / "ultralytics").is_dir() or importlib.util.find_spec("ultralytics") is not None


@functools.cache
def register_torchvision_ops() -> None:
    """Put the reference folder on ``sys.path`` (last), define torchvision's nms/qnms op schemas
    (pure-torch NMS) and tell torchvision its ops are loaded, so that the CUDA-only torchvision
    wheel imports with the CPU torch."""
    if REFERENCE.is_dir() and str(REFERENCE) not in sys.path:
        sys.path.append(str(REFERENCE))
    lib = torch.library.Library("torchvision", "DEF")
    for name in ("nms", "qnms"):
        lib.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.impl(name, _nms, "CPU")
    register_torchvision_ops.lib = lib  # keep the library alive
    try:
        import torchvision.extension
    except ImportError:  # not installed: nothing to make importable
        return
    torchvision.extension._has_ops = lambda: True


def import_meta_sam2():
    """Meta's ``sam2`` package, or skip the test where it is not installed."""
    register_torchvision_ops()
    try:
        import sam2.build_sam  # noqa: F401
        import sam2.sam2_image_predictor  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        pytest.skip(f"Meta's sam2 reference is not installed: {e}")
    import sam2

    return sam2


def meta_config_name(variant: str) -> str:
    """Meta's hydra config for one of our variants: sam2.1_hiera_tiny -> configs/sam2.1/sam2.1_hiera_t.yaml."""
    config = segmenter.resolve_config(variant)
    folder = "sam2.1" if config.version == "2.1" else "sam2"
    return f"configs/{folder}/{config.aliases[0]}.yaml"


def build_meta_model(variant: str, state_dict):
    """Meta's SAM2Base for our ``variant`` on CPU, float32, eval mode, ``state_dict`` loaded strictly."""
    sam2 = import_meta_sam2()
    model = sam2.build_sam.build_sam2(
        meta_config_name(variant), ckpt_path=None, device="cpu", apply_postprocessing=True
    )
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def build_meta_video_predictor(variant: str, state_dict, image_size: int = 1024):
    """Meta's SAM2VideoPredictor for ``variant`` on CPU, float32, at ``image_size``, with
    ``state_dict`` loaded strictly.

    Meta stores memory features in bfloat16 and relies on CUDA autocast to mix them with
    float32; on the CPU its next frame would fail ("mat1 and mat2 must have the same dtype"). The
    stored, bfloat16-rounded memories are therefore handed back as float32 (the values ours
    uses on the CPU too). Meta's hole filling needs its CUDA extension: on the CPU it warns and
    skips the step, so compare with ``fill_hole_area=0``."""
    sam2 = import_meta_sam2()
    predictor = sam2.build_sam.build_sam2_video_predictor(
        meta_config_name(variant), ckpt_path=None, device="cpu",
        hydra_overrides_extra=[f"++model.image_size={image_size}"],
    )
    predictor.load_state_dict(state_dict, strict=True)
    predictor.eval()
    run_frame, run_memory_encoder = predictor._run_single_frame_inference, predictor._run_memory_encoder

    def single_frame_inference(*args, **kwargs):
        out, masks = run_frame(*args, **kwargs)
        if out["maskmem_features"] is not None:
            out["maskmem_features"] = out["maskmem_features"].float()
        return out, masks

    def memory_encoder(*args, **kwargs):
        features, pos_enc = run_memory_encoder(*args, **kwargs)
        return features.float(), pos_enc

    predictor._run_single_frame_inference = single_frame_inference
    predictor._run_memory_encoder = memory_encoder
    return predictor
