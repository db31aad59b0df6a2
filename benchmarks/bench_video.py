"""Benchmark our SAM2VideoPredictor: speed against Meta's reference (``sam2==1.1.0``), memory on
long videos, and frames/s on a GPU.

Three modes:

``--compare`` (the default on the CPU)
    Ours and Meta's SAM2VideoPredictor on the *same* random official-format weights
    (:func:`segmenter.random_state_dict`) at the real 1024 input, on the *same* synthetic video:
    ``--frames`` (default 16) 480x640 frames of two shapes moving over a fixed textured
    background, written as a JPEG folder to a temporary directory, so that both load the same
    frames. One session: ``init_state(folder)``; object 1 by one positive click and object 2 by
    a box, both on frame 0 (``--objects 1`` keeps only the click); ``propagate_in_video`` over
    every frame. The three parts are timed separately, and the time our lazy frame source
    takes per frame is reported on its own. The headline frames/s is
    ``frames / propagate_in_video seconds``. The end-to-end figure includes ``init_state`` and
    the add calls: Meta reads and normalises every frame and encodes frame 0 in ``init_state``,
    while ours reads frames lazily inside ``propagate_in_video``, so only the end-to-end figure
    does the same work on both sides. Ours runs with ``fill_hole_area=0``, because Meta skips
    hole filling on the CPU (its CUDA extension is missing). The head that gives object scores
    gets a +1 bias, as in ``tests/segmenter/test_parity_video.py``, so random weights keep the
    objects clearly present and the mask comparison means something.
    Each predictor first runs ``--warmup`` short sessions (3 frames, untimed). Then each runs
    ``--repeats`` full sessions, alternating with the other (the order is swapped on every
    repeat); the script reports the **median**. The masks of the first timed session are
    compared frame by frame (the add calls' outputs and every propagated frame, at video
    resolution): max |ours - Meta| of the logits, that value relative to max |Meta|, binary
    agreement, and the frames where an object is absent. The exit status is 1 if the relative
    difference is above ``--tolerance``. The script also records the CPU that other processes
    used (/proc/stat).

``--long-video N``
    Memory on a long video: sam2.1 tiny at a reduced input (``--long-image-size``, default
    128), one object (a box on frame 0), N frames given as a list of small 72x128 arrays,
    tracked forward. It runs twice, each time in a fresh subprocess so that one peak RSS cannot
    hide the other: our default predictor (bounded: outputs that no later frame can attend to
    are dropped), then ``keep_all_frame_outputs=True`` (everything kept, as Meta does), both
    with the constructor's other defaults. Before tracking, freed heap memory is given back
    (``malloc_trim``) and the peak RSS is reset (``/proc/self/clear_refs``), so that the figures
    measure tracking rather than building the model. After 100, 500, 1000 and N frames the
    script records the stored tracked outputs (``len(state.objects[1].bank.non_cond)``), the
    bytes they hold (their tensors' storages, each counted once), the current RSS (VmRSS) and
    the peak RSS since tracking started (VmHWM; ``ru_maxrss`` where /proc is missing;
    bench_common has no RSS helper). At a 128 input a stored output is only 13 KiB, small beside
    the allocator's noise in RSS; ``--long-image-size 256`` (49 KiB an output) shows the
    difference in RSS more clearly, and at the real 1024 input an output holds about 770 KiB.
    A hash of every frame's mask logits checks that dropping outputs does not change the
    result. The exit status is 1 if the bounded bank changes after the first sample or the
    hashes differ.

``--device cuda [--variants sam2.1_hiera_tiny sam2.1_hiera_large]``
    Frames/s of ours on a GPU: real-size random weights, 1024 input, bfloat16 autocast (the
    predictor's CUDA default), ``--frames`` (default 200) 540x960 JPEG frames, and by default one
    object with one click, the session of Meta's ``sam2/benchmark.py``. Each variant gets
    ``--warmup`` short sessions, then ``--repeats`` timed ones; the median is reported. With
    ``--compare``, Meta's predictor runs too, under ``torch.autocast("cuda", torch.bfloat16)``,
    and the masks are compared (bf16, so use a loose ``--tolerance``). For reference, Meta
    publishes these sam2.1 figures (A100, bfloat16, ``torch.compile``, ``vos_optimized``):
    tiny 91.2 FPS, large 39.5 FPS.

Run from the repository root (no installation needed; Meta's ``sam2`` must be importable for
``--compare``)::

    python benchmarks/bench_video.py                                  # CPU, ours vs Meta, 16 frames
    python benchmarks/bench_video.py --long-video 1200                # memory, bounded vs keep-all
    python benchmarks/bench_video.py --device cuda --variants sam2.1_hiera_tiny sam2.1_hiera_large

Options::

    --variants V [V ...]     variant names (default sam2.1_hiera_tiny)
    --long-image-size 128    model input size of --long-video
    --frames N               video length (default 16 on the CPU, 200 on CUDA)
    --objects 1|2            click only, or click + box (default 2 on the CPU, 1 on CUDA)
    --repeats 3              timed sessions per predictor (median reported)
    --warmup 1               untimed 3-frame sessions per predictor before timing
    --fill-hole-area 0       ours' fill_hole_area in the speed modes (0: as Meta on the CPU)
    --batch-objects auto     ours' batch_objects (auto: the predictor's default, on for CUDA)
    --threads N              torch.set_num_threads(N) (default: torch's default)
    --seed 0                 seed of the random weights
    --tolerance T            largest accepted relative logit difference (default 1e-3 in
                             float32, 5e-2 on CUDA)
    --profile PATH           cProfile one extra session of ours (after the timed ones)
    --json PATH              also write the results as JSON
"""

