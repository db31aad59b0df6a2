"""Benchmark end-to-end labeling: ``GroundedSAM2(...).label(...)`` against an ADG2-style loop.

The "ADG2-style loop" is what autodistill-grounded-sam-2 0.1.0 does when autodistill 0.1.29's
``DetectionBaseModel.label`` drives it, re-implemented here on the same weights:

- one image at a time: ``cv2.imread`` of the file, then ``autodistill.helpers.load_image(...,
  "PIL")`` (BGR array -> RGB PIL image);
- Florence-2 (transformers' native ``Florence2ForConditionalGeneration``) with the task
  ``<CAPTION_TO_PHRASE_GROUNDING>`` and the caption ``"A photo of " + ", and ".join(classes) + "."``,
  ``generate(..., max_new_tokens=1024, early_stopping=False, do_sample=False, num_beams=3)``,
  ``batch_decode`` and the processor's ``post_process_generation`` to read the boxes; phrases that
  are class names are kept, confidence 1.0;
- Meta's ``SAM2ImagePredictor`` (``sam2==1.1.0``): ``set_image``, then one
  ``predict(box=box, multimask_output=False)`` call per box;
- every ``sv.Detections`` (masks included) kept in memory until the end, then
  ``sv.DetectionDataset(classes, image_paths, detections).as_yolo(images, annotations,
  min_image_area_percentage=0.01, data_yaml_path=...)`` and autodistill's ``split_data``.

supervision 0.31.2's ``as_yolo`` joins each mask's holes to its outer contour
(``bridge_holes=True``) and raises "No foreground-contained seam found for a mask hole." on some
of the fragmented masks that random SAM 2 weights produce. The script times the real ``as_yolo``
call; when it raises, it says so, and exports again image by image the way ``as_yolo`` does
(``save_dataset_images``, ``detections_to_yolo_annotations`` per image, ``save_data_yaml``),
counting the images whose annotations raise and writing those images' rows from
``supervision.dataset.utils.approximate_mask_with_polygons(mask, bridge_holes=False)`` instead
(one row per polygon, holes as separate polygons). The ADG2 end-to-end figure then uses that
fallback export's time; the failed ``as_yolo`` attempt is reported apart and not counted (so the
ADG2 figure errs in its favour).

Ours: ``grounded_sam2.GroundedSAM2(ontology, florence=<dir>, sam2=<built SAM2Model>,
device=...)``, then ``.label(folder, output_folder=..., format="yolo", progress=False)``, with its
defaults (greedy decoding unless ``--ours-beams`` says otherwise, batches of 4 images, images
read and results exported by threads overlapped with the models).

Where autodistill is not installed (a bare GPU image), ours runs the same ``Pipeline`` through
``labeling.label_folder`` (what ``GroundedSAM2.label`` calls; ``GroundedSAM2`` itself needs
autodistill), and the ADG2 loop uses this script's copies of ``load_image``'s BGR-array branch and
of ``split_data``; the JSON output records which (``api``, ``autodistill_helpers``).

Identical weights and answers for both:
- Florence-2: ``bench_grounding.make_florence2_base`` (Florence-2-base architecture, random
  weights, seed ``--seed``, saved with ``save_pretrained``); ``--florence large`` then swaps in a
  random model of the Florence-2-large architecture (DaViT 256/512/1024/2048, BART d_model 1024,
  12+12 layers) with the same processor. The ``sequence_bias`` answer that bench_grounding puts in
  the generation config is removed; instead both pipelines get the same transformers
  ``LogitsProcessor`` (:class:`ForcedAnswer`), which forces, for every generated row,
  ``FORCED_ANSWER``: ``dog`` with 3 boxes and ``cat`` with 2 (5 boxes, 2 classes, 24 decoded tokens
  with <s> and </s>). Both pipelines ask one row per image (ours puts all prompts in one caption,
  ``"dog. cat"``; ADG2 ``"A photo of dog, and cat."``), so each image gets those 5 boxes in both.
  The boxes differ below a pixel: the processor truncates bin centres to whole pixels, ours keeps
  them as floats; the script reports the largest difference.
- SAM 2: ``segmenter.build_model(segmenter.resolve_config(<variant>))`` at its 1024 input with
  ``segmenter.random_state_dict(config, seed=0)``; the same state dict is loaded strictly into
  Meta's model (``tests/meta_reference.build_meta_model``).

Inputs: ``--images`` deterministic synthetic 480x640 JPEGs (``bench_common.synthetic_image``,
quality 90). Each pipeline runs in a fresh subprocess (``--worker``), so that its peak RSS
(``ru_maxrss``) is its own: it loads the models, labels one untimed warm-up image (not part of
the dataset), then times the whole labeling run. Reported per pipeline: images/s end to end,
seconds per stage, RSS after loading and peak RSS, detections and label rows per image, and the
average CPU cores used by this run and by all other processes (above 0.25 cores for the others,
the run is flagged). Stages: ADG2's are sequential and add up to its wall time. Ours are timed
by wrapping ``labeling.load_and_prepare`` (read: decoding and Florence-2's pixels, loader
threads), ``Pipeline.ground`` (grounding), ``predictor.set_image_batch`` (SAM encode),
``Segmenter.segment`` minus the encode (SAM decode: mask decoder, upscaling, detections) and
``DatasetWriter.commit`` + ``finalize`` (export, export threads); reading and export run in
threads overlapped with the models, so ours' stage sums can exceed its wall time. The two
datasets are compared: detections per image (must be equal, exit status 1 otherwise) and label
rows per image (ours writes one row per mask, its parts joined; supervision one row per polygon,
so it writes more rows for fragmented masks). On CUDA the
timers synchronize the device, and a thread samples GPU utilization (``torch.cuda.utilization``,
else ``nvidia-smi``) every 0.2 s: the mean is reported as the fraction of wall time the GPU was
busy.

Run from the repository root (no installation needed; Meta's ``sam2`` must be importable)::

    python benchmarks/bench_pipeline.py                       # CPU: 8 images, Florence-2-base, SAM 2.1 tiny
    python benchmarks/bench_pipeline.py --images 8 --ours-beams 1,3 --json pipeline_cpu.json
    python benchmarks/bench_pipeline.py --device cuda --bf16 --images 200 --florence large --sam2 large \\
        --ours-beams 1,3 --json pipeline_gpu.json          # GPU

Options::

    --images 8              synthetic 480x640 JPEGs
    --device cpu|cuda       default cpu
    --florence base|large   Florence-2 architecture (random weights), default base
    --sam2 tiny|large       sam2.1_hiera_tiny or sam2.1_hiera_large (random weights), default tiny
    --bf16                  CUDA only: bfloat16 Florence-2 weights for both, SAM 2 in bfloat16
                            autocast for both (ours: bf16=True; Meta: torch.autocast)
    --threads N             torch.set_num_threads(N) in both workers (ours: threads=N)
    --ours-beams 1          comma-separated num_beams for ours, one run each (1 = ours' default,
                            greedy; ADG2 always uses 3)
    --batch-size 4          images per batch in ours' label()
    --pipelines adg2,ours   which pipelines to run
    --seed 0                seed of the random Florence-2 weights (SAM 2 uses seed 0)
    --json PATH             also write the results as JSON

Exit status: 0 when every pipeline gave every image the same detections count, 1 otherwise.
"""

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

