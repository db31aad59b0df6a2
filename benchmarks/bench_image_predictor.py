"""Benchmark our SAM2ImagePredictor against Meta's reference (``sam2==1.1.0``).

Both predictors get the *same* random official-format weights
(:func:`segmenter.random_state_dict`) and the *same* deterministic synthetic images and boxes, so
the timings compare like with like; the script also checks that the two produce the same
low-resolution mask logits and prints the difference.

Scenarios (box prompts, ``multimask_output=False``, 1024x1024 model input):

  (a) single  1 image  x 8 boxes: ``set_image`` + ``predict(box=8 boxes)``
  (b) batch   4 images x 8 boxes: ``set_image_batch`` + ``predict_batch(box_batch=...)``

The images are non-square and of different sizes (480x640, 720x1280, 600x800, 512x512); scenario
(a) uses the first. Each predictor is warmed up once per scenario, then timed ``--repeats``
times, ours and Meta's alternately (their order swapped on every repeat) so that both share the
machine's noise; the median is reported. Everything runs under ``torch.inference_mode()``.

Run from the repository root (no installation needed; Meta's ``sam2`` must be importable)::

    python benchmarks/bench_image_predictor.py

Options::

    --variant sam2.1_hiera_tiny   any variant name understood by segmenter.resolve_config
    --repeats 3                   timed runs per scenario (median reported)
    --threads N                   torch.set_num_threads(N) (default: torch's default)
    --device cpu|cuda             (default cpu)
    --bf16                        bfloat16 autocast on CUDA for both (ours: bf16=True;
                                  Meta: torch.autocast("cuda", dtype=torch.bfloat16))
    --seed 0                      seed of the random weights
    --json PATH                   also write the results as JSON
    --tolerance T                 largest accepted relative logit difference
                                  (default 1e-3, or 5e-2 with --bf16); exit status 1 above it

Exit status: 0 when the outputs agree within the tolerance, 1 otherwise.
"""

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from bench_common import synthetic_image  # puts the repository on sys.path

# isort: split
import numpy as np  # noqa: E402
import torch  # noqa: E402

import segmenter  # noqa: E402

from meta_reference import build_meta_model, import_meta_sam2, meta_config_name  # noqa: E402

