"""How long `evaluate` takes on a large dataset: a synthetic YOLO segmentation dataset against the
COCO (RLE) one of the same images, written by the project's writer, with one object per image
shifted in the predictions so that the matching has work to do.

    .venv/bin/python benchmarks/bench_evaluate.py --images 5000 --size 256
"""

import argparse
import tempfile
import time
from pathlib import Path

from bench_common import REPO_ROOT  # noqa: F401  puts the repository on sys.path

# isort: split
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from grounded_sam2.datasets.sources import SourceImage  # noqa: E402
from grounded_sam2.datasets.writer import DatasetConfig, DatasetWriter, ImageResult  # noqa: E402
from grounded_sam2.detections import make_detections  # noqa: E402
from grounded_sam2.evaluation import evaluate  # noqa: E402

CLASSES = ("cat", "dog", "car")


def objects(index: int, size: int, shift: int):
    rng = np.random.default_rng(index)
    masks = np.zeros((3, size, size), np.uint8)
    for k in range(3):
        x, y = rng.integers(0, size * 3 // 4, 2)
        r = int(rng.integers(size // 16, size // 6))
        cv2.circle(masks[k], (int(x) + r + (shift if k == 0 else 0), int(y) + r), r, 1, -1)
    scores = rng.uniform(0.3, 1.0, 3)
    ids = [(index + k) % 3 for k in range(3)]
    return make_detections(masks.astype(bool), ids, [CLASSES[c] for c in ids], [CLASSES[c] for c in ids], scores,
                           [1.0] * 3)


def write(folder: Path, dataset_format: str, images: int, size: int, shift: int, inputs: Path) -> Path:
    writer = DatasetWriter(folder, DatasetConfig(dataset_format), CLASSES, {"pipeline": "benchmark"})
    rgb = np.zeros((size, size, 3), np.uint8)
    for i in range(images):
        source = SourceImage(inputs / f"{i:05d}.png", f"{i:05d}")
        writer.commit(ImageResult(source, rgb=rgb, detections=objects(i, size, shift)))
    writer.finalize()
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        png = cv2.imencode(".png", np.zeros((args.size, args.size, 3), np.uint8))[1].tobytes()
        for i in range(args.images):
            (tmp / "in" / f"{i:05d}.png").write_bytes(png)
        start = time.perf_counter()
        predicted = write(tmp / "predicted", "yolo", args.images, args.size, 6, tmp / "in")
        truth = write(tmp / "truth", "coco", args.images, args.size, 0, tmp / "in")
        print(f"wrote both datasets in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        result = evaluate(predicted, truth)
        seconds = time.perf_counter() - start
        print(result.table())
        print(f"\nevaluate: {args.images} images ({3 * args.images} objects per side, {args.size}x{args.size}), "
              f"box and mask: {seconds:.1f} s")


if __name__ == "__main__":
    main()
