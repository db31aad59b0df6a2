"""Benchmark how much of the host's work the labeling engine hides behind the device.

On a GPU the models take milliseconds an image, and reading, decoding and export (polygons, RLE,
image and label files) run on the CPU: done one after the other, they leave the device idle.
This measures :func:`grounded_sam2.labeling.label_groups` with a simulated device, so that it
can run on any machine: ``predict`` sleeps ``--device-ms`` per image (the GIL released, as while
a GPU computes) and returns ``--objects`` masks per image, made before the run from the image's
own shapes (solid ellipses and rectangles: masks like a trained SAM 2's, not random weights'
fragments). Everything else is the real thing: JPEG files read and decoded by the loader
threads, the dataset written by ``DatasetWriter``.

Modes, on the same images into fresh folders, ``--repeats`` times, alternating:

- ``serial``: one stage at a time (no group read ahead or written behind, one thread each), the
  loop before the overlapped engine;
- ``unprepared`` (with ``--grounder-pixels`` only): ``label_images`` with the grounder's pixels
  made in ``predict``, on the device's path, as before the loader threads made them;
- ``single``: ``label_images`` as a single process runs it (2 loader and 2 export threads, 2
  groups read ahead, up to 2 written behind; the loader threads make the grounder's pixels);
- ``worker``: the engine as a ``--devices`` worker runs it: groups taken from a task queue
  (``parallel._Tasks``) that a parent fills by ``parallel._Job``'s rule (a group more each time
  one is predicted, at most ``WORKER_GROUPS`` unpredicted), as they come.

Reported per mode: the fastest and the median wall seconds, images/s, and the device's busy
share (device seconds / wall seconds: 100% means the host work is hidden completely), and that
every mode wrote the serial mode's dataset byte for byte. Also the host's own costs per image,
measured alone on one thread: reading + decoding, and writing its results.

    python benchmarks/bench_overlap.py                          # 64 720x1280 JPEGs, 33 ms/image
    python benchmarks/bench_overlap.py --device-ms 10 --format coco
    python benchmarks/bench_overlap.py --grounder-pixels 768

``--grounder-pixels 768`` adds Florence-2's image preprocessing at 768x768 (the published models'
image processor: resize, rescale, normalize; 50-80 ms an image on one core here) to the host's work:
made by ``predict`` in ``serial`` and ``unprepared``, by the loader threads (``prepare``) in the
others, as ``Pipeline.prepare`` does.

Options: ``--images 64``, ``--height 720 --width 1280``, ``--objects 5``, ``--device-ms 33``
(33 ms: the 30 images/s the throughput issue asks of a GPU), ``--batch-size 4``,
``--format yolo|coco``, ``--grounder-pixels 0`` (off), ``--repeats 3``, ``--json PATH``.
"""

import argparse
import collections
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np

from bench_common import machine_busy_seconds, own_cpu_seconds, synthetic_image  # puts the repository first
from dataset_files import normalized_dataset

CLASSES = ("dog", "car")