# each of these imports bench_common, which puts the repository root and tests/ on sys.path
from bench_grounding import make_florence2_base, make_torchvision_importable
from bench_labeling import current_rss_mib, peak_rss_mib

from bench_common import REPO_ROOT, machine_busy_seconds, own_cpu_seconds, synthetic_image

RESULT_MARKER = "BENCH_PIPELINE_RESULT "
IMAGE_HW = (480, 640)
ONTOLOGY = {"dog": "dog", "cat": "cat"}
CLASSES = list(ONTOLOGY.values())
TASK = "<CAPTION_TO_PHRASE_GROUNDING>"
ADG2_NUM_BEAMS = 3
ADG2_MAX_NEW_TOKENS = 1024
# location bins (x0, y0, x1, y1 in 1/1000 of the width/height); same-class boxes do not overlap,
# so ours' default per-class NMS (IoU 0.7) keeps all five
FORCED_BOXES = {
    "dog": [(60, 80, 330, 470), (380, 120, 620, 520), (700, 60, 960, 400)],
    "cat": [(100, 560, 450, 940), (540, 600, 900, 960)],
}
FORCED_ANSWER = "".join(
    phrase + "".join(f"<loc_{b}>" for box in boxes for b in box) for phrase, boxes in FORCED_BOXES.items()
)
BOXES_PER_IMAGE = sum(len(boxes) for boxes in FORCED_BOXES.values())
SAM2_VARIANTS = {"tiny": "sam2.1_hiera_tiny", "large": "sam2.1_hiera_large"}
# Florence-2-large (florence-community/Florence-2-large): what differs from the base architecture
FLORENCE_LARGE = {
    "vision_config": dict(embed_dim=[256, 512, 1024, 2048], num_heads=[8, 16, 32, 64],
                          num_groups=[8, 16, 32, 64], projection_dim=1024),
    "text_config": dict(d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                        decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096),
}
STAGES = ("read", "grounding", "sam_encode", "sam_decode", "export")
BUSY_CORES = 0.25  # other processes using more CPU than this during a run: timings flagged
WARMUP_SEED = 10_000  # the warm-up image (not in the dataset)


# --------------------------------------------------------------------------------------------
# Shared pieces: the forced answer, the models, the images
# --------------------------------------------------------------------------------------------


