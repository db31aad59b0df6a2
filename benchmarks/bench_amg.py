"""Benchmark our SAM2AutomaticMaskGenerator against Meta's reference (``sam2==1.1.0``).

Both generators get the *same* random official-format weights
(:func:`segmenter.random_state_dict`) and the *same* deterministic synthetic 480x640 RGB image
(gradients, a few filled rectangles and ellipses, mild noise), with the same settings:
``points_per_side`` x ``points_per_side`` point prompts in batches of ``points_per_batch``,
``multimask_output=True`` (3 masks per point), no crop layers, ``output_mode="binary_mask"``.
Ours runs in float32 with ``bf16=False, fast_path=False`` (its defaults on CPU; on CUDA they
would switch on bfloat16 autocast and bigger decoder batches), so that both do the same
arithmetic on every device; ``--fast-path`` times ours with ``fast_path=True`` instead.

With the default thresholds (``pred_iou_thresh=0.8``, ``stability_score_thresh=0.95``,
``box_nms_thresh=0.7``) random weights leave few or no masks, so the post-processing of kept
masks (boxes, RLE encoding, NMS) is barely exercised. ``--low-thresholds`` sets
``pred_iou_thresh=0``, ``stability_score_thresh=0.3`` and ``box_nms_thresh=1.0`` (NMS off), so
that random weights yield many masks and that part is timed too.

Each generator is warmed up once, then timed ``--repeats`` times, ours and Meta's alternately
(their order swapped on every repeat) so that both share the machine's noise; the median
milliseconds per image is reported with the ratio Meta/ours (> 1: ours faster). Everything runs
under ``torch.inference_mode()``. The warm-up outputs are compared: same number of masks, every
mask, box, area and crop box equal, and the largest difference in ``predicted_iou`` and
``stability_score``. The CPU used by other processes during each timed run is measured
(/proc/stat); above 0.25 cores on average the timings are flagged.

Run from the repository root (no installation needed; Meta's ``sam2`` must be importable)::

    python benchmarks/bench_amg.py
    python benchmarks/bench_amg.py --low-thresholds

Options::

    --variant sam2.1_hiera_tiny   any variant name understood by segmenter.resolve_config
    --points-per-side 16          grid of point prompts per side
    --points-per-batch 64         point prompts per mask-decoder call
    --low-thresholds              pred_iou_thresh 0, stability_score_thresh 0.3, box_nms_thresh 1.0
    --repeats 3                   timed runs per generator (median reported)
    --threads N                   torch.set_num_threads(N) (default: torch's default)
    --device cpu|cuda             (default cpu; float32 for both, ours with bf16=False)
    --fast-path                   ours with fast_path=True (as many points per decoder call as
                                  free memory allows); masks may then differ by rounding, so
                                  the check accepts mask IoU >= 0.99 and scores within 1e-3
    --seed 0                      seed of the random weights
    --json PATH                   also write the results as JSON

Exit status: 0 when the outputs agree (same number of masks, every mask equal, scores within
1e-4; relaxed as above with ``--fast-path``), 1 otherwise. Whether
ours is slower than Meta's is printed but does not change the exit status (timings are noisy).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from bench_common import machine_busy_seconds, own_cpu_seconds, synthetic_image  # puts the repository on sys.path

# isort: split
import numpy as np  # noqa: E402
import torch  # noqa: E402

import segmenter  # noqa: E402

from meta_reference import build_meta_model, import_meta_sam2, meta_config_name  # noqa: E402

IMAGE_HW = (480, 640)
IMAGE_SEED = 0
LOW_THRESHOLDS = dict(pred_iou_thresh=0.0, stability_score_thresh=0.3, box_nms_thresh=1.0)
SCORE_TOLERANCE = 1e-4
BUSY_CORES = 0.25  # other processes using more CPU than this during a timed run: timings flagged


def generator_settings(args) -> dict:
    settings = dict(points_per_side=args.points_per_side, points_per_batch=args.points_per_batch)
    if args.low_thresholds:
        settings.update(LOW_THRESHOLDS)
    return settings


def build_generators(args):
    """(ours, Meta's, Meta config name) on identical weights and settings."""
    device = torch.device(args.device)
    state_dict = segmenter.random_state_dict(args.variant, seed=args.seed)

    model = segmenter.build_model(segmenter.resolve_config(args.variant)).eval()
    model.load_state_dict(state_dict)
    model = model.to(device).eval()
    settings = generator_settings(args)
    ours = segmenter.SAM2AutomaticMaskGenerator(model, bf16=False, fast_path=args.fast_path, **settings)

    config_name = meta_config_name(args.variant)
    import_meta_sam2()
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator as MetaGenerator

    meta_model = build_meta_model(args.variant, state_dict).to(device).eval()
    meta = MetaGenerator(meta_model, **settings)
    return ours, meta, config_name


def timed_generate(generator, image, device):
    """One ``generate`` call: (seconds, records, average CPU cores used by other processes)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        sync()
        busy_before, own_before = machine_busy_seconds(), own_cpu_seconds()
        start = time.perf_counter()
        records = generator.generate(image)
        sync()
        end = time.perf_counter()
        other_cpu = machine_busy_seconds() - busy_before - (own_cpu_seconds() - own_before)
    return end - start, records, max(other_cpu, 0.0) / (end - start)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def compare(ours, meta, relaxed: bool = False):
    """Agreement of the two generators' records (``relaxed``: mask IoU >= 0.99 and scores within
    1e-3 instead of equal masks and scores within 1e-4)."""
    result = {
        "ours_masks": len(ours),
        "meta_masks": len(meta),
        "same_count": len(ours) == len(meta),
        "masks_equal": 0,
        "boxes_equal": 0,
        "areas_equal": 0,
        "crop_boxes_equal": 0,
        "predicted_iou_max_abs_diff": 0.0,
        "stability_score_max_abs_diff": 0.0,
        "point_coords_max_abs_diff": 0.0,
        "min_mask_iou": 1.0,
    }
    for o, m in zip(ours, meta):
        same_shape = o["segmentation"].shape == m["segmentation"].shape
        result["masks_equal"] += int(same_shape and np.array_equal(o["segmentation"], m["segmentation"]))
        iou = mask_iou(o["segmentation"], m["segmentation"]) if same_shape else 0.0
        result["min_mask_iou"] = min(result["min_mask_iou"], iou)
        result["boxes_equal"] += int(list(o["bbox"]) == list(m["bbox"]))
        result["areas_equal"] += int(o["area"] == m["area"])
        result["crop_boxes_equal"] += int(list(o["crop_box"]) == list(m["crop_box"]))
        for key in ("predicted_iou", "stability_score"):
            diff = abs(float(o[key]) - float(m[key]))
            result[f"{key}_max_abs_diff"] = max(result[f"{key}_max_abs_diff"], diff)
        diff = float(np.abs(np.asarray(o["point_coords"], float) - np.asarray(m["point_coords"], float)).max())
        result["point_coords_max_abs_diff"] = max(result["point_coords_max_abs_diff"], diff)
    n = len(meta)
    tolerance = 1e-3 if relaxed else SCORE_TOLERANCE
    masks_ok = result["min_mask_iou"] >= 0.99 if relaxed else (
        result["masks_equal"] == n and result["boxes_equal"] == n and result["areas_equal"] == n
    )
    result["ok"] = bool(
        result["same_count"]
        and masks_ok
        and result["crop_boxes_equal"] == n
        and result["predicted_iou_max_abs_diff"] <= tolerance
        and result["stability_score_max_abs_diff"] <= tolerance
        and result["point_coords_max_abs_diff"] <= 1e-3
    )
    return result


def bench(ours, meta, image, args):
    device = torch.device(args.device)
    runners = {"ours": ours, "meta": meta}
    times = {k: [] for k in runners}
    other_cores = {k: [] for k in runners}

    # Warm-up (not timed); its outputs are the ones compared.
    outputs = {}
    for key, generator in runners.items():
        seconds, outputs[key], _ = timed_generate(generator, image, device)
        print(f"  warm-up {key}: {seconds:.3f} s, {len(outputs[key])} masks", flush=True)
    agreement = compare(outputs["ours"], outputs["meta"], relaxed=args.fast_path)

    for repeat in range(args.repeats):
        order = ("ours", "meta") if repeat % 2 == 0 else ("meta", "ours")
        for key in order:
            seconds, _, other = timed_generate(runners[key], image, device)
            times[key].append(seconds)
            other_cores[key].append(other)
        print(
            f"  repeat {repeat + 1}/{args.repeats}: ours {times['ours'][-1]:.3f} s, Meta {times['meta'][-1]:.3f} s "
            f"(other processes: {other_cores['ours'][-1]:.2f} / {other_cores['meta'][-1]:.2f} cores)",
            flush=True,
        )

    ours_ms = 1000 * statistics.median(times["ours"])
    meta_ms = 1000 * statistics.median(times["meta"])
    return {
        "ours_ms_per_image": ours_ms,
        "meta_ms_per_image": meta_ms,
        "ratio_meta_over_ours": meta_ms / ours_ms,
        "times_s": times,
        "other_cpu_cores": other_cores,  # per timed run: average cores used by all other processes
        "max_other_cpu_cores": max(max(v) for v in other_cores.values()),
        "agreement": agreement,
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="sam2.1_hiera_tiny", help="variant name (default: sam2.1_hiera_tiny)")
    parser.add_argument("--points-per-side", type=int, default=16, help="point grid per side (default 16)")
    parser.add_argument("--points-per-batch", type=int, default=64, help="points per decoder call (default 64)")
    parser.add_argument(
        "--low-thresholds",
        action="store_true",
        help="pred_iou_thresh 0, stability_score_thresh 0.3, box_nms_thresh 1.0 (random weights yield masks)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per generator; median reported (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default cpu)")
    parser.add_argument(
        "--fast-path", action="store_true", help="ours with fast_path=True (bigger decoder batches); looser check"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.points_per_side < 1 or args.points_per_batch < 1:
        parser.error("--points-per-side and --points-per-batch must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but CUDA is not available")
    return args


def print_table(result, args):
    a = result["agreement"]
    header = f"{'':<28} {'ours ms':>9} {'Meta ms':>9} {'Meta/ours':>9} {'masks ours/Meta':>15} {'masks equal':>11}"
    label = f"{args.points_per_side}x{args.points_per_side} pts, " + (
        "low thr" if args.low_thresholds else "default thr"
    )
    if args.fast_path:
        label += ", fast"
    print()
    print(header)
    print("-" * len(header))
    print(
        f"{label:<28} {result['ours_ms_per_image']:>9.0f} {result['meta_ms_per_image']:>9.0f} "
        f"{result['ratio_meta_over_ours']:>8.2f}x {a['ours_masks']:>7}/{a['meta_masks']:<7} "
        f"{a['masks_equal']:>5}/{a['meta_masks']:<5}"
    )
    print()
    print("Meta/ours > 1 means ours is faster (median ms per image).")
    print(f"other processes used at most {result['max_other_cpu_cores']:.2f} CPU cores on average during a timed run.")
    if result["max_other_cpu_cores"] > BUSY_CORES:
        print(
            f"warning: that is more than {BUSY_CORES} cores; the timings are disturbed, "
            "run again on a quiet machine."
        )
    print(
        f"max |ours - Meta|: predicted_iou {a['predicted_iou_max_abs_diff']:.2e}, "
        f"stability_score {a['stability_score_max_abs_diff']:.2e}, point_coords {a['point_coords_max_abs_diff']:.2e}, "
        f"min mask IoU {a['min_mask_iou']:.4f}; "
        f"boxes equal {a['boxes_equal']}/{a['meta_masks']}, areas equal {a['areas_equal']}/{a['meta_masks']}"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    ours, meta, config_name = build_generators(args)
    image = synthetic_image(*IMAGE_HW, seed=IMAGE_SEED)

    env = {
        "variant": segmenter.resolve_config(args.variant).name,
        "meta_config": config_name,
        "image_size": ours.predictor.model.image_size,
        "image_hw": IMAGE_HW,
        "settings": generator_settings(args),
        "ours_fast_path": args.fast_path,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "repeats": args.repeats,
        "seed": args.seed,
    }
    print("SAM 2 automatic mask generator benchmark: ours (segmenter) vs Meta (sam2 1.1.0)")
    for key, value in env.items():
        print(f"  {key}: {value}")
    print(flush=True)

    result = bench(ours, meta, image, args)
    print_table(result, args)
    ok = result["agreement"]["ok"]
    print("outputs agree: OK" if ok else "outputs agree: MISMATCH")
    faster = result["ours_ms_per_image"] <= result["meta_ms_per_image"]
    print("speed: ours is not slower than Meta's" if faster else "speed: ours is SLOWER than Meta's")

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(
                {"environment": env, "outputs_agree": ok, "ours_not_slower": faster, "result": result}, f, indent=2
            )
        print(f"results written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
