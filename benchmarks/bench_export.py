"""Benchmark the export stage alone: ours (``DatasetWriter``) against supervision's ``as_yolo``
on the same masks.

The masks are what ``bench_pipeline.py`` feeds both exports: SAM 2.1 tiny at its 1024 input
with random weights (``segmenter.random_state_dict``, seed 0), prompted with
``bench_pipeline.FORCED_BOXES`` (5 boxes over 2 classes) on ``--images`` synthetic 480x640
JPEGs. Random weights give fragmented masks (hundreds of parts), the worst case for polygon
export. The masks are computed once, untimed; then each export runs ``--repeats`` times,
alternating, each into a fresh folder, on one thread (ours' export threads are switched off
here: the figure is the work, not its overlap with the models):

- ours: ``DatasetWriter(..., DatasetConfig(format=...))``, ``commit`` per image (image copy,
  label rows, YOLO's scores files) and ``finalize``;
- supervision: ``sv.DetectionDataset(classes, paths, detections).as_yolo(...,
  min_image_area_percentage=0.01)`` and autodistill's ``split_data``, exactly as
  ``bench_pipeline.adg2_export`` (its image-by-image fallback where ``as_yolo`` raises).

Reported per export: the fastest and the median seconds, milliseconds per mask, label rows and
polygon vertices per row. The two do not write the same thing: ours writes every part of a mask
joined into one row, supervision drops polygons under 0.01% of the image, simplifies the rest
(``approxPolyDP``, 0.75%) and writes one row per polygon.

    python benchmarks/bench_export.py                  # 8 images, YOLO, 3 repeats
    python benchmarks/bench_export.py --images 8 --format coco --json export.json

Options: ``--images 8``, ``--format yolo|coco`` (ours' format; supervision always as_yolo),
``--repeats 3``, ``--threads 1`` (torch threads while computing the masks), ``--json PATH``.
"""

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_pipeline import CLASSES, FORCED_BOXES, IMAGE_HW, adg2_export, build_sam2_state, write_images

from bench_common import machine_busy_seconds, own_cpu_seconds


def make_masks(folder: Path, count: int):
    """The images of ``folder`` (written first) and their detections from a random SAM 2.1 tiny."""
    import cv2

    from grounded_sam2.config import SegmenterConfig
    from grounded_sam2.segmentation import BoxRequest, Segmenter

    write_images(folder, count)
    model, _ = build_sam2_state("sam2.1_hiera_tiny")
    segmenter = Segmenter(SegmenterConfig(sam2=model), device="cpu")
    height, width = IMAGE_HW
    requests = [
        BoxRequest((x0 * width / 1000, y0 * height / 1000, x1 * width / 1000, y1 * height / 1000), class_id, name)
        for class_id, (name, boxes) in enumerate(FORCED_BOXES.items())
        for x0, y0, x1, y1 in boxes
    ]
    paths = sorted(folder.glob("*.jpg"))
    results = []
    for path in paths:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        results.append((path, rgb, segmenter.segment([rgb], [requests])[0]))
    return results


def export_ours(results, output: Path, file_format: str) -> dict:
    from grounded_sam2.datasets.sources import SourceImage
    from grounded_sam2.datasets.writer import DatasetConfig, DatasetWriter, ImageResult

    begin = time.perf_counter()
    writer = DatasetWriter(output, DatasetConfig(format=file_format), CLASSES, provenance={})
    for path, rgb, detections in results:
        writer.commit(ImageResult(source=SourceImage(path, path.stem), rgb=rgb, detections=detections))
    writer.finalize()
    return {"seconds": time.perf_counter() - begin, **label_shape(output)}


def export_supervision(results, output: Path) -> dict:
    import supervision as sv

    dataset = sv.DetectionDataset(CLASSES, [str(p) for p, _, _ in results], {str(p): d for p, _, d in results})
    export = adg2_export(dataset, output)
    return {"seconds": export["export_s"], "as_yolo": export["as_yolo"], **label_shape(output)}


def label_shape(output: Path) -> dict:
    """Rows and mean polygon vertices per row over the YOLO label files under ``output`` (none for COCO)."""
    rows = [line.split() for f in output.glob("*/labels/*.txt") for line in f.read_text().splitlines()]
    vertices = [(len(r) - 1) / 2 for r in rows]
    return {"rows": len(rows), "vertices_per_row": float(np.mean(vertices)) if vertices else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--format", choices=("yolo", "coco"), default="yolo")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"computing masks for {args.images} images (untimed) ...", flush=True)
        results = make_masks(work / "images", args.images)
        masks = sum(len(d) for _, _, d in results)
        runs = {"ours": [], "supervision": []}
        busy_before, own_before, start = machine_busy_seconds(), own_cpu_seconds(), time.perf_counter()
        for repeat in range(args.repeats):
            runs["ours"].append(export_ours(results, work / f"ours_{repeat}", args.format))
            runs["supervision"].append(export_supervision(results, work / f"supervision_{repeat}"))
            print(f"repeat {repeat}: ours {runs['ours'][-1]['seconds']:.2f} s, "
                  f"supervision {runs['supervision'][-1]['seconds']:.2f} s", flush=True)
        wall = time.perf_counter() - start
        other = (machine_busy_seconds() - busy_before - (own_cpu_seconds() - own_before)) / wall
    summary = {}
    print(f"\n{args.images} images, {masks} masks; other processes used {other:.2f} cores")
    print("| export | fastest s | median s | ms per mask | rows | vertices per row |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, name_runs in runs.items():
        seconds = [r["seconds"] for r in name_runs]
        label = f"ours ({args.format})" if name == "ours" else "supervision as_yolo"
        summary[name] = {"fastest_s": min(seconds), "median_s": statistics.median(seconds), "runs": name_runs}
        vertices = name_runs[0]["vertices_per_row"]
        print(f"| {label} | {min(seconds):.2f} | {statistics.median(seconds):.2f} | "
              f"{1000 * min(seconds) / masks:.1f} | {name_runs[0]['rows']} | "
              f"{'-' if vertices is None else f'{vertices:.0f}'} |")
    ratio = summary["supervision"]["fastest_s"] / summary["ours"]["fastest_s"]
    print(f"\nsupervision / ours (fastest runs): {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({
            "images": args.images, "masks": masks, "format": args.format, "other_cpu_cores": other,
            "python": platform.python_version(), "speedup": ratio, **summary,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