def forced_answer_processor(tokenizer):
    """A transformers LogitsProcessorList that forces :data:`FORCED_ANSWER` on every row."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    class ForcedAnswer(LogitsProcessor):
        """Every row (and every beam) gets ``<s>`` + the answer + ``</s>``, then ``</s>``: the
        score of the forced token is 0, every other one -inf. The answers start after the decoder
        start token, so step k of the answer is input length k + 1."""

        def __init__(self) -> None:
            self.tokens = (
                [tokenizer.bos_token_id]
                + tokenizer(FORCED_ANSWER, add_special_tokens=False)["input_ids"]
                + [tokenizer.eos_token_id]
            )
            self.eos = tokenizer.eos_token_id
            self.steps = 0  # decoding steps run (calls), over all generate calls

        def __call__(self, input_ids, scores):
            self.steps += 1
            step = input_ids.shape[1] - 1
            forced = torch.full_like(scores, float("-inf"))
            forced[:, self.tokens[step] if step < len(self.tokens) else self.eos] = 0.0
            return forced

    processor = ForcedAnswer()
    return LogitsProcessorList([processor]), processor


def make_florence2(directory: Path, size: str, seed: int) -> dict:
    """Florence-2 ``size`` (base or large architecture) with random weights and its processor in
    ``directory``, built by ``bench_grounding.make_florence2_base`` (the large model then replaces
    the base one); the generation config's forced ``sequence_bias`` answer is removed, since both
    pipelines get :func:`forced_answer_processor` instead."""
    import torch
    from transformers import Florence2Config, Florence2ForConditionalGeneration, GenerationConfig

    built = make_florence2_base(directory, seed)
    generation = GenerationConfig.from_pretrained(directory)
    if size == "large":
        settings = Florence2Config.from_pretrained(directory).to_dict()
        for part, changes in FLORENCE_LARGE.items():
            settings[part].update(changes)
        torch.manual_seed(seed)
        model = Florence2ForConditionalGeneration(Florence2Config.from_dict(settings)).eval()
        for old in directory.glob("model*.safetensors*"):
            old.unlink()
        model.generation_config = generation
        model.save_pretrained(directory)
        built["model"] = (
            "Florence-2-large architecture: DaViT embed_dim [256, 512, 1024, 2048], depths [1, 1, 9, 1], "
            "heads/groups [8, 16, 32, 64], window 12, projection 1024; BART d_model 1024, 12+12 layers, "
            "16 heads, ffn 4096, 1024 positions, vocab 51289"
        )
        del model
    generation.sequence_bias = None
    generation.save_pretrained(directory)
    built.pop("forced_answer", None)
    built.pop("forced_answer_tokens", None)
    return built


def build_sam2_state(variant: str):
    """Our SAM2Model for ``variant`` at its 1024 input, random weights (seed 0), and the state dict."""
    import segmenter

    config = segmenter.resolve_config(variant)
    state_dict = segmenter.random_state_dict(config, seed=0)
    model = segmenter.build_model(config).eval()
    model.load_state_dict(state_dict)
    return model, state_dict


def has_autodistill() -> bool:
    import importlib.util

    return importlib.util.find_spec("autodistill") is not None


def load_image_bgr_to_pil(image):
    """``autodistill.helpers.load_image(array, return_format="PIL")`` for a BGR array (its code),
    where autodistill is not installed."""
    import cv2
    from PIL import Image

    return Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def split_data_like_autodistill(base_dir: str, split_ratio: float = 0.8) -> None:
    """``autodistill.helpers.split_data`` for a dataset of .jpg images (its steps), where
    autodistill is not installed: shuffle, 80% to train, the rest to valid, data.yaml rewritten."""
    import yaml

    base = Path(base_dir)
    stems = [os.path.splitext(f)[0] for f in os.listdir(base / "images") if f.endswith(".jpg")]
    random.shuffle(stems)
    cut = int(len(stems) * split_ratio)
    for split, part in (("train", stems[:cut]), ("valid", stems[cut:])):
        for sub in ("images", "labels"):
            (base / split / sub).mkdir(parents=True, exist_ok=True)
        for stem in part:
            shutil.move(str(base / "images" / f"{stem}.jpg"), str(base / split / "images"))
            if (base / "annotations" / f"{stem}.txt").exists():
                shutil.move(str(base / "annotations" / f"{stem}.txt"), str(base / split / "labels"))
    names = yaml.safe_load((base / "data.yaml").read_text())["names"]
    train, val = str(base.resolve() / "train" / "images"), str(base.resolve() / "valid" / "images")
    (base / "data.yaml").write_text(yaml.dump({"train": train, "val": val, "nc": len(names), "names": names}))


def write_images(folder: Path, count: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(synthetic_image(*IMAGE_HW, seed=i)).save(folder / f"img_{i:05d}.jpg", quality=90)


class StageTimes:
    """Wall seconds per stage, summed over calls and threads."""

    def __init__(self, sync) -> None:
        self.seconds = Counter()
        self.calls = Counter()
        self.sync = sync
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] += seconds
            self.calls[stage] += 1

    def wrap(self, function, stage: str, sync: bool = False):
        def timed(*args, **kwargs):
            begin = time.perf_counter()
            out = function(*args, **kwargs)
            if sync:
                self.sync()
            self.add(stage, time.perf_counter() - begin)
            return out

        return timed


class GPUSampler(threading.Thread):
    """GPU utilization (0-100) every ``interval`` s: torch.cuda.utilization (pynvml), else nvidia-smi."""

    def __init__(self, device, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.device, self.interval = device, interval
        self.samples, self.source = [], None
        self._halt = threading.Event()

    def _sample(self):
        import torch

        if self.source in (None, "torch"):
            try:
                value = float(torch.cuda.utilization(self.device))
                self.source = "torch.cuda.utilization"
                return value
            except Exception:
                self.source = "nvidia-smi"
        index = self.device.index if self.device.index is not None else 0
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", str(index)],
            capture_output=True, text=True, timeout=5,
        )
        return float(out.stdout.strip().splitlines()[0])

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append(self._sample())
            except Exception:
                self.source = "unavailable"
                return
            self._halt.wait(self.interval)

    def stop(self) -> dict:
        self._halt.set()
        self.join()
        mean = sum(self.samples) / len(self.samples) if self.samples else None
        return {"gpu_busy_fraction": None if mean is None else mean / 100.0, "gpu_samples": len(self.samples),
                "gpu_sampler": self.source}


def label_rows(folder: Path) -> dict:
    """Label rows per image stem in a YOLO dataset (every ``labels/*.txt`` under ``folder``)."""
    return {
        label.stem: sum(1 for line in label.read_text().splitlines() if line.strip())
        for label in sorted(folder.glob("*/labels/*.txt"))
    }


# --------------------------------------------------------------------------------------------
# Workers: one pipeline in this process
# --------------------------------------------------------------------------------------------


def worker_setup(args):
    make_torchvision_importable()
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    return torch, device, cuda, sync


def run_adg2(args) -> dict:
    """The ADG2-style loop (see the module docstring) on ``<work>/images``."""
    torch, device, cuda, sync = worker_setup(args)
    import contextlib

    import cv2
    import numpy as np
    import supervision as sv
    if has_autodistill():
        from autodistill.helpers import load_image
    else:  # its code for a BGR array
        def load_image(image, return_format):
            return load_image_bgr_to_pil(image)
    from transformers import Florence2ForConditionalGeneration, Florence2Processor

    from meta_reference import build_meta_model, import_meta_sam2

    work = Path(args.work)
    dtype = torch.bfloat16 if (cuda and args.bf16) else torch.float32
    processor = Florence2Processor.from_pretrained(work / "florence2")
    florence = Florence2ForConditionalGeneration.from_pretrained(work / "florence2", dtype=dtype).to(device).eval()
    logits_processor, forced = forced_answer_processor(processor.tokenizer)
    variant = SAM2_VARIANTS[args.sam2]
    _, state_dict = build_sam2_state(variant)
    sam2 = import_meta_sam2()
    predictor = sam2.sam2_image_predictor.SAM2ImagePredictor(build_meta_model(variant, state_dict).to(device))
    del state_dict
    if cuda and args.bf16:
        def autocast():
            return torch.autocast("cuda", dtype=torch.bfloat16)
    else:
        autocast = contextlib.nullcontext
    caption = "A photo of " + ", and ".join(CLASSES) + "."
    times = StageTimes(sync)

    def predict(bgr: np.ndarray) -> sv.Detections:
        """autodistill-grounded-sam-2's predict: Florence-2 boxes, then SAM 2 box by box."""
        start = time.perf_counter()
        image = load_image(bgr, return_format="PIL")
        times.add("read", time.perf_counter() - start)

        start = time.perf_counter()
        inputs = processor(text=TASK + caption, images=image, return_tensors="pt").to(device)
        generated = florence.generate(
            input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"].to(dtype),
            max_new_tokens=ADG2_MAX_NEW_TOKENS,
            early_stopping=False, do_sample=False, num_beams=ADG2_NUM_BEAMS, logits_processor=logits_processor,
        )
        text = processor.batch_decode(generated, skip_special_tokens=False)[0]
        parsed = processor.post_process_generation(text, task=TASK, image_size=(image.width, image.height))[TASK]
        kept = [(box, label) for box, label in zip(parsed["bboxes"], parsed["labels"]) if label and label in CLASSES]
        if kept:
            detections = sv.Detections(
                xyxy=np.array([box for box, _ in kept], dtype=np.float32),
                class_id=np.array([CLASSES.index(label) for _, label in kept]),
                confidence=np.ones(len(kept)),
            )
        else:
            detections = sv.Detections.empty()
        times.add("grounding", time.perf_counter() - start)

        start = time.perf_counter()
        rgb = np.array(image.convert("RGB"))
        times.add("read", time.perf_counter() - start)
        with torch.inference_mode(), autocast():
            start = time.perf_counter()
            predictor.set_image(rgb)
            sync()
            times.add("sam_encode", time.perf_counter() - start)
            start = time.perf_counter()
            masks = []
            for box in detections.xyxy:
                out, scores, _ = predictor.predict(box=box, multimask_output=False)
                masks.append(out[np.argmax(scores)])
            detections.mask = np.array(masks, dtype=bool).reshape(len(masks), *rgb.shape[:2])
            times.add("sam_decode", time.perf_counter() - start)
        return detections

    warm = cv2.cvtColor(synthetic_image(*IMAGE_HW, seed=WARMUP_SEED), cv2.COLOR_RGB2BGR)
    predict(warm)  # untimed warm-up
    times, steps_before = StageTimes(sync), forced.steps
    loaded_rss, peak_before = current_rss_mib(), peak_rss_mib()
    sampler = GPUSampler(device) if cuda else None
    if sampler:
        sampler.start()

    output = work / "adg2_dataset"
    image_paths = sorted(str(p) for p in (work / "images").glob("*.jpg"))
    busy_before, own_before = machine_busy_seconds(), own_cpu_seconds()
    start = time.perf_counter()
    detections_map = {}
    for path in image_paths:  # autodistill's DetectionBaseModel.label
        begin = time.perf_counter()
        bgr = cv2.imread(path)
        times.add("read", time.perf_counter() - begin)
        detections_map[path] = predict(bgr)
    models_end = time.perf_counter()

    dataset = sv.DetectionDataset(CLASSES, image_paths, detections_map)
    export = adg2_export(dataset, output)
    sync()
    end = time.perf_counter()
    times.add("export", export.pop("export_s"))
    own_cpu = own_cpu_seconds() - own_before
    other_cpu = machine_busy_seconds() - busy_before - own_cpu
    seconds = end - start - (export["as_yolo_attempt_s"] or 0.0)  # the failed attempt is not counted
    gpu = sampler.stop() if sampler else {}
    stems = [Path(p).stem for p in image_paths]
    return {
        "pipeline": "adg2",
        "seconds": seconds,
        "seconds_with_failed_attempt": end - start,
        "models_s": models_end - start,
        "images_per_s": len(image_paths) / seconds,
        "stages": {s: times.seconds[s] for s in STAGES},
        "stage_calls": dict(times.calls),
        "objects": {Path(p).stem: len(d) for p, d in detections_map.items()},
        "rows": {stem: label_rows(output).get(stem, 0) for stem in stems},
        "boxes": {Path(p).stem: d.xyxy.tolist() for p, d in detections_map.items()},
        "rss_loaded_mib": loaded_rss,
        "peak_rss_before_run_mib": peak_before,
        "peak_rss_mib": peak_rss_mib(),
        "own_cpu_cores": own_cpu / (end - start),
        "other_cpu_cores": max(other_cpu, 0.0) / (end - start),
        "answer_tokens": len(forced.tokens),
        "decoding_steps": forced.steps - steps_before,
        "num_beams": ADG2_NUM_BEAMS,
        "florence_dtype": str(florence.dtype).replace("torch.", ""),
        "autodistill_helpers": "autodistill.helpers" if has_autodistill() else "this script's copies",
        "torch_threads": torch.get_num_threads(),
        **export,
        **gpu,
    }


def adg2_export(dataset, output: Path) -> dict:
    """autodistill's export: ``dataset.as_yolo(...)``, then ``split_data``. When ``as_yolo``
    raises ValueError (a mask hole with no seam), the partial output is removed and the dataset
    exported again image by image as ``as_yolo`` does, the images whose annotations raise getting
    rows from ``approximate_mask_with_polygons(mask, bridge_holes=False)``. ``export_s`` counts
    the successful ``as_yolo`` (or the re-export) and ``split_data``, not a failed attempt."""
    if has_autodistill():
        from autodistill.helpers import split_data
    else:  # its steps
        split_data = split_data_like_autodistill
    from supervision.dataset.formats import yolo
    from supervision.dataset.utils import approximate_mask_with_polygons, save_dataset_images
    from supervision.detection.utils.converters import polygon_to_xyxy
    from supervision.utils.file import save_text_file

    export = {"as_yolo": "ok", "as_yolo_error": None, "as_yolo_attempt_s": None, "images_failing_as_yolo": None}
    begin = time.perf_counter()
    try:
        dataset.as_yolo(str(output / "images"), str(output / "annotations"), min_image_area_percentage=0.01,
                        data_yaml_path=str(output / "data.yaml"))
    except ValueError as error:
        attempt_s = time.perf_counter() - begin
        export.update(as_yolo="raised", as_yolo_error=str(error), as_yolo_attempt_s=attempt_s)
        print(f"[adg2] as_yolo raised after {attempt_s:.2f} s: {error}; exporting image by image", flush=True)
        shutil.rmtree(output, ignore_errors=True)
        begin = time.perf_counter()  # the export time counted is the re-export's
        failing = 0
        save_dataset_images(dataset, str(output / "images"))
        (output / "annotations").mkdir(parents=True, exist_ok=True)
        for image_path, image, annotation in dataset:  # supervision's save_yolo_annotations, per image
            try:
                lines = yolo.detections_to_yolo_annotations(
                    annotation, image.shape, min_image_area_percentage=0.01, approximation_percentage=0.0
                )
            except ValueError:
                failing += 1
                lines = []
                for xyxy, mask, _, class_id, _, _ in annotation:
                    polygons = approximate_mask_with_polygons(mask, min_image_area_percentage=0.01, bridge_holes=False)
                    if not polygons:
                        lines.append(yolo.object_to_yolo(xyxy, int(class_id), image.shape))
                    lines += [yolo.object_to_yolo(polygon_to_xyxy(p), int(class_id), image.shape, polygon=p)
                              for p in polygons]
            save_text_file(lines, output / "annotations" / f"{Path(image_path).stem}.txt")
        yolo.save_data_yaml(str(output / "data.yaml"), dataset.classes)
        export["images_failing_as_yolo"] = failing
    random.seed(0)
    split_data(str(output))
    export["export_s"] = time.perf_counter() - begin
    return export


def run_ours(args) -> dict:
    """``GroundedSAM2(...).label(...)`` on ``<work>/images``, its stages timed by wrappers."""
    torch, device, cuda, sync = worker_setup(args)
    from grounded_sam2 import labeling
    from grounded_sam2.datasets.writer import DatasetWriter

    work = Path(args.work)
    variant = SAM2_VARIANTS[args.sam2]
    sam2, state_dict = build_sam2_state(variant)
    del state_dict
    options = dict(florence=str(work / "florence2"), sam2=sam2, device=args.device, bf16=args.bf16,
                   num_beams=args.worker_beams)
    if args.threads is not None:
        options["threads"] = args.threads
    if has_autodistill():
        from grounded_sam2 import GroundedSAM2

        model = GroundedSAM2(ONTOLOGY, **options)
        pipeline, api = model.pipeline, "GroundedSAM2.label"

        def label(folder, output):
            return model.label(folder, output_folder=output, format="yolo", batch_size=args.batch_size,
                               progress=False)
    else:  # what GroundedSAM2 wraps (it needs autodistill): the same pipeline and label_folder
        from grounded_sam2 import Pipeline, PipelineConfig
        from grounded_sam2.datasets.writer import DatasetConfig

        pipeline, api = Pipeline(PipelineConfig.from_options(ONTOLOGY, **options)), "labeling.label_folder"

        def label(folder, output):
            return labeling.label_folder(pipeline, folder, output, DatasetConfig(format="yolo"),
                                         batch_size=args.batch_size, progress=False)

    grounder = pipeline.grounder
    grounder.logits_processor, forced = forced_answer_processor(grounder.processor.tokenizer)
    pipeline.predict_batch([synthetic_image(*IMAGE_HW, seed=WARMUP_SEED)])  # untimed warm-up
    sync()

    times, steps_before = StageTimes(sync), forced.steps
    segmenter = pipeline.segmenter
    boxes = {}
    ground = pipeline.ground

    def ground_and_keep(images, prepared=None):
        out = ground(images, prepared)
        boxes.setdefault("calls", []).append([[list(map(float, b.xyxy)) for b in found] for found in out])
        return out

    pipeline.ground = times.wrap(ground_and_keep, "grounding")
    segment_calls = StageTimes(sync)
    segment = segmenter.segment
    detection_counts = []

    def segment_and_count(images, requests):
        out = segment(images, requests)
        detection_counts.extend(len(d) for d in out)
        return out

    segmenter.segment = segment_calls.wrap(segment_and_count, "segment")
    segmenter.predictor.set_image_batch = times.wrap(segmenter.predictor.set_image_batch, "sam_encode", sync=cuda)
    wrapped = []
    if hasattr(labeling, "load_and_prepare"):
        wrapped.append((labeling, "load_and_prepare", labeling.load_and_prepare))
        labeling.load_and_prepare = times.wrap(labeling.load_and_prepare, "read")
    for name in ("commit", "finalize"):
        wrapped.append((DatasetWriter, name, getattr(DatasetWriter, name)))
        setattr(DatasetWriter, name, times.wrap(getattr(DatasetWriter, name), "export"))

    loaded_rss, peak_before = current_rss_mib(), peak_rss_mib()
    sampler = GPUSampler(device) if cuda else None
    if sampler:
        sampler.start()
    output = work / f"ours_beams{args.worker_beams}_dataset"
    busy_before, own_before = machine_busy_seconds(), own_cpu_seconds()
    start = time.perf_counter()
    summary = label(work / "images", output)
    sync()
    seconds = time.perf_counter() - start
    own_cpu = own_cpu_seconds() - own_before
    other_cpu = machine_busy_seconds() - busy_before - own_cpu
    gpu = sampler.stop() if sampler else {}
    for owner, name, original in wrapped:
        setattr(owner, name, original)
    stages = {s: times.seconds[s] for s in STAGES}
    stages["sam_decode"] = segment_calls.seconds["segment"] - times.seconds["sam_encode"]
    stems = sorted(p.stem for p in (work / "images").glob("*.jpg"))
    rows = label_rows(output)
    flat_boxes = [per_image for call in boxes.get("calls", []) for per_image in call]
    return {
        "pipeline": f"ours (num_beams={args.worker_beams})",
        "seconds": seconds,
        "images_per_s": len(stems) / seconds,
        "stages": stages,
        "stage_calls": {**dict(times.calls), "segment": segment_calls.calls["segment"]},
        "read_timed": hasattr(labeling, "load_and_prepare"),
        "models_main_thread_s": times.seconds["grounding"] + segment_calls.seconds["segment"],
        "objects": dict(zip(stems, detection_counts)),  # label() predicts in sorted file order
        "rows": {stem: rows.get(stem, 0) for stem in stems},
        "boxes": dict(zip(stems, flat_boxes)),
        "labeled": summary.labeled,
        "skipped": len(summary.skipped),
        "objects_per_class": summary.objects_per_class,
        "rss_loaded_mib": loaded_rss,
        "peak_rss_before_run_mib": peak_before,
        "peak_rss_mib": peak_rss_mib(),
        "own_cpu_cores": own_cpu / seconds,
        "other_cpu_cores": max(other_cpu, 0.0) / seconds,
        "answer_tokens": len(forced.tokens),
        "decoding_steps": forced.steps - steps_before,
        "num_beams": args.worker_beams,
        "batch_size": args.batch_size,
        "florence_dtype": str(grounder.model.dtype).replace("torch.", ""),
        "api": api,
        "torch_threads": torch.get_num_threads(),
        **gpu,
    }


# --------------------------------------------------------------------------------------------
# Parent: images, Florence-2, one subprocess per pipeline, table
# --------------------------------------------------------------------------------------------


def run_worker_process(kind: str, beams: int, work: Path, args) -> dict:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--work", str(work),
        "--device", args.device, "--sam2", args.sam2, "--batch-size", str(args.batch_size),
        "--worker-beams", str(beams),
    ]
    if args.bf16:
        command.append("--bf16")
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    label = "adg2" if kind == "adg2" else f"ours (num_beams={beams})"
    print(f"[{label}] running in a fresh subprocess ...", flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=str(REPO_ROOT))  # stderr passes through
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    sys.stdout.write("".join(f"  {line}\n" for line in done.stdout.splitlines() if not line.startswith(RESULT_MARKER)))
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the {label} worker failed (exit status {done.returncode})")
    result = json.loads(lines[-1][len(RESULT_MARKER):])
    result["process_s"] = time.perf_counter() - start
    s = result["stages"]
    print(
        f"[{label}] {result['seconds']:.1f} s, {result['images_per_s']:.3f} images/s; read {s['read']:.1f} s, "
        f"grounding {s['grounding']:.1f} s, SAM encode {s['sam_encode']:.1f} s, SAM decode {s['sam_decode']:.1f} s, "
        f"export {s['export']:.1f} s; peak RSS {result['peak_rss_mib']:.0f} MiB; CPU cores: this run "
        f"{result['own_cpu_cores']:.2f}, other processes {result['other_cpu_cores']:.2f}",
        flush=True,
    )
    return result


def spread(values) -> str:
    values = list(values)
    return str(values[0]) if len(set(values)) == 1 else f"{min(values)}-{max(values)}"


def print_table(results, count: int) -> None:
    header = (
        f"{'pipeline':<20} {'images/s':>9} {'wall s':>7} {'read s':>7} {'ground s':>9} {'encode s':>9} "
        f"{'decode s':>9} {'export s':>9} {'loaded MiB':>11} {'peak RSS MiB':>13} {'dets/img':>9} {'rows/img':>9} "
        f"{'other CPU':>9}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        s = r["stages"]
        print(
            f"{r['pipeline']:<20} {r['images_per_s']:>9.3f} {r['seconds']:>7.1f} {s['read']:>7.2f} "
            f"{s['grounding']:>9.2f} {s['sam_encode']:>9.2f} {s['sam_decode']:>9.2f} {s['export']:>9.2f} "
            f"{r['rss_loaded_mib']:>11.0f} {r['peak_rss_mib']:>13.0f} {spread(r['objects'].values()):>9} "
            f"{spread(r['rows'].values()):>9} {r['other_cpu_cores']:>9.2f}"
        )
    print()
    print(f"{count} synthetic {IMAGE_HW[0]}x{IMAGE_HW[1]} JPEGs, {BOXES_PER_IMAGE} forced boxes per image, one")
    print("fresh process per pipeline, after one untimed warm-up image. Stage seconds are summed wall time;")
    print("ours reads and exports in threads overlapped with the models, so its stages can add up to more")
    print("than its wall time. dets/img: detections (masks) per image; rows/img: YOLO label rows (ours: one")
    print("per mask; supervision: one per polygon). loaded: RSS after the models are loaded and warmed up;")
    print("peak RSS: ru_maxrss of the worker. other CPU: average cores used by all other processes.")
    for r in results:
        if r["pipeline"] != "adg2":
            print(f"{r['pipeline']}: grounding + segment (the models, main thread) {r['models_main_thread_s']:.1f} s "
                  f"of {r['seconds']:.1f} s wall")
    for r in results:
        if r.get("gpu_busy_fraction") is not None:
            print(f"{r['pipeline']}: GPU busy {r['gpu_busy_fraction']:.0%} of wall time ({r['gpu_sampler']})")
        if r["pipeline"] == "adg2" and r.get("as_yolo") == "raised":
            print(f"adg2: supervision's as_yolo RAISED after {r['as_yolo_attempt_s']:.2f} s "
                  f"({r['as_yolo_error']!r}); {r['images_failing_as_yolo']} of {count} images fail it. The export")
            print("      figure is a per-image re-export with bridge_holes=False for those images; the failed")
            print("      attempt is not counted in adg2's wall time.")
    busy = [r["pipeline"] for r in results if r["other_cpu_cores"] > BUSY_CORES]
    if busy:
        print(f"warning: other processes used more than {BUSY_CORES} CPU core on average while {busy} ran:")
        print("         they shared the CPU and the timings are pessimistic; rerun on a quiet machine")


def compare(results) -> dict:
    """Detections and rows per image, and the grounding boxes, of every pipeline against the first."""
    reference = results[0]
    checks = {}
    for r in results[1:]:
        stems = sorted(set(reference["objects"]) | set(r["objects"]))
        differing = [s for s in stems if reference["objects"].get(s) != r["objects"].get(s)]
        box_diff = 0.0
        for stem in stems:
            a, b = reference["boxes"].get(stem), r["boxes"].get(stem)
            if a is None or b is None or len(a) != len(b):
                box_diff = float("inf")
                continue
            box_diff = max([box_diff] + [abs(x - y) for p, q in zip(a, b) for x, y in zip(p, q)])
        checks[r["pipeline"]] = {
            "images_with_different_detections": differing,
            "max_box_difference_px": box_diff,
            "rows_reference": sum(reference["rows"].values()),
            "rows": sum(r["rows"].values()),
        }
    return checks


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8, help="synthetic images (default 8)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--florence", choices=["base", "large"], default="base", help="Florence-2 architecture")
    parser.add_argument("--sam2", choices=sorted(SAM2_VARIANTS), default="tiny", help="SAM 2.1 variant")
    parser.add_argument("--bf16", action="store_true", help="CUDA only: bfloat16 for both pipelines")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--ours-beams", default="1", help="comma-separated num_beams for ours (default 1)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per batch in ours' label() (default 4)")
    parser.add_argument("--pipelines", default="adg2,ours", help="adg2, ours or both (default adg2,ours)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random Florence-2 weights (default 0)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON to PATH")
    # internal: one pipeline in this process
    parser.add_argument("--worker", choices=["adg2", "ours"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-beams", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.ours_beams = [int(b) for b in args.ours_beams.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--ours-beams must be comma-separated integers, got {args.ours_beams!r}")
    args.pipelines = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    if not args.pipelines or set(args.pipelines) - {"adg2", "ours"}:
        parser.error("--pipelines: adg2, ours or adg2,ours")
    if args.images < 1 or args.batch_size < 1 or not args.ours_beams or min(args.ours_beams) < 1:
        parser.error("--images, --batch-size and --ours-beams must be at least 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.bf16 and not args.device.startswith("cuda"):
        parser.error("--bf16 needs --device cuda")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        result = run_adg2(args) if args.worker == "adg2" else run_ours(args)
        print(RESULT_MARKER + json.dumps(result), flush=True)
        return 0

    make_torchvision_importable()
    import torch
    import transformers

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        work = Path(tmp)
        write_images(work / "images", args.images)
        print("building the random Florence-2 ...", flush=True)
        start = time.perf_counter()
        florence = make_florence2(work / "florence2", args.florence, args.seed)
        build_s = time.perf_counter() - start
        import supervision

        env = {
            "benchmark": "end-to-end labeling: GroundedSAM2.label vs an ADG2-style loop (same weights, same answers)",
            "images": f"{args.images} synthetic {IMAGE_HW[0]}x{IMAGE_HW[1]} JPEG",
            "florence2": florence["model"] + " (random weights)",
            "florence2_input": florence["input"],
            "forced_answer": FORCED_ANSWER + f" ({BOXES_PER_IMAGE} boxes, every row)",
            "sam2": f"{SAM2_VARIANTS[args.sam2]} at 1024, random weights (seed 0)",
            "ontology": ONTOLOGY,
            "adg2": f"num_beams={ADG2_NUM_BEAMS}, max_new_tokens={ADG2_MAX_NEW_TOKENS}, one predict() per box, "
            "sv.DetectionDataset.as_yolo + split_data",
            "ours": f"num_beams {args.ours_beams}, batch_size {args.batch_size}, format yolo",
            "device": str(device) + (" (bf16)" if args.bf16 else " (float32)"),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "supervision": supervision.__version__,
            "torch_threads": args.threads if args.threads is not None else torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "florence_build_s": round(build_s, 1),
        }
        print("Pipeline benchmark: end-to-end labeling, ours vs an ADG2-style loop")
        for key, value in env.items():
            if value is not None:
                print(f"  {key}: {value}")
        print(flush=True)

        results = []
        if "adg2" in args.pipelines:
            results.append(run_worker_process("adg2", ADG2_NUM_BEAMS, work, args))
        if "ours" in args.pipelines:
            results += [run_worker_process("ours", beams, work, args) for beams in args.ours_beams]

    print_table(results, args.images)
    checks = compare(results)
    consistent = all(not c["images_with_different_detections"] for c in checks.values())
    expected = all(set(r["objects"].values()) == {BOXES_PER_IMAGE} for r in results)
    adg2 = next((r for r in results if r["pipeline"] == "adg2"), None)
    for name, c in checks.items():
        differing = c["images_with_different_detections"]
        print(f"{name} vs {results[0]['pipeline']}: detections per image "
              f"{'DIFFER on ' + str(differing) if differing else 'equal'}; "
              f"grounding boxes differ by at most {c['max_box_difference_px']:.2f} px; label rows "
              f"{c['rows']} vs {c['rows_reference']}")
        if adg2 is not None:
            ours = next(r for r in results if r["pipeline"] == name)
            print(f"speed-up {name} / adg2: {ours['images_per_s'] / adg2['images_per_s']:.2f}x")
    if not expected:
        print(f"warning: not every image got the {BOXES_PER_IMAGE} forced detections")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"environment": env, "checks": checks, "results": results}, f, indent=2)
        print(f"results written to {args.json}")
    return 0 if consistent and expected else 1


if __name__ == "__main__":
    sys.exit(main())