def write_images(folder: Path, count: int, height: int, width: int) -> list:
    """``count`` synthetic JPEGs; their SourceImages."""
    from grounded_sam2.datasets.sources import find_images

    folder.mkdir(parents=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), cv2.cvtColor(synthetic_image(height, width, i), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    return find_images(folder)


def object_masks(height: int, width: int, objects: int, seed: int) -> np.ndarray:
    """``objects`` solid shapes (ellipses and rectangles) of 2-20% of the image's side each."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((objects, height, width), np.uint8)
    for mask in masks:
        cx, cy = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        rx, ry = int(rng.uniform(0.02, 0.2) * width), int(rng.uniform(0.02, 0.2) * height)
        if rng.random() < 0.5:
            cv2.ellipse(mask, (cx, cy), (rx, ry), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        else:
            cv2.rectangle(mask, (cx - rx, cy - ry), (cx + rx, cy + ry), 1, -1)
    return masks.astype(bool)


def florence_pixels(side: int) -> Callable[[np.ndarray], object]:
    """Florence-2's image preprocessing at ``side`` (the published models: 768): the image
    processor the models ship with (resize, rescale, normalize), for one RGB image."""
    from PIL import Image
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(size={"height": side, "width": side}, crop_size={"height": side, "width": side},
                                   do_center_crop=False, image_mean=[0.485, 0.456, 0.406],
                                   image_std=[0.229, 0.224, 0.225])
    return lambda rgb: processor(images=[Image.fromarray(rgb)], return_tensors="pt")["pixel_values"]


def simulated_device(masks: Dict[str, np.ndarray], device_s: float, pixels: Optional[Callable]) -> Callable:
    """A predict function that makes the ``pixels`` of each image not prepared ahead (as
    ``Pipeline.predict_batch`` makes the grounder's inputs), waits ``device_s`` per image and
    gives each image its masks."""
    from grounded_sam2.detections import make_detections, masks_to_xyxy

    def predict(inputs, sources):
        for image in inputs:
            if pixels is not None and isinstance(image, np.ndarray):  # not prepared: made here
                pixels(image)
        time.sleep(device_s * len(inputs))
        results = []
        for source in sources:
            m = masks[source.name]
            n = len(m)
            results.append(make_detections(m, [i % 2 for i in range(n)], [CLASSES[i % 2] for i in range(n)],
                                           [CLASSES[i % 2] for i in range(n)], grounding_confidence=[0.9] * n,
                                           sam_iou=[0.8] * n, xyxy=masks_to_xyxy(m, fallback=np.zeros((n, 4)))))
        return results

    return predict


def writer_for(output: Path, dataset_format: str):
    from grounded_sam2.datasets.writer import DatasetConfig, DatasetWriter

    return DatasetWriter(output, DatasetConfig(format=dataset_format), CLASSES, {"pipeline": "bench_overlap"})


def run_serial(sources, output, predict, batch_size, dataset_format, prepare) -> None:
    from grounded_sam2 import labeling

    ahead, behind = labeling.LOAD_AHEAD_GROUPS, labeling.EXPORT_BEHIND_GROUPS
    labeling.LOAD_AHEAD_GROUPS = labeling.EXPORT_BEHIND_GROUPS = 0
    try:
        labeling.label_images(sources, writer_for(output, dataset_format), predict, batch_size, progress=False,
                              loader_threads=1, export_threads=1, prepare=prepare)
    finally:
        labeling.LOAD_AHEAD_GROUPS, labeling.EXPORT_BEHIND_GROUPS = ahead, behind


def run_single(sources, output, predict, batch_size, dataset_format, prepare) -> None:
    from grounded_sam2 import labeling

    labeling.label_images(sources, writer_for(output, dataset_format), predict, batch_size, progress=False,
                          prepare=prepare)


def run_worker(sources, output, predict, batch_size, dataset_format, prepare) -> None:
    """One worker's engine fed as ``parallel._Job`` feeds it, in this process."""
    import queue

    from grounded_sam2 import labeling, parallel

    groups = labeling.batch_groups(sources, batch_size)
    job = parallel._Job(SimpleNamespace(groups=groups), ["cpu"])
    job.workers[0], job.holding[0], job.unpredicted[0], job.tasks[0] = None, [], set(), queue.Queue()
    todo, unwritten = collections.deque(range(len(groups))), set(range(len(groups)))
    job._hand_out(todo)

    def predicted(group, results, splits):
        job.unpredicted[0].discard(group[0])
        job._hand_out(todo)

    def written(group, results, wrote):
        unwritten.discard(group[0])
        if not unwritten:
            job.tasks[0].put(None)

    writer = writer_for(output, dataset_format)
    labeling.label_groups(parallel._Tasks(job.tasks[0]), writer, predict, predicted, written, prepare=prepare)
    writer.finalize()


# mode -> (runner, whether the loader threads prepare the grounder's pixels, when there are any)
MODES: Dict[str, Tuple[Callable, bool]] = {
    "serial": (run_serial, False), "unprepared": (run_single, False), "single": (run_single, True),
    "worker": (run_worker, True),
}


def host_costs(sources, masks, dataset_format, root: Path, pixels: Optional[Callable]) -> Dict[str, float]:
    """Milliseconds per image of reading + decoding, of the grounder's pixels and of writing its
    results, alone."""
    from grounded_sam2 import labeling

    start = time.perf_counter()
    loaded = [labeling.load_image(source) for source in sources]
    read_ms = 1000 * (time.perf_counter() - start) / len(sources)
    start = time.perf_counter()
    for result in loaded if pixels is not None else []:
        pixels(result.rgb)
    pixels_ms = 1000 * (time.perf_counter() - start) / len(sources)
    predict = simulated_device(masks, 0.0, None)
    for result, detections in zip(loaded, predict([r.rgb for r in loaded], sources)):
        result.detections = detections
    writer = writer_for(root / "host-costs", dataset_format)
    start = time.perf_counter()
    for result in loaded:
        writer.commit(result)
    write_ms = 1000 * (time.perf_counter() - start) / len(sources)
    return {"read_ms": read_ms, "pixels_ms": pixels_ms, "write_ms": write_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--objects", type=int, default=5)
    parser.add_argument("--device-ms", type=float, default=33.0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--format", choices=["yolo", "coco"], default="yolo")
    parser.add_argument("--grounder-pixels", type=int, default=0, metavar="SIDE")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sources = write_images(root / "in", args.images, args.height, args.width)
        masks = {s.name: object_masks(args.height, args.width, args.objects, i) for i, s in enumerate(sources)}
        pixels = florence_pixels(args.grounder_pixels) if args.grounder_pixels else None
        costs = host_costs(sources, masks, args.format, root, pixels)
        predict = simulated_device(masks, args.device_ms / 1000, pixels)
        device_s = args.images * args.device_ms / 1000
        modes = {mode: run for mode, run in MODES.items() if pixels is not None or mode != "unprepared"}
        walls: Dict[str, List[float]] = {mode: [] for mode in modes}
        datasets, busy_cores = {}, []
        for repeat in range(args.repeats):
            for mode, (run, prepares) in modes.items():
                output = root / f"{mode}-{repeat}"
                prepare = (lambda rgb: ("prepared", pixels(rgb))) if prepares and pixels is not None else None
                machine, own, start = machine_busy_seconds(), own_cpu_seconds(), time.perf_counter()
                run(sources, output, predict, args.batch_size, args.format, prepare)
                wall = time.perf_counter() - start
                walls[mode].append(wall)
                busy_cores.append((machine_busy_seconds() - machine - (own_cpu_seconds() - own)) / wall)
                datasets[mode] = normalized_dataset(output)

    print(f"{args.images} images {args.height}x{args.width}, {args.objects} objects each, {args.format}, "
          f"batch size {args.batch_size}, simulated device {args.device_ms:g} ms/image, {args.repeats} repeats; "
          f"{platform.processor() or platform.machine()}")
    pixel_cost = f"grounder pixels at {args.grounder_pixels} {costs['pixels_ms']:.1f} ms/image, " if pixels else ""
    print(f"host work alone, one thread: read + decode {costs['read_ms']:.1f} ms/image, {pixel_cost}"
          f"write {costs['write_ms']:.1f} ms/image")
    print(f"{'mode':10} {'best s':>7} {'median s':>9} {'images/s':>9} {'device busy':>12}  same dataset as serial")
    rows = {}
    for mode, times in walls.items():
        best, median = min(times), statistics.median(times)
        rows[mode] = {"best_s": best, "median_s": median, "images_per_s": args.images / best,
                      "device_busy": device_s / best, "same_dataset": datasets[mode] == datasets["serial"]}
        print(f"{mode:10} {best:7.2f} {median:9.2f} {args.images / best:9.1f} {100 * device_s / best:11.0f}%  "
              f"{'yes' if rows[mode]['same_dataset'] else 'NO'}")
    print(f"other processes used {max(busy_cores):.2f} cores at most during a run")
    if args.json:
        args.json.write_text(json.dumps({"arguments": {k: str(v) for k, v in vars(args).items()}, "host": costs,
                                         "modes": rows, "other_cores_max": max(busy_cores)}, indent=1))


if __name__ == "__main__":
    main()
