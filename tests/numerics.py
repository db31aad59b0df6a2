"""Assertions for comparing our outputs with Meta's."""

import numpy as np
import torch

REL_TOL = 1e-4  # relative to the reference tensor's largest magnitude
NEAR_ZERO_LOGIT = 1e-3  # binary masks may differ only where the logit is this close to 0


def _np(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def assert_close(ours, ref, name: str = "", rel: float = REL_TOL) -> None:
    ours, ref = _np(ours), _np(ref)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != reference {ref.shape}"
    scale = max(float(np.abs(ref).max()), 1e-12)
    err = float(np.abs(ours - ref).max()) / scale
    assert err <= rel, f"{name}: max relative error {err:.3g} > {rel}"


def assert_masks_match(ours, ref, ref_logits, name: str = "") -> None:
    """Binary masks equal except where the reference logit is within 1e-3 of zero."""
    ours, ref, ref_logits = _np(ours) > 0.5, _np(ref) > 0.5, _np(ref_logits)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != reference {ref.shape}"
    differ = ours != ref
    assert not (differ & (np.abs(ref_logits) >= NEAR_ZERO_LOGIT)).any(), (
        f"{name}: {int(differ.sum())} mask pixels differ away from the decision boundary"
    )