import argparse
import contextlib
import cProfile
import ctypes
import dataclasses
import gc
import hashlib
import json
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # Meta's propagate_in_video draws a progress bar

from bench_common import REPO_ROOT, machine_busy_seconds, own_cpu_seconds, synthetic_image  # noqa: E402

# isort: split
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import segmenter  # noqa: E402
from segmenter.tracking import NO_OBJECT_SCORE  # noqa: E402

COMPARE_HW = (480, 640)  # (H, W) of the --compare video
CUDA_HW = (540, 960)  # as the 960x540 video of Meta's benchmark
LONG_HW = (72, 128)  # frames of --long-video
LONG_IMAGE_SIZE = 128
LONG_SAMPLES = (100, 500, 1000)  # and N
WARMUP_FRAMES = 3
OBJECT_SCORE_BIAS = "sam_mask_decoder.pred_obj_score_head.layers.2.bias"
OBJECT_SCORE_SHIFT = 1.0  # as tests/segmenter/test_parity_video.py: objects clearly present
BUSY_CORES = 0.25  # other processes using more CPU than this during a timed session: flagged
RESULT_MARKER = "BENCH_VIDEO_RESULT "
META_PUBLISHED_FPS = {"sam2.1_hiera_tiny": 91.2, "sam2.1_hiera_large": 39.5}  # A100, bf16, compiled


# --------------------------------------------------------------------------------------------
# Synthetic video
# --------------------------------------------------------------------------------------------


def shapes_at(t: int, height: int, width: int):
    """The two moving shapes on frame ``t``: a rectangle (x0, y0, x1, y1) sliding right and
    back, and an ellipse (cx, cy, rx, ry) moving left/down and back (period 64 frames)."""
    phase = np.sin(2 * np.pi * t / 64.0)
    rw, rh = 0.22 * width, 0.28 * height
    x0 = (0.10 + 0.25 * (phase + 1) / 2) * width
    y0 = 0.15 * height
    rect = (x0, y0, x0 + rw, y0 + rh)
    ellipse = ((0.70 - 0.2 * (phase + 1) / 2) * width, (0.62 + 0.1 * phase) * height, 0.12 * width, 0.16 * height)
    return rect, ellipse