IMAGE_SIZES = [(480, 640), (720, 1280), (600, 800), (512, 512)]  # (H, W)
BOXES_PER_IMAGE = 8


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def synthetic_boxes(height: int, width: int, count: int, seed: int) -> np.ndarray:
    """``count`` deterministic XYXY float32 boxes lying inside a HxW image, 10% to 60% of its
    size."""
    rng = np.random.default_rng(seed)
    bw = rng.uniform(0.1, 0.6, count) * width
    bh = rng.uniform(0.1, 0.6, count) * height
    x0 = rng.uniform(0, 1, count) * (width - 1 - bw)
    y0 = rng.uniform(0, 1, count) * (height - 1 - bh)
    return np.stack([x0, y0, x0 + bw, y0 + bh], axis=1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Predictors and scenarios
# --------------------------------------------------------------------------------------------


def build_predictors(args):
    """(ours, Meta's, autocast context for Meta's calls, Meta config name) on identical weights."""
    device = torch.device(args.device)
    state_dict = segmenter.random_state_dict(args.variant, seed=args.seed)

    model = segmenter.build_sam2(args.variant, device="cpu")
    model.load_state_dict(state_dict)
    model = model.to(device).eval()
    ours = segmenter.SAM2ImagePredictor(model, bf16=args.bf16)

    config_name = meta_config_name(args.variant)
    sam2 = import_meta_sam2()
    meta_model = build_meta_model(args.variant, state_dict).to(device).eval()
    meta = sam2.sam2_image_predictor.SAM2ImagePredictor(meta_model)

    def meta_context():
        if args.bf16 and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    return ours, meta, meta_context, config_name


def run_single(predictor, images, boxes):
    predictor.set_image(images[0])
    yield "encode"
    _, iou, low_res = predictor.predict(box=boxes[0], multimask_output=False)
    yield "decode"
    yield [low_res], [iou]


def run_batch(predictor, images, boxes):
    predictor.set_image_batch(images)
    yield "encode"
    _, iou, low_res = predictor.predict_batch(box_batch=boxes, multimask_output=False)
    yield "decode"
    yield list(low_res), list(iou)


def timed_run(scenario_fn, predictor, images, boxes, device, context):
    """One run of a scenario: (total s, encode s, decode s, low-res logits list, IoU list)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode(), context():
        sync()
        start = time.perf_counter()
        steps = scenario_fn(predictor, images, boxes)
        next(steps)  # encode
        sync()
        encoded = time.perf_counter()
        next(steps)  # decode (numpy results: already synchronised, sync again for safety)
        sync()
        end = time.perf_counter()
        low_res, iou = next(steps)
    return end - start, encoded - start, end - encoded, low_res, iou


def compare(ours_low_res, meta_low_res, ours_iou, meta_iou):
    """Agreement of the two predictors' outputs for one scenario."""
    a = np.concatenate([np.asarray(x, np.float32).reshape(-1) for x in ours_low_res])
    b = np.concatenate([np.asarray(x, np.float32).reshape(-1) for x in meta_low_res])
    if a.shape != b.shape:
        raise SystemExit(f"output shapes differ: ours {a.shape} vs Meta {b.shape}")
    max_abs = float(np.abs(a - b).max())
    scale = float(np.abs(b).max())
    iou_a = np.concatenate([np.asarray(x, np.float32).reshape(-1) for x in ours_iou])
    iou_b = np.concatenate([np.asarray(x, np.float32).reshape(-1) for x in meta_iou])
    return {
        "logits_max_abs_diff": max_abs,
        "logits_max_abs": scale,
        "logits_rel_diff": max_abs / max(scale, 1e-12),
        "mask_agreement": float(np.mean((a > 0) == (b > 0))),
        "iou_max_abs_diff": float(np.abs(iou_a - iou_b).max()),
    }


def bench_scenario(name, scenario_fn, num_images, ours, meta, meta_context, images, boxes, args):
    device = torch.device(args.device)
    runners = {"ours": (ours, contextlib.nullcontext), "meta": (meta, meta_context)}
    times = {k: {"total": [], "encode": [], "decode": []} for k in runners}

    # Warm-up (not timed); its outputs are the ones compared.
    outputs = {}
    for key, (predictor, context) in runners.items():
        *_, low_res, iou = timed_run(scenario_fn, predictor, images, boxes, device, context)
        outputs[key] = (low_res, iou)
    agreement = compare(outputs["ours"][0], outputs["meta"][0], outputs["ours"][1], outputs["meta"][1])

    for repeat in range(args.repeats):
        order = ("ours", "meta") if repeat % 2 == 0 else ("meta", "ours")
        for key in order:
            predictor, context = runners[key]
            total, encode, decode, _, _ = timed_run(scenario_fn, predictor, images, boxes, device, context)
            times[key]["total"].append(total)
            times[key]["encode"].append(encode)
            times[key]["decode"].append(decode)
        print(
            f"  [{name}] repeat {repeat + 1}/{args.repeats}: ours {times['ours']['total'][-1]:.3f} s, "
            f"Meta {times['meta']['total'][-1]:.3f} s",
            flush=True,
        )

    med = {k: {part: statistics.median(v) for part, v in parts.items()} for k, parts in times.items()}
    return {
        "scenario": name,
        "images": num_images,
        "boxes_per_image": BOXES_PER_IMAGE,
        "ours_s": med["ours"]["total"],
        "meta_s": med["meta"]["total"],
        "ours_per_image_s": med["ours"]["total"] / num_images,
        "meta_per_image_s": med["meta"]["total"] / num_images,
        "ratio_meta_over_ours": med["meta"]["total"] / med["ours"]["total"],
        "ours_encode_s": med["ours"]["encode"],
        "ours_decode_s": med["ours"]["decode"],
        "meta_encode_s": med["meta"]["encode"],
        "meta_decode_s": med["meta"]["decode"],
        "times": times,
        "agreement": agreement,
    }


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="sam2.1_hiera_tiny", help="variant name (default: sam2.1_hiera_tiny)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per scenario; median reported (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default cpu)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast for both predictors (CUDA only)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON to PATH")
    parser.add_argument("--tolerance", type=float, default=None, help="max accepted relative logit difference")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but CUDA is not available")
    if args.bf16 and args.device != "cuda":
        parser.error("--bf16 needs --device cuda")
    if args.tolerance is None:
        args.tolerance = 5e-2 if args.bf16 else 1e-3
    return args


