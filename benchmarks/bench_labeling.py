"""Benchmark end-to-end dataset labeling (``GroundedSAM2.label``) on the CPU: images/s and peak RSS.

The whole pipeline runs with tiny random models: a tiny Florence-2
(:func:`grounded_sam2.tiny_models.make_tiny_florence2`), whose generation config makes it answer
one "dog" box for every image, and a random SAM 2.1 tiny, so that every image
goes through grounding, SAM 2 (encoder + mask decoder) and mask export into a YOLO or COCO
dataset on disk; the run fails (exit status 1) unless every image got its one object.
Labels are streamed to disk, so memory must not grow with the number of images: each size N runs
in a fresh subprocess (``--worker N``, so that the peak RSS of one run cannot hide another's),
which writes N deterministic synthetic 480x640 JPEG images to a temporary folder, builds the
models, and times only the ``label()`` call. Reported per N: seconds, images/s, RSS after the
models are loaded, peak RSS of the process (``ru_maxrss``) and their difference; then a verdict on
flatness: the peak may grow from the smallest to the largest N by less than 10% or 50 MiB.

SAM 2 is built at a reduced input size (``--sam2-size``, default 256) so that N=500 finishes in
minutes on a small CPU; 1024 is the real size (about 1.5 s per image on a 2-core CPU: use it
with small N only). Speed does not depend on the random weight values.

Run from the repository root (no installation needed)::

    python benchmarks/bench_labeling.py

Options::

    --sizes 50,500           numbers of images, one fresh subprocess each
    --format yolo|coco       dataset format (default yolo; also yolo-det)
    --sam2-size 256          SAM 2 input size (1024 = real size, slow on CPU)
    --batch-size 4           images per batch in label()
    --threads N              torch.set_num_threads(N) in the workers (default: torch's default)
    --florence DIR           an existing tiny Florence-2 directory (default: one is made)
    --json PATH              also write the results as JSON

Exit status: 0 when every image was labeled with its one object and the peak RSS is flat,
1 otherwise.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_common import REPO_ROOT, machine_busy_seconds, own_cpu_seconds  # puts the repository on sys.path

RESULT_MARKER = "BENCH_LABELING_RESULT "
IMAGE_HW = (480, 640)
ONTOLOGY = {"dog": "dog", "cat": "cat"}
SAM2_VARIANT = "sam2.1_hiera_tiny"
FLAT_RELATIVE = 0.10  # peak RSS may grow by less than 10% ...
FLAT_ABSOLUTE_MIB = 50.0  # ... or by less than 50 MiB from the smallest to the largest N
BUSY_CORES = 0.25  # other processes using more CPU than this during a run: timings flagged


def make_torchvision_importable() -> None:
    """transformers imports torchvision whenever it is installed; where the installed wheel is a
    CUDA-only build that does not import with the CPU torch, define the ops it expects first
    (``tests/meta_reference.py``). Not needed where torchvision is absent or working."""
    try:
        from meta_reference import register_torchvision_ops
    except ImportError:
        return
    register_torchvision_ops()


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mib() -> float:
    """Current resident set size (VmRSS); the peak where /proc is not available."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mib()


