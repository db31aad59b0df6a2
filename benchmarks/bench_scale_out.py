"""Benchmark scale-out: ``grounded-sam2 label`` as one process, with ``--devices`` workers and with
``--ray``, on the same images and configuration; wall time and images/s per mode, and a check that
every mode wrote the single process's dataset byte for byte.

Each mode is the command a user runs (a fresh subprocess: model loading, worker start-up and Ray's
start-up are included, as they are for a user). The models are tiny random ones
(``make-tiny-models``: every image gets one box) unless ``--florence`` and ``--sam2`` name others,
so on a CPU the figures measure the fixed costs of scaling out more than the labeling itself.

Run from the repository root::

    python benchmarks/bench_scale_out.py --images 40

Options::

    --images 40             synthetic 480x640 JPEG images
    --threads 1             torch threads per process on a CPU (the configuration, equal in every mode)
    --batch-size 4          images per batch group
    --modes single,devices:cpu:1,devices:cpu:2,ray:2
                            single: one process; devices:SPEC: --devices SPEC; ray:N: --ray with N
                            actors (a Ray started by the command on this machine)
    --florence DIR --sam2 PATH   other models (e.g. real sizes on a GPU machine)

On a machine with 4 GPUs (models on local disk)::

    python benchmarks/bench_scale_out.py --images 400 --florence /models/florence2-large \\
        --sam2 /models/sam2.1_hiera_large.pt --modes single,devices:cuda:0,devices:cuda:0,cuda:1,cuda:2,cuda:3,ray:4

(``devices:`` takes the rest of its comma-separated list up to the next mode name.)
"""

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import cv2

from bench_common import REPO_ROOT, synthetic_image

MODE_NAMES = ("single", "devices:", "ray:")


def parse_modes(text: str) -> List[str]:
    """``single,devices:cpu:1,devices:cuda:0,cuda:1,ray:2`` -> the modes, device lists kept whole."""
    modes: List[str] = []
    for part in text.split(","):
        if part.startswith(MODE_NAMES) or not modes:
            modes.append(part)
        else:
            modes[-1] += "," + part
    return modes


def dataset_digest(folder: Path) -> Dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--modes", default="single,devices:cpu:1,devices:cpu:2,ray:2")
    parser.add_argument("--florence")
    parser.add_argument("--sam2")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-scale-out-"))
    if args.florence and args.sam2:
        florence, sam2 = args.florence, args.sam2
    else:
        from grounded_sam2.tiny_models import make_tiny_models

        florence, sam2 = (str(p) for p in make_tiny_models(root / "tiny"))
    (root / "in").mkdir()
    for i in range(args.images):
        cv2.imwrite(str(root / "in" / f"{i:05d}.jpg"), cv2.cvtColor(synthetic_image(480, 640, i), cv2.COLOR_RGB2BGR))
    common = ["--ontology", "example", "--florence", florence, "--sam2", sam2, "--no-progress",
              "--batch-size", str(args.batch_size)]
    print(f"{args.images} images 480x640, batch size {args.batch_size}, {args.threads} thread(s) per CPU process")
    print(f"{'mode':<34} {'wall s':>8} {'images/s':>9}  same dataset as single")
    reference = None
    for mode in parse_modes(args.modes):
        options: List[str] = []
        if mode.startswith("devices:"):
            options = ["--devices", mode[len("devices:"):]]
        elif mode.startswith("ray:"):
            options = ["--ray", "--workers", mode[len("ray:"):]]
        elif mode != "single":
            parser.error(f"unknown mode {mode!r}")
        options += ["--threads", str(args.threads)]  # used on a CPU only
        output = root / mode.replace(":", "-").replace(",", "_")
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "grounded_sam2.cli", "label", str(root / "in"), "-o",
                              str(output), *common, *options], cwd=REPO_ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if run.returncode != 0:
            sys.exit(f"{mode} failed ({run.returncode}):\n{run.stderr[-3000:]}")
        digest = dataset_digest(output)
        reference = reference if reference is not None else digest
        print(f"{mode:<34} {wall:8.1f} {args.images / wall:9.2f}  {'yes' if digest == reference else 'NO'}")


if __name__ == "__main__":
    main()
