from pathlib import Path

import pytest

from grounded_sam2.tiny_models import make_tiny_florence2


@pytest.fixture(scope="session")
def tiny_florence(tmp_path_factory) -> Path:
    """A tiny random native Florence-2 saved to disk, loaded by path through the real loader."""
    return make_tiny_florence2(tmp_path_factory.mktemp("models") / "florence2")


@pytest.fixture(scope="session")
def small_sam2():
    """SAM 2.1 tiny at a 256-pixel input with random weights: fast on CPU."""
    import dataclasses

    import segmenter

    config = dataclasses.replace(segmenter.resolve_config("sam2.1_hiera_tiny"), image_size=256)
    model = segmenter.build_model(config).eval()
    model.load_state_dict(segmenter.random_state_dict(config, seed=3))
    return model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """``make-tiny-models``' Florence-2 directory and SAM 2 checkpoint, written once per session."""
    from grounded_sam2.tiny_models import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_grounder(tmp_path_factory):
    """tiny_grounder(backend): the directory of a tiny random model of that grounding backend,
    written once per session (``grounded_sam2.tiny_models.TINY_GROUNDERS``)."""
    from grounded_sam2.tiny_models import TINY_GROUNDERS

    root, made = tmp_path_factory.mktemp("grounders"), {}

    def directory(backend: str) -> Path:
        if backend not in made:
            made[backend] = TINY_GROUNDERS[backend](root / backend)
        return made[backend]

    return directory


@pytest.fixture(scope="session")
def label_runs(tmp_path_factory):
    """The scale-out tests' input and single-process runs (see scale_out.py), started once."""
    from scale_out import LabelRuns

    runs = LabelRuns(tmp_path_factory.mktemp("scale-out"))
    yield runs
    runs.close()