class RSSSampler(threading.Thread):
    """Samples the current RSS every ``interval`` seconds while labeling runs, so that growth
    within one run shows too (first vs last quarter of the samples)."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples = []  # (seconds since start, MiB)
        self._halt = threading.Event()
        self._start = time.perf_counter()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.perf_counter() - self._start, current_rss_mib()))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.samples.append((time.perf_counter() - self._start, current_rss_mib()))


# --------------------------------------------------------------------------------------------
# Worker: one N in this process
# --------------------------------------------------------------------------------------------


def synthetic_image(height: int, width: int, seed: int):
    """A deterministic HxWx3 uint8 RGB image: a colour gradient, a few filled rectangles and
    ellipses, mild noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.ogrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.float32)
    img[..., 0] = 255 * x / (width - 1)
    img[..., 1] = 255 * y / (height - 1)
    img[..., 2] = 128 + 64 * np.sin((x + y) / 40.0)
    for _ in range(5):
        color = rng.uniform(0, 255, size=3)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.05, 0.25) * width, rng.uniform(0.05, 0.25) * height
        if rng.random() < 0.5:
            inside = (np.abs(x - cx) < rx) & (np.abs(y - cy) < ry)
        else:
            inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1.0
        img[inside] = color
    img += rng.normal(0, 8, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_images(folder: Path, count: int) -> int:
    """``count`` synthetic JPEG images in ``folder``; returns their total size in bytes."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(count):
        path = folder / f"img_{i:05d}.jpg"
        Image.fromarray(synthetic_image(*IMAGE_HW, seed=i)).save(path, quality=90)
        total += path.stat().st_size
    return total


def build_sam2(size: int, seed: int):
    """SAM 2.1 tiny at ``size`` x ``size`` input with random official-format weights."""
    import dataclasses

    import segmenter

    config = dataclasses.replace(segmenter.resolve_config(SAM2_VARIANT), image_size=size)
    model = segmenter.build_model(config).eval()
    model.load_state_dict(segmenter.random_state_dict(config, seed=seed))
    return model


def run_worker(args) -> dict:
    """Label ``args.worker`` synthetic images; returns the measurements (printed as one JSON
    line by :func:`main`)."""
    make_torchvision_importable()
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from grounded_sam2 import GroundedSAM2

    count = args.worker
    with tempfile.TemporaryDirectory(prefix="bench_labeling_") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        input_bytes = write_images(tmp / "images", count)
        generate_s = time.perf_counter() - start

        model = GroundedSAM2(
            ONTOLOGY, florence=str(args.florence), sam2=build_sam2(args.sam2_size, args.seed), device="cpu"
        )
        loaded_rss = current_rss_mib()
        peak_before = peak_rss_mib()

        # when each batch's prediction ends (label() looks the pipeline's predict_batch up on the
        # instance per batch): shows whether images/s drops as a run goes on
        batch_ends = []
        predict_batch = model.pipeline.predict_batch

        def timed_predict_batch(*a, **kw):
            begin = time.perf_counter()
            out = predict_batch(*a, **kw)
            batch_ends.append((time.perf_counter(), len(out), time.perf_counter() - begin))
            return out

        model.pipeline.predict_batch = timed_predict_batch

        busy_before, own_before = machine_busy_seconds(), own_cpu_seconds()
        sampler = RSSSampler()
        sampler.start()
        start = time.perf_counter()
        summary = model.label(
            tmp / "images", output_folder=tmp / "dataset", format=args.format, batch_size=args.batch_size,
            progress=False,
        )
        seconds = time.perf_counter() - start
        own_cpu = own_cpu_seconds() - own_before
        other_cpu = machine_busy_seconds() - busy_before - own_cpu
        sampler.stop()
        peak = peak_rss_mib()
        end_rss = current_rss_mib()
        output_bytes = sum(p.stat().st_size for p in (tmp / "dataset").rglob("*") if p.is_file())
        # YOLO polygon size: vertices per row (parts of a mask are joined into one polygon)
        vertices = [
            (len(line.split()) - 1) // 2
            for label in (tmp / "dataset").glob("*/labels/*.txt")
            for line in label.read_text().splitlines()
            if line
        ]

    rss = [mib for _, mib in sampler.samples]
    half = count // 2
    done, halfway = 0, start
    predict_s = sum(d for _, _, d in batch_ends)
    for t, n, _ in batch_ends:
        done += n
        if done >= half:
            halfway = t
            break
    first_half_ips = done / (halfway - start) if halfway > start else float("nan")
    second_half_ips = (count - done) / (start + seconds - halfway) if count > done else float("nan")
    quarter = max(1, len(rss) // 4)
    return {
        "n": count,
        "seconds": seconds,
        "images_per_s": count / seconds,
        "seconds_per_image": seconds / count,
        "rss_loaded_mib": loaded_rss,
        "peak_rss_before_label_mib": peak_before,
        "peak_rss_mib": peak,
        "peak_minus_loaded_mib": peak - loaded_rss,
        "rss_end_mib": end_rss,
        "rss_sampled_max_mib": max(rss),
        "rss_first_quarter_max_mib": max(rss[:quarter]),
        "rss_last_quarter_max_mib": max(rss[-quarter:]),
        "predict_s": predict_s,  # grounding + SAM 2 (predict_batch calls)
        "write_and_other_s": seconds - predict_s,  # image loading, label export, writing, finalize
        "yolo_vertices_per_polygon_mean": sum(vertices) / len(vertices) if vertices else None,
        "images_per_s_first_half": first_half_ips,
        "images_per_s_second_half": second_half_ips,
        "own_cpu_cores": own_cpu / seconds,  # average cores this process used during label()
        "other_cpu_cores": max(other_cpu, 0.0) / seconds,  # ... and all other processes together
        "rss_samples": [[round(t, 2), round(m, 1)] for t, m in sampler.samples],
        "images": summary.images,
        "labeled": summary.labeled,
        "skipped": len(summary.skipped),
        "objects_per_class": summary.objects_per_class,
        "objects": sum(summary.objects_per_class.values()),
        "input_mib": input_bytes / 2**20,
        "output_mib": output_bytes / 2**20,
        "generate_images_s": generate_s,
        "torch_threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------------------------
# Parent: one subprocess per N
# --------------------------------------------------------------------------------------------


def run_size(count: int, florence: Path, args) -> dict:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", str(count), "--florence", str(florence),
        "--format", args.format, "--sam2-size", str(args.sam2_size), "--batch-size", str(args.batch_size),
        "--seed", str(args.seed),
    ]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    print(f"  N={count}: running in a fresh subprocess ...", flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=str(REPO_ROOT))  # stderr passes through
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if done.returncode != 0 or not lines:
        sys.stdout.write(done.stdout)
        raise SystemExit(f"worker for N={count} failed (exit status {done.returncode})")
    result = json.loads(lines[-1][len(RESULT_MARKER):])
    print(
        f"  N={count}: {result['seconds']:.1f} s, {result['images_per_s']:.2f} images/s "
        f"(first half {result['images_per_s_first_half']:.2f}, second half {result['images_per_s_second_half']:.2f}; "
        f"predict {result['predict_s']:.1f} s, loading/export/writing {result['write_and_other_s']:.1f} s), "
        f"peak RSS {result['peak_rss_mib']:.0f} MiB; CPU cores used: this run {result['own_cpu_cores']:.2f}, "
        f"other processes {result['other_cpu_cores']:.2f}",
        flush=True,
    )
    return result


def flatness(results) -> dict:
    small = min(results, key=lambda r: r["n"])
    large = max(results, key=lambda r: r["n"])
    growth = large["peak_rss_mib"] - small["peak_rss_mib"]
    relative = growth / small["peak_rss_mib"]
    return {
        "from_n": small["n"],
        "to_n": large["n"],
        "peak_growth_mib": growth,
        "peak_growth_relative": relative,
        "flat": relative < FLAT_RELATIVE or growth < FLAT_ABSOLUTE_MIB,
    }


def print_table(results, verdict) -> None:
    header = (
        f"{'N':>6} {'seconds':>9} {'images/s':>9} {'RSS loaded MiB':>15} {'peak RSS MiB':>13} "
        f"{'peak-loaded MiB':>16} {'RSS end MiB':>12} {'objects':>8} {'other CPU':>9}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['n']:>6} {r['seconds']:>9.1f} {r['images_per_s']:>9.2f} {r['rss_loaded_mib']:>15.0f} "
            f"{r['peak_rss_mib']:>13.0f} {r['peak_minus_loaded_mib']:>16.0f} {r['rss_end_mib']:>12.0f} "
            f"{r['objects']:>8} {r['other_cpu_cores']:>9.2f}"
        )
    print()
    print("RSS loaded: current RSS after both models are built, before label(); peak RSS: ru_maxrss of the")
    print("worker process at the end; RSS end: current RSS after label(). Only label() is timed. other CPU:")
    print("average CPU cores used by all other processes of the machine during label().")
    busy = [r["n"] for r in results if r["other_cpu_cores"] > BUSY_CORES]
    if busy:
        print(f"warning: other processes used more than {BUSY_CORES} CPU core on average during the run of N={busy}:")
        print("         they shared the CPU and the timings are pessimistic; rerun on a quiet machine")
    hidden = [r["n"] for r in results if r["peak_rss_mib"] <= r["peak_rss_before_label_mib"]]
    if hidden:
        print(f"note: for N={hidden} the peak was reached before label() (model loading): growth during")
        print("      labeling cannot show in the peak; see rss_samples in the JSON output")
    if len(results) > 1:
        status = "FLAT" if verdict["flat"] else "GROWS"
        print(
            f"peak RSS N={verdict['from_n']} -> N={verdict['to_n']}: {verdict['peak_growth_mib']:+.0f} MiB "
            f"({verdict['peak_growth_relative']:+.1%}); limit {FLAT_RELATIVE:.0%} or "
            f"{FLAT_ABSOLUTE_MIB:.0f} MiB: {status}"
        )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50,500", help="comma-separated numbers of images (default 50,500)")
    parser.add_argument(
        "--format", default="yolo", choices=["yolo", "yolo-det", "coco"], help="dataset format (default yolo)"
    )
    parser.add_argument(
        "--sam2-size", type=int, default=256, help="SAM 2 input size; 1024 is the real one (default 256)"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="images per batch in label() (default 4)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads in the workers (default: torch's default)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random SAM 2 weights (default 0)")
    parser.add_argument(
        "--florence", type=Path, default=None,
        help="existing tiny Florence-2 directory (default: one is made); a temporary copy is used",
    )
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON to PATH")
    # internal: label N images, print JSON
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if not args.sizes or min(args.sizes) < 1:
        parser.error("--sizes needs at least one positive number")
    if args.sam2_size < 64 or args.sam2_size % 16:
        parser.error("--sam2-size must be a multiple of 16, at least 64")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        if args.florence is None:
            raise SystemExit("--worker needs --florence")
        print(RESULT_MARKER + json.dumps(run_worker(args)), flush=True)
        return 0

    make_torchvision_importable()
    import torch
    import transformers

    with tempfile.TemporaryDirectory(prefix="bench_labeling_florence_") as tmp:
        florence = args.florence
        if florence is None:
            from grounded_sam2.tiny_models import make_tiny_florence2

            florence = make_tiny_florence2(Path(tmp) / "florence2")

        env = {
            "pipeline": "GroundedSAM2.label: tiny random Florence-2 (one 'dog' box per image) + SAM 2 + mask export",
            "sam2": f"{SAM2_VARIANT}, random weights, input {args.sam2_size}x{args.sam2_size}"
            + (" (real size)" if args.sam2_size == 1024 else " (reduced; real size is 1024)"),
            "format": args.format,
            "batch_size": args.batch_size,
            "images": f"synthetic {IMAGE_HW[0]}x{IMAGE_HW[1]} JPEG",
            "sizes": args.sizes,
            "device": "cpu",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "torch_threads": args.threads if args.threads is not None else torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        }
        print("Labeling benchmark: images/s and peak RSS, one fresh subprocess per N")
        for key, value in env.items():
            print(f"  {key}: {value}")
        print(flush=True)

        results = [run_size(n, florence, args) for n in args.sizes]

    verdict = flatness(results)
    print_table(results, verdict)
    complete = all(r["labeled"] == r["n"] and r["skipped"] == 0 and r["objects"] == r["n"] for r in results)
    if not complete:
        print("INCOMPLETE: not every image was labeled with its one object:")
        for r in results:
            print(f"  N={r['n']}: labeled {r['labeled']}, skipped {r['skipped']}, objects {r['objects']}")

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"environment": env, "flatness": verdict, "complete": complete, "results": results}, f, indent=2)
        print(f"results written to {args.json}")
    return 0 if complete and (verdict["flat"] or len(results) < 2) else 1


if __name__ == "__main__":
    sys.exit(main())
