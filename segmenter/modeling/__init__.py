"""SAM 2's neural-network components, one per file; :class:`SAM2Model` holds them."""

from .sam2 import SAM2Model

__all__ = ["SAM2Model"]
