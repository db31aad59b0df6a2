"""Pieces the benchmark scripts share: the repository on ``sys.path`` (importing this module
puts the repository root, then ``tests/``, first), CPU accounting to flag a busy machine, and a
deterministic synthetic image."""

import os
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
for _path in (REPO_ROOT / "tests", REPO_ROOT):  # repo root first on sys.path, then tests/
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (/proc/stat; NaN elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return float("nan")
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def synthetic_image(height: int, width: int, seed: int) -> np.ndarray:
    """A deterministic HxWx3 uint8 RGB image: colour gradients, a few filled rectangles and
    ellipses (object-like structure) and mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack(
        [255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1), 128 + 64 * np.sin((x + y) / 40.0)],
        axis=-1,
    )
    for _ in range(6):
        color = rng.uniform(0, 255, size=3)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.05, 0.25) * width, rng.uniform(0.05, 0.25) * height
        if rng.random() < 0.5:
            inside = (np.abs(x - cx) < rx) & (np.abs(y - cy) < ry)
        else:
            inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1.0
        img[inside] = color
    img += rng.normal(0, 8, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