def make_frames(count: int, height: int, width: int):
    """``count`` HxWx3 uint8 RGB frames: a fixed textured background (bench_common's synthetic
    image, seed 0) with a red rectangle and a green ellipse moving over it."""
    background = synthetic_image(height, width, seed=0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for t in range(count):
        (x0, y0, x1, y1), (cx, cy, rx, ry) = shapes_at(t, height, width)
        img = background.copy()
        img[(x >= x0) & (x < x1) & (y >= y0) & (y < y1)] = (220, 40, 40)
        img[((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1.0] = (40, 220, 60)
        frames.append(img)
    return frames


def write_jpeg_folder(folder: Path, count: int, height: int, width: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t, img in enumerate(make_frames(count, height, width)):
        Image.fromarray(img).save(folder / f"{t:05d}.jpg", quality=95)
    return folder


def prompts(height: int, width: int, objects: int):
    """[(obj_id, add_new_points_or_box kwargs)] on frame 0: object 1 a positive click on the
    ellipse, object 2 a box around the rectangle."""
    rect, (cx, cy, _, _) = shapes_at(0, height, width)
    click = (1, dict(points=np.array([[cx, cy]], np.float32), labels=np.array([1], np.int32)))
    box = (2, dict(box=np.array(rect, np.float32)))
    return [click, box][:objects]


# --------------------------------------------------------------------------------------------
# Predictors
# --------------------------------------------------------------------------------------------


def random_weights(variant: str, seed: int):
    state_dict = segmenter.random_state_dict(variant, seed=seed)
    state_dict[OBJECT_SCORE_BIAS] += OBJECT_SCORE_SHIFT
    return state_dict


def build_ours(variant: str, state_dict, device, image_size: int = 1024, **predictor_kwargs):
    config = segmenter.resolve_config(variant)
    if config.image_size != image_size:
        config = dataclasses.replace(config, image_size=image_size)
    model = segmenter.build_model(config).eval()
    model.load_state_dict(state_dict, strict=True)
    model = model.to(device).eval()
    return segmenter.SAM2VideoPredictor(model, **predictor_kwargs)


def build_meta(variant: str, state_dict, device):
    """Meta's SAM2VideoPredictor on identical weights: on the CPU through
    tests/meta_reference.py (float32, its bfloat16 memories handed back as float32); on CUDA
    as Meta builds it (used under bfloat16 autocast)."""
    from meta_reference import register_torchvision_ops

    register_torchvision_ops()  # Meta's sam2 imports torchvision
    from meta_reference import build_meta_video_predictor, import_meta_sam2, meta_config_name

    warnings.filterwarnings("ignore", message=r"(?s).*Skipping the post-processing")
    if device.type == "cpu":
        return build_meta_video_predictor(variant, state_dict, image_size=1024)
    sam2 = import_meta_sam2()
    import sam2.build_sam  # noqa: F811

    predictor = sam2.build_sam.build_sam2_video_predictor(meta_config_name(variant), ckpt_path=None, device=str(device))
    predictor.load_state_dict(state_dict, strict=True)
    return predictor.eval()


def sync_fn(device):
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


# --------------------------------------------------------------------------------------------
# One session: init_state, add prompts, propagate
# --------------------------------------------------------------------------------------------


def run_session(predictor, video, session_prompts, device, context, max_frames=None, keep_masks=False):
    """Times init_state, the add calls and propagate_in_video. Returns a dict of seconds, frames
    propagated, the CPU cores other processes used, and (``keep_masks``) the masks as float32
    CPU tensors: [("add", obj_id, masks)..., ("frame", idx, masks)...]."""
    sync = sync_fn(device)
    masks = []
    with torch.inference_mode(), context():
        sync()
        busy0, own0 = machine_busy_seconds(), own_cpu_seconds()
        t0 = time.perf_counter()
        state = predictor.init_state(video)
        sync()
        t1 = time.perf_counter()
        for obj_id, kwargs in session_prompts:
            _, _, logits = predictor.add_new_points_or_box(state, 0, obj_id, **kwargs)
            if keep_masks:
                masks.append(("add", obj_id, logits.float().cpu()))
        sync()
        t2 = time.perf_counter()
        frames = 0
        for frame_idx, _, logits in predictor.propagate_in_video(state, max_frame_num_to_track=max_frames):
            frames += 1
            if keep_masks:
                masks.append(("frame", frame_idx, logits.float().cpu()))
        sync()
        t3 = time.perf_counter()
        other = machine_busy_seconds() - busy0 - (own_cpu_seconds() - own0)
    return {
        "init_s": t1 - t0,
        "add_s": t2 - t1,
        "propagate_s": t3 - t2,
        "total_s": t3 - t0,
        "frames": frames,
        "other_cpu_cores": max(other, 0.0) / (t3 - t0),
        "masks": masks,
        "state": state,
    }


def frame_loading_ms(video: str, image_size: int, device) -> float:
    """Milliseconds per frame that our lazy frame source takes to read, resize and normalise a
    frame (the part of propagate_in_video that Meta does in init_state instead)."""
    frames = segmenter.load_video_frames(video, image_size, device=device)
    sync = sync_fn(device)
    sync()
    start = time.perf_counter()
    for i in range(len(frames)):
        frames[i]
    sync()
    return 1000 * (time.perf_counter() - start) / len(frames)


def compare_masks(ours, meta):
    """Agreement of two sessions' masks (lists from run_session(keep_masks=True))."""
    if [m[:2] for m in ours] != [m[:2] for m in meta]:
        raise SystemExit("the two predictors returned different frames or calls")
    max_abs, scale, agree, total, presence_differs = 0.0, 0.0, 0, 0, 0
    absent = 0
    for (_, _, a), (_, _, b) in zip(ours, meta):
        if a.shape != b.shape:
            raise SystemExit(f"mask shapes differ: ours {tuple(a.shape)} vs Meta {tuple(b.shape)}")
        a_absent = (a == NO_OBJECT_SCORE).flatten(1).all(dim=1)
        b_absent = (b == NO_OBJECT_SCORE).flatten(1).all(dim=1)
        presence_differs += int((a_absent != b_absent).sum())
        absent += int(b_absent.sum())
        max_abs = max(max_abs, float((a - b).abs().max()))
        scale = max(scale, float(b.abs().max()))
        agree += int(((a > 0) == (b > 0)).sum())
        total += a.numel()
    return {
        "outputs_compared": len(ours),
        "logits_max_abs_diff": max_abs,
        "logits_max_abs": scale,
        "logits_rel_diff": max_abs / max(scale, 1e-12),
        "mask_agreement": agree / max(total, 1),
        "absent_object_frames_meta": absent,
        "presence_differs": presence_differs,
    }


def object_score_margin(state) -> float:
    """The object score closest to 0 in our final state (present/absent threshold)."""
    scores = [
        float(out.object_score_logits.abs().min())
        for obj in state.objects.values()
        for out in [*obj.bank.cond.values(), *obj.bank.non_cond.values()]
    ]
    return min(scores) if scores else float("nan")


def bench_variant(variant: str, args, device, video, num_frames, hw, with_meta: bool) -> dict:
    """Warm-up and timed sessions of ours (and Meta's) on one variant."""
    state_dict = random_weights(variant, args.seed)
    options = dict(fill_hole_area=args.fill_hole_area)
    if args.batch_objects != "auto":  # the predictor's own default otherwise (on for CUDA, off elsewhere)
        options["batch_objects"] = args.batch_objects == "on"
    runners = {"ours": (build_ours(variant, state_dict, device, **options), contextlib.nullcontext)}
    if with_meta:
        meta = build_meta(variant, state_dict, device)
        if device.type == "cuda":
            runners["meta"] = (meta, lambda: torch.autocast("cuda", dtype=torch.bfloat16))
        else:
            runners["meta"] = (meta, contextlib.nullcontext)
    del state_dict
    if with_meta:  # the same post-processing on both sides (Meta skips hole filling without its CUDA extension)
        runners["meta"][0].fill_hole_area = args.fill_hole_area
    session_prompts = prompts(*hw, args.objects)

    for key, (predictor, context) in runners.items():
        for _ in range(args.warmup):
            run = run_session(predictor, video, session_prompts, device, context, max_frames=WARMUP_FRAMES - 1)
            print(f"  [{variant}] warm-up {key}: {run['total_s']:.2f} s for {run['frames']} frames", flush=True)

    times = {k: [] for k in runners}
    first_masks = {}
    for repeat in range(args.repeats):
        order = list(runners) if repeat % 2 == 0 else list(reversed(runners))
        for key in order:
            predictor, context = runners[key]
            run = run_session(
                predictor, video, session_prompts, device, context, keep_masks=with_meta and key not in first_masks
            )
            if key not in first_masks and with_meta:
                first_masks[key] = run["masks"]
            if key == "ours" and repeat == 0:
                margin = object_score_margin(run["state"])
            if run["frames"] != num_frames:
                raise SystemExit(f"{key} propagated {run['frames']} frames, expected {num_frames}")
            times[key].append({k: run[k] for k in ("init_s", "add_s", "propagate_s", "total_s", "other_cpu_cores")})
            del run
        line = ", ".join(
            f"{k} propagate {times[k][-1]['propagate_s']:.2f} s (total {times[k][-1]['total_s']:.2f} s, "
            f"other processes {times[k][-1]['other_cpu_cores']:.2f} cores)"
            for k in runners
        )
        print(f"  [{variant}] repeat {repeat + 1}/{args.repeats}: {line}", flush=True)

    result = {"variant": segmenter.resolve_config(variant).name, "frames": num_frames, "objects": args.objects}
    for key in runners:
        med = {
            part: statistics.median(t[part] for t in times[key])
            for part in ("init_s", "add_s", "propagate_s", "total_s")
        }
        result[key] = {
            **med,
            "propagate_fps": num_frames / med["propagate_s"],
            "add_and_propagate_fps": num_frames / (med["add_s"] + med["propagate_s"]),
            "end_to_end_fps": num_frames / med["total_s"],
            "runs": times[key],
        }
    result["object_score_margin_ours"] = margin
    result["ours_frame_loading_ms"] = frame_loading_ms(video, 1024, device)
    result["max_other_cpu_cores"] = max(t["other_cpu_cores"] for ts in times.values() for t in ts)
    if with_meta:
        result["ratio_propagate_ours_over_meta_fps"] = result["ours"]["propagate_fps"] / result["meta"]["propagate_fps"]
        result["ratio_end_to_end_ours_over_meta_fps"] = (
            result["ours"]["end_to_end_fps"] / result["meta"]["end_to_end_fps"]
        )
        result["agreement"] = compare_masks(first_masks["ours"], first_masks["meta"])

    if args.profile:
        predictor, context = runners["ours"]
        profiler = cProfile.Profile()
        profiler.enable()
        run_session(predictor, video, session_prompts, device, context)
        profiler.disable()
        path = Path(args.profile)
        path.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(str(path))
        print(f"\n  cProfile of one session of ours written to {path}; top 25 by cumulative time:")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return result


def print_speed_table(results, args, with_meta: bool) -> None:
    print()
    header = (
        f"{'variant':<20} {'impl':<5} {'init s':>7} {'add s':>7} {'prop s':>8} {'prop FPS':>9} "
        f"{'add+prop FPS':>12} {'e2e FPS':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        for key in ("ours", "meta") if with_meta else ("ours",):
            m = r[key]
            print(
                f"{r['variant']:<20} {key:<5} {m['init_s']:>7.2f} {m['add_s']:>7.2f} {m['propagate_s']:>8.2f} "
                f"{m['propagate_fps']:>9.3f} {m['add_and_propagate_fps']:>12.3f} {m['end_to_end_fps']:>8.3f}"
            )
    print()
    print(f"median of {args.repeats} sessions; {results[0]['frames']} frames, {results[0]['objects']} object(s).")
    print("prop FPS = frames / propagate_in_video s; add+prop FPS = frames / (add calls + propagate) s, as Meta's")
    print("sam2/benchmark.py; e2e FPS also counts init_state.")
    for r in results:
        if with_meta:
            a = r["agreement"]
            print(
                f"{r['variant']}: ours/Meta FPS: propagate {r['ratio_propagate_ours_over_meta_fps']:.2f}x, end to end "
                f"{r['ratio_end_to_end_ours_over_meta_fps']:.2f}x (> 1: ours faster)"
            )
            print(
                f"  masks ({a['outputs_compared']} outputs): max |ours - Meta| {a['logits_max_abs_diff']:.3e} "
                f"(max |Meta| {a['logits_max_abs']:.1f}, relative {a['logits_rel_diff']:.2e}), binary agreement "
                f"{a['mask_agreement']:.6%}, absent-object frames (Meta) "
                f"{a['absent_object_frames_meta']}, presence differs "
                f"{a['presence_differs']}; smallest |object score| (ours) {r['object_score_margin_ours']:.2f}"
            )
        published = META_PUBLISHED_FPS.get(r["variant"])
        if published and args.device == "cuda":
            print(f"  Meta's published figure for {r['variant']} (A100, bf16, compiled): {published} FPS")
        print(
            f"  ours: reading, resizing and normalising a frame takes {r['ours_frame_loading_ms']:.1f} ms "
            "(inside propagate)"
        )
        print(f"  other processes used at most {r['max_other_cpu_cores']:.2f} CPU cores during a timed session", end="")
        print(" (timings disturbed)" if r["max_other_cpu_cores"] > BUSY_CORES else "")


# --------------------------------------------------------------------------------------------
# --long-video: one subprocess per predictor
# --------------------------------------------------------------------------------------------


def proc_status_mib(field: str) -> float:
    """A /proc/self/status memory field (VmRSS, VmHWM) in MiB; ru_maxrss where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def trim_heap() -> None:
    """Give freed heap memory back to the system (glibc malloc_trim), so that the RSS after this
    point grows with what tracking keeps instead of refilling memory freed while building the
    model. Does nothing where glibc is not used."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: /proc/self/clear_refs), so that the peak measures
    tracking, not building the model; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def bank_bytes(state) -> int:
    """Bytes held by the stored outputs' tensors (every storage counted once: a view keeps its
    whole storage alive)."""
    storages = {}
    for obj in state.objects.values():
        for out in [*obj.bank.cond.values(), *obj.bank.non_cond.values()]:
            for t in (out.pred_masks, out.obj_ptr, out.object_score_logits, out.maskmem_features):
                if t is not None:
                    storage = t.untyped_storage()
                    storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def long_video_worker(args) -> dict:
    keep_all = args.long_worker == "keep-all"
    frames = make_frames(args.long_video, *LONG_HW)
    predictor = build_ours(
        args.variants[0], random_weights(args.variants[0], args.seed), torch.device("cpu"),
        image_size=args.long_image_size, keep_all_frame_outputs=keep_all,
    )
    samples_at = sorted({c for c in LONG_SAMPLES if c < args.long_video} | {args.long_video})
    digest = hashlib.sha256()
    samples = []
    with torch.inference_mode():
        state = predictor.init_state(frames)
        predictor.add_new_points_or_box(state, 0, 1, **prompts(*LONG_HW, 2)[1][1])
        gc.collect()
        trim_heap()
        peak_reset = reset_peak_rss()
        rss_before = proc_status_mib("VmRSS")
        start = time.perf_counter()
        for count, (_, _, logits) in enumerate(predictor.propagate_in_video(state), start=1):
            digest.update(logits.numpy().tobytes())
            if count in samples_at:
                samples.append({
                    "frames": count,
                    "seconds": time.perf_counter() - start,
                    "stored_non_cond": len(state.objects[1].bank.non_cond),
                    "bank_mib": bank_bytes(state) / 2**20,
                    "rss_mib": proc_status_mib("VmRSS"),
                    "peak_rss_mib": proc_status_mib("VmHWM"),
                })
        seconds = time.perf_counter() - start
    return {
        "mode": args.long_worker,
        "frames": args.long_video,
        "fps": args.long_video / seconds,
        "rss_before_propagate_mib": rss_before,
        "peak_reset_before_propagate": peak_reset,
        "bank_kib_per_output": samples[-1]["bank_mib"] * 1024 / (samples[-1]["stored_non_cond"] + 1),
        "samples": samples,
        "sha256_logits": digest.hexdigest(),
    }


def run_long_video(args) -> dict:
    runs = {}
    for mode in ("bounded", "keep-all"):
        command = [
            sys.executable, str(Path(__file__).resolve()), "--long-video", str(args.long_video),
            "--long-worker", mode, "--seed", str(args.seed), "--variants", args.variants[0],
            "--long-image-size", str(args.long_image_size),
        ]
        if args.threads is not None:
            command += ["--threads", str(args.threads)]
        print(f"  {mode}: {args.long_video} frames in a fresh subprocess ...", flush=True)
        busy0, child0, t0 = machine_busy_seconds(), children_cpu_seconds(), time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=str(REPO_ROOT))
        lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
        if done.returncode != 0 or not lines:
            sys.stdout.write(done.stdout)
            raise SystemExit(f"long-video worker {mode} failed (exit status {done.returncode})")
        runs[mode] = json.loads(lines[-1][len(RESULT_MARKER):])
        elapsed = time.perf_counter() - t0
        other = machine_busy_seconds() - busy0 - (children_cpu_seconds() - child0)
        runs[mode]["other_cpu_cores"] = max(other, 0.0) / elapsed
        print(
            f"  {mode}: {runs[mode]['fps']:.1f} frames/s; other processes used {runs[mode]['other_cpu_cores']:.2f} "
            "CPU cores on average" + (" (timings disturbed)" if runs[mode]["other_cpu_cores"] > BUSY_CORES else ""),
            flush=True,
        )

    bounded, full = runs["bounded"], runs["keep-all"]
    stored = [s["stored_non_cond"] for s in bounded["samples"]]
    banks = [s["bank_mib"] for s in bounded["samples"]]
    flat = len(set(stored)) == 1 and max(banks) - min(banks) < 1e-6  # unchanged from the first sample on
    same = bounded["sha256_logits"] == full["sha256_logits"]

    print()
    header = (
        f"{'frames':>7} | {'bounded: stored':>15} {'bank MiB':>9} {'RSS MiB':>8} {'peak MiB':>9} | "
        f"{'keep-all: stored':>16} {'bank MiB':>9} {'RSS MiB':>8} {'peak MiB':>9}"
    )
    print(header)
    print("-" * len(header))
    for b, k in zip(bounded["samples"], full["samples"]):
        print(
            f"{b['frames']:>7} | {b['stored_non_cond']:>15} {b['bank_mib']:>9.2f} {b['rss_mib']:>8.0f} "
            f"{b['peak_rss_mib']:>9.0f} | "
            f"{k['stored_non_cond']:>16} {k['bank_mib']:>9.2f} {k['rss_mib']:>8.0f} {k['peak_rss_mib']:>9.0f}"
        )
    print()
    print(
        f"RSS before propagate_in_video: bounded {bounded['rss_before_propagate_mib']:.0f} MiB, keep-all "
        f"{full['rss_before_propagate_mib']:.0f} MiB; frames/s: bounded {bounded['fps']:.1f}, "
        f"keep-all {full['fps']:.1f}"
    )
    print(
        f"bank per stored output (prompted frame 0 included): {bounded['bank_kib_per_output']:.1f} KiB at a "
        f"{args.long_image_size} input; peak RSS = VmHWM" + (", reset just before propagate_in_video"
        if bounded["peak_reset_before_propagate"] else " of the whole process (could not be reset)")
    )
    print(f"bounded bank flat after the first sample: {'yes' if flat else 'NO'}; "
          f"mask logits identical (sha256 over all frames): {'yes' if same else 'NO'}")
    return {"runs": runs, "bounded_flat": flat, "logits_identical": same}


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--variants", nargs="+", default=["sam2.1_hiera_tiny"], help="variant names (default sam2.1_hiera_tiny)"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default cpu)")
    parser.add_argument(
        "--compare", action="store_true", help="also run Meta's predictor (always on with --device cpu)"
    )
    parser.add_argument(
        "--long-video", type=int, metavar="N", default=None, help="memory over N frames (see --long-image-size)"
    )
    parser.add_argument(
        "--long-image-size", type=int, default=LONG_IMAGE_SIZE,
        help=f"model input of --long-video (default {LONG_IMAGE_SIZE})",
    )
    parser.add_argument("--long-worker", choices=["bounded", "keep-all"], help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=None, help="video length (default 16 on CPU, 200 on CUDA)")
    parser.add_argument("--objects", type=int, choices=[1, 2], default=None, help="1: click; 2: click + box")
    parser.add_argument("--repeats", type=int, default=3, help="timed sessions per predictor; median (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed 3-frame sessions per predictor (default 1)")
    parser.add_argument(
        "--fill-hole-area", type=int, default=0, help="ours' fill_hole_area (default 0, as Meta on CPU)"
    )
    parser.add_argument(
        "--batch-objects", choices=["auto", "on", "off"], default="auto",
        help="ours' batch_objects (default auto: the predictor's default, on for CUDA)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--tolerance", type=float, default=None, help="max accepted relative logit difference")
    parser.add_argument("--profile", metavar="PATH", default=None, help="cProfile one extra session of ours")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be at least 1 and --warmup at least 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but CUDA is not available")
    if args.long_video is not None:
        if args.long_video < 2:
            parser.error("--long-video needs at least 2 frames")
        if args.device != "cpu":
            parser.error("--long-video runs on the CPU")
    if args.device == "cpu":
        args.compare = True  # the CPU mode is the comparison with Meta
    if args.frames is None:
        args.frames = 16 if args.device == "cpu" else 200
    if args.frames < WARMUP_FRAMES:
        parser.error(f"--frames must be at least {WARMUP_FRAMES}")
    if args.objects is None:
        args.objects = 2 if args.device == "cpu" else 1
    if args.tolerance is None:
        args.tolerance = 1e-3 if args.device == "cpu" else 5e-2
    return args


def environment(args, device) -> dict:
    return {
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "seed": args.seed,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    if args.long_worker:
        print(RESULT_MARKER + json.dumps(long_video_worker(args)), flush=True)
        return 0

    env = environment(args, device)
    if args.long_video is not None:
        print(f"SAM 2 video predictor memory: {args.long_video} frames of {LONG_HW[1]}x{LONG_HW[0]}, "
              f"{args.variants[0]} at {args.long_image_size}, one object, bounded vs keep_all_frame_outputs=True")
        for key, value in env.items():
            print(f"  {key}: {value}")
        result = run_long_video(args)
        ok = result["bounded_flat"] and result["logits_identical"]
        output = {"environment": env, "long_video": result}
    else:
        hw = COMPARE_HW if device.type == "cpu" else CUDA_HW
        print("SAM 2 video predictor speed: ours (segmenter)" + (" vs Meta (sam2 1.1.0)" if args.compare else ""))
        env.update(frames=args.frames, video_hw=hw, objects=args.objects, repeats=args.repeats, warmup=args.warmup,
                   fill_hole_area_ours=args.fill_hole_area, batch_objects_ours=args.batch_objects,
                   bf16=device.type == "cuda")
        for key, value in env.items():
            print(f"  {key}: {value}")
        print(flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
            video = str(write_jpeg_folder(Path(tmp) / "frames", args.frames, *hw))
            results = []
            for variant in args.variants:
                results.append(bench_variant(variant, args, device, video, args.frames, hw, args.compare))
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        print_speed_table(results, args, args.compare)
        ok = True
        if args.compare:
            ok = all(r["agreement"]["logits_rel_diff"] <= args.tolerance and r["agreement"]["presence_differs"] == 0
                     for r in results)
            print(f"outputs agree (relative tolerance {args.tolerance:g}): " + ("OK" if ok else "MISMATCH"))
            slower = [r["variant"] for r in results if r["ratio_propagate_ours_over_meta_fps"] < 1]
            print(
                "speed: ours is not slower than Meta's"
                if not slower
                else f"speed: ours is SLOWER than Meta's on {slower}"
            )
        output = {"environment": env, "tolerance": args.tolerance, "outputs_agree": ok, "results": results}

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(output, f, indent=2)
        print(f"results written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
