from pathlib import Path

import pytest

from grounded_sam2.tiny_models import make_tiny_florence2


@pytest.fixture(scope="session")
def tiny_florence(tmp_path_factory) -> Path:
    """A tiny random native Florence-2 saved to disk, loaded by path through the real loader."""
    return make_tiny_florence2(tmp_path_factory.mktemp("models") / "florence2")
