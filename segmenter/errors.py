"""The root of every error grounded-sam2 raises on purpose, in both of its packages.

``segmenter`` is the lowest layer of the distribution, so the root lives here and
:mod:`grounded_sam2.errors` re-exports it. Catching :class:`GroundedSAM2Error` catches every
error that is a message for the user (bad input, a missing weight, an unusable setting) and
nothing else: a bug in this code or in torch is never one. Each subclass also derives from the
built-in exception it used to be (``ValueError``, ``RuntimeError``...), so older ``except``
clauses keep working.
"""


class GroundedSAM2Error(Exception):
    """Base class of the errors this distribution raises for its users."""


class SettingsError(GroundedSAM2Error, ValueError):
    """A setting or argument outside its allowed values."""


class DeviceError(GroundedSAM2Error, RuntimeError):
    """A device that was asked for but is not available."""