def print_table(results, args):
    header = (
        f"{'scenario':<22} {'ours s':>8} {'Meta s':>8} {'ours s/img':>10} {'Meta s/img':>10} "
        f"{'Meta/ours':>9} {'logit rel diff':>14} {'mask agree':>10}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        label = f"{r['scenario']} ({r['images']}x{r['boxes_per_image']} boxes)"
        a = r["agreement"]
        print(
            f"{label:<22} {r['ours_s']:>8.3f} {r['meta_s']:>8.3f} {r['ours_per_image_s']:>10.3f} "
            f"{r['meta_per_image_s']:>10.3f} {r['ratio_meta_over_ours']:>8.2f}x "
            f"{a['logits_rel_diff']:>14.2e} {a['mask_agreement']:>9.4%}"
        )
    print()
    print(f"{'median split (s)':<22} {'ours enc':>8} {'ours dec':>8} {'Meta enc':>10} {'Meta dec':>10}")
    for r in results:
        print(
            f"{r['scenario']:<22} {r['ours_encode_s']:>8.3f} {r['ours_decode_s']:>8.3f} "
            f"{r['meta_encode_s']:>10.3f} {r['meta_decode_s']:>10.3f}"
        )
    print()
    print("Meta/ours > 1 means ours is faster. logit rel diff = max|ours - Meta| / max|Meta| over the")
    print(f"low-res (256x256) logits of all boxes; tolerance {args.tolerance:g}.")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    ours, meta, meta_context, config_name = build_predictors(args)
    images = [synthetic_image(h, w, seed=i) for i, (h, w) in enumerate(IMAGE_SIZES)]
    boxes = [synthetic_boxes(h, w, BOXES_PER_IMAGE, seed=100 + i) for i, (h, w) in enumerate(IMAGE_SIZES)]

    env = {
        "variant": segmenter.resolve_config(args.variant).name,
        "meta_config": config_name,
        "image_size": ours.model.image_size,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "bf16": args.bf16,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "repeats": args.repeats,
        "seed": args.seed,
        "image_sizes_hw": IMAGE_SIZES,
    }
    print("SAM 2 image predictor benchmark: ours (segmenter) vs Meta (sam2 1.1.0)")
    for key, value in env.items():
        print(f"  {key}: {value}")
    print(flush=True)

    scenarios = [
        ("single", run_single, 1, images[:1], boxes[:1]),
        ("batch", run_batch, len(images), images, boxes),
    ]
    results = []
    for name, fn, num_images, imgs, bxs in scenarios:
        results.append(bench_scenario(name, fn, num_images, ours, meta, meta_context, imgs, bxs, args))

    print_table(results, args)
    ok = all(r["agreement"]["logits_rel_diff"] <= args.tolerance for r in results)
    print("outputs agree: OK" if ok else "outputs agree: MISMATCH (relative difference above tolerance)")

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(
                {"environment": env, "tolerance": args.tolerance, "outputs_agree": ok, "results": results}, f, indent=2
            )
        print(f"results written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
