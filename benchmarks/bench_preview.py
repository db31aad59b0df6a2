"""Benchmark the HTML review report (``grounded_sam2.preview.write_preview``) of a large dataset.

Builds a synthetic dataset with the project's writer (default: 5,000 deterministic 64x64 images,
3 objects each, with masks and confidences, YOLO), then times ``write_preview`` with the default
gallery of 300 images, and with ``max_images=0`` (the summary pass over every image alone: class
ids and confidences, no pixels, no masks). Each is run ``--repeats`` times, alternating; medians
are printed. Building the dataset is not timed.

Run from the repository root (no installation needed)::

    python benchmarks/bench_preview.py
    python benchmarks/bench_preview.py --images 20000 --format coco --output /tmp/preview-bench

Exit status 0; the figures are printed.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench_common import synthetic_image  # puts the repository on sys.path

CLASSES = ("cat", "dog", "car")


def build_dataset(output: Path, images: int, size: int, objects: int, dataset_format: str) -> Path:
    """``images`` synthetic images of size x size with ``objects`` rectangles each, written with
    the project's DatasetWriter; confidences spread over [0.05, 1)."""
    import numpy as np

    from grounded_sam2.datasets.sources import SourceImage
    from grounded_sam2.datasets.writer import DatasetConfig, DatasetWriter, ImageResult
    from grounded_sam2.detections import make_detections

    rng = np.random.default_rng(0)
    backgrounds = [synthetic_image(size, size, seed) for seed in range(16)]
    writer = DatasetWriter(output, DatasetConfig(dataset_format), CLASSES, {"pipeline": "bench_preview"})
    for i in range(images):
        masks = np.zeros((objects, size, size), bool)
        for k in range(objects):
            x0, y0 = rng.integers(0, size // 2, 2)
            w, h = rng.integers(size // 8, size // 2, 2)
            masks[k, y0:y0 + h, x0:x0 + w] = True
        ids = rng.integers(0, len(CLASSES), objects).tolist()
        names = [CLASSES[c] for c in ids]
        detections = make_detections(masks, ids, names, names, rng.uniform(0.05, 1.0, objects).tolist(),
                                     [1.0] * objects)
        writer.commit(ImageResult(SourceImage(None, f"img{i:06d}"), rgb=backgrounds[i % 16], detections=detections))
    writer.finalize()
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--size", type=int, default=64, help="image side, pixels")
    parser.add_argument("--objects", type=int, default=3, help="objects per image")
    parser.add_argument("--format", default="yolo", choices=("yolo", "yolo-det", "coco"))
    parser.add_argument("--max-images", type=int, default=300, help="the gallery's images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, help="keep the dataset and reports here (default: a temporary folder)")
    args = parser.parse_args()

    from grounded_sam2.preview import write_preview

    with tempfile.TemporaryDirectory(prefix="bench-preview-") as temporary:
        root = args.output or Path(temporary)
        dataset = root / "dataset"
        start = time.perf_counter()
        if not (dataset / "manifest.json").is_file():
            build_dataset(dataset, args.images, args.size, args.objects, args.format)
        print(f"dataset: {args.images} images {args.size}x{args.size}, {args.objects} objects each, {args.format} "
              f"({time.perf_counter() - start:.1f} s to build) in {dataset}")
        times = {args.max_images: [], 0: []}
        for _ in range(args.repeats):
            for max_images in times:
                start = time.perf_counter()
                write_preview(dataset, root / f"preview_{max_images}.html", max_images=max_images)
                times[max_images].append(time.perf_counter() - start)
        for max_images, seconds in times.items():
            what = f"gallery of {max_images}" if max_images else "summary only"
            print(f"write_preview, {what:>18}: median {statistics.median(seconds):.2f} s "
                  f"(runs: {', '.join(f'{s:.2f}' for s in seconds)})")


if __name__ == "__main__":
    main()
