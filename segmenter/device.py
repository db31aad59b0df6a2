"""Device selection and the default mixed precision."""

import contextlib
from typing import ContextManager, Union

import torch

from .errors import DeviceError


def resolve_device(device: Union[str, torch.device, None] = None) -> torch.device:
    """``device`` as a torch.device; None picks CUDA if available, else Apple MPS, else CPU."""
    if device is not None:
        try:
            device = torch.device(device)
        except RuntimeError as e:
            raise DeviceError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps") from e
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError(f"device {device} was asked for, but CUDA is not available on this machine")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise DeviceError("device 'mps' was asked for, but Apple MPS is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_context(device: torch.device, bf16: bool) -> ContextManager:
    """bfloat16 autocast on CUDA when ``bf16`` is set; full float32 everywhere else."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
