"""``python -m segmenter`` end to end with a random official-format checkpoint."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import segmenter

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return segmenter.save_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", "sam2.1_hiera_tiny",
                                            image_size=256)  # a 256 input: quick


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "segmenter", *map(str, args)], cwd=ROOT, capture_output=True, text=True
    )


def test_writes_one_mask_per_box(checkpoint, tmp_path):
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    result = run(image, "--box", 5, 5, 40, 40, "--box", 30, 10, 70, 50, "--point", 20, 20, 0,
                 "--sam2", checkpoint, "--device", "cpu", "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    written = sorted((tmp_path / "out").glob("*.png"))
    assert [p.name for p in written] == ["scene_0.png", "scene_1.png"]
    mask = cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (60, 80) and set(np.unique(mask)) <= {0, 255}
    assert result.stdout.count("predicted IoU") == 2


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--sam2", "missing.pt", "--box", 0, 0, 1, 1], 2, "not found"),
        (["--sam2", "CKPT"], 2, "give at least one --box or --point"),
        (["--sam2", "CKPT", "--point", 1, 1, 2], 2, "LABEL is 1 (object) or 0 (background)"),
        (["--sam2", "CKPT", "--point", 1, 1, 1, "--config", "sam2_hiera_l.yaml"], 2, "holds sam2.1_hiera_tiny"),
    ],
    ids=["missing checkpoint", "no prompt", "bad label", "wrong variant"],
)
def test_errors(checkpoint, tmp_path, args, code, message):
    args = [checkpoint if a == "CKPT" else a for a in args]
    result = run(tmp_path / "any.png", *args, "-o", tmp_path / "out")
    assert result.returncode == code
    assert message in result.stderr


def test_unreadable_image_is_reported_and_others_still_written(checkpoint, tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.zeros((20, 30, 3), np.uint8))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    result = run(bad, good, "--box", 1, 1, 10, 10, "--sam2", checkpoint, "--device", "cpu", "-o", tmp_path / "out")
    assert result.returncode == 1
    assert "bad.png: skipped" in result.stderr
    assert (tmp_path / "out" / "good_0.png").exists()
