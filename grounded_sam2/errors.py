"""The errors grounded-sam2 raises for its users, all under one root.

:class:`GroundedSAM2Error` (defined in :mod:`segmenter.errors`, the lowest layer) is the base
of every error that is a message for the user: catching it never hides a bug. The command line
catches it, :class:`KeyboardInterrupt` and out-of-memory errors (:func:`is_out_of_memory`),
and nothing broader, so a real bug shows its traceback.
"""

from segmenter.errors import DeviceError, GroundedSAM2Error, SettingsError

__all__ = ["GroundedSAM2Error", "SettingsError", "DeviceError", "InputNotFoundError", "ModelNotAvailableError",
           "MissingDependencyError", "is_out_of_memory"]

_OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


class InputNotFoundError(GroundedSAM2Error, FileNotFoundError):
    """An input image, folder, dataset or video that does not exist."""


class ModelNotAvailableError(GroundedSAM2Error, FileNotFoundError):
    """Models that are neither on disk nor to be had from the hub here; the message lists every
    one of them, each with how to get it."""


class MissingDependencyError(GroundedSAM2Error, ImportError):
    """An optional dependency a feature needs is not installed; the message says how to install it."""


def is_out_of_memory(error: BaseException) -> bool:
    """True for the errors torch raises when a device (or the CPU) runs out of memory: CUDA's
    ``OutOfMemoryError``, MPS's and the CPU allocator's ``RuntimeError``, and ``MemoryError``."""
    import torch

    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in _OUT_OF_MEMORY_MESSAGES)
