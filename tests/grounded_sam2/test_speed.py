"""Speed switches: ``compile`` compiles SAM 2's and Florence-2's heavy functions; the labels stay
the ones of the uncompiled models, and the manifest names the switch. On the CPU the test
compiles with the ``aot_eager`` backend (graph capture without code generation, seconds instead of
minutes); the GPU benchmark runs inductor."""

import copy
import json

import numpy as np
import pytest
import torch

from grounded_sam2 import GroundedSAM2, speed
from grounded_sam2.datasets.writer import DatasetError

ONTOLOGY = {"dog": "dog", "cat": "cat"}


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)]


def test_compiled_models_label_like_the_plain_ones(tiny_florence, small_sam2, images, tmp_path, monkeypatch):
    import cv2

    monkeypatch.setattr(speed, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    plain = GroundedSAM2(ONTOLOGY, florence=str(tiny_florence), sam2=copy.deepcopy(small_sam2), device="cpu")
    fast = GroundedSAM2(ONTOLOGY, florence=str(tiny_florence), sam2=copy.deepcopy(small_sam2), device="cpu",
                        compile=True)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    expected, got = plain.pipeline.predict_batch(images), fast.pipeline.predict_batch(images)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs, "the compiled functions ran"
    florence = fast.pipeline.grounder.model
    assert hasattr(florence, "_compiled_call") and not hasattr(plain.pipeline.grounder.model, "_compiled_call"), \
        "Florence-2's decoding step was compiled (static cache)"
    for e, g in zip(expected, got):
        assert len(e) == len(g) > 0
        np.testing.assert_array_equal(g.mask, e.mask)
        np.testing.assert_allclose(g.confidence, e.confidence, rtol=1e-5)

    (tmp_path / "in").mkdir()
    for name, image in zip("ab", images):  # the shapes already compiled for
        cv2.imwrite(str(tmp_path / "in" / f"{name}.png"), image[:, :, ::-1])
    fast.label(tmp_path / "in", output_folder=tmp_path / "out", batch_size=2, progress=False)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["pipeline"]["placement"]["compile"] is True
    with pytest.raises(DatasetError, match="placement.compile: True -> None"):
        plain.label(tmp_path / "in", output_folder=tmp_path / "out", progress=False)
