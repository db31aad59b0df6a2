"""The ``grounded-sam2`` command.

Exit codes: 0 done; 1 done, but some inputs were skipped (listed in OUT/skipped.txt);
2 bad usage, ontology, model or output folder, or out of memory; 130 interrupted (run the same
command again to resume). Any other error is a bug and shows its traceback.

Options the user leaves out are left out of the call, so the library's defaults apply (they are
written once, in the config dataclasses, and shown in ``--help`` from there).
"""

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

EXIT_OK, EXIT_SKIPPED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

LABEL_EPILOG = """\
examples:
  grounded-sam2 label photos/ -o dataset --ontology '{"dog": "dog", "red car": "car"}'
  grounded-sam2 label photos/ -o dataset --ontology coco80 --format coco --device cuda
  grounded-sam2 make-tiny-models tiny/ && \\
    grounded-sam2 label photos/ -o smoke --ontology example --florence tiny/florence2 --sam2 tiny/sam2.pt

Run the same command again to resume an interrupted run: finished images are skipped.
Exit codes: 0 done, 1 some inputs skipped, 2 error (nothing labeled), 130 interrupted.
"""

# option destinations, by what they configure
PIPELINE_OPTIONS = ("grounder", "florence", "strategy", "num_beams", "box_threshold", "text_threshold",
                    "min_confidence", "nms_threshold", "class_agnostic_nms", "min_box_area", "sam2", "tighten_boxes",
                    "device", "threads", "compile")
DATASET_OPTIONS = ("format", "split", "seed", "coco_mask_format")
TRACKING_OPTIONS = ("every", "match_iou", "max_missed_keyframes")
GENERATOR_OPTIONS = ("points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
                     "box_nms_thresh", "crop_n_layers", "min_mask_region_area", "use_m2m")


def _split(text: str):
    parts = [float(p) for p in text.split(",")]
    if len(parts) == 2:
        parts.append(0.0)
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("give train,valid or train,valid,test fractions, e.g. 0.8,0.2")
    return tuple(parts)


def given(args: argparse.Namespace, names) -> Dict[str, Any]:
    """The options among ``names`` that the user gave (argparse leaves the others None)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _flag(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    parser.add_argument(name, action="store_true", default=None, help=help)


def _add_output_options(parser: argparse.ArgumentParser, formats: List[str], default_format: str) -> None:
    from .datasets.writer import DatasetConfig

    parser.add_argument("--format", choices=formats, help="yolo: segmentation polygons; yolo-det: boxes; coco: "
                                                          "instance masks; label-studio: tasks.json and "
                                                          "label_config.xml to review in Label Studio "
                                                          f"(default: {default_format})")
    parser.add_argument("--coco-masks", dest="coco_mask_format", choices=["rle", "polygon"],
                        help=f"COCO mask encoding (default: {DatasetConfig.coco_mask_format})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_split_options(parser: argparse.ArgumentParser) -> None:
    from .datasets.writer import DatasetConfig

    default = ",".join(f"{s:g}" for s in DatasetConfig.split[:2])
    parser.add_argument("--split", type=_split, help=f"train,valid[,test] fractions (default: {default})")
    parser.add_argument("--seed", type=int, help=f"seed of the split (default: {DatasetConfig.seed})")


def _add_model_options(parser: argparse.ArgumentParser, boxes: bool = True) -> None:
    """SAM 2 and device, plus the box commands' batching and box tightening."""
    from .segmentation import SegmenterConfig

    parser.add_argument("--sam2", help="SAM 2 checkpoint: .pt path, hub id or variant name "
                                       f"(default: {SegmenterConfig.sam2})")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: best available)")
    parser.add_argument("--threads", type=int, help="torch threads on a CPU; part of the configuration, since it "
                                                    "changes results in their last digits (default: torch's)")
    _flag(parser, "--compile", "torch.compile SAM 2's image encoder and mask decoder and Florence-2's image features: "
                               "faster on a GPU after slow first batches; results change in their last digits")
    if boxes:
        parser.add_argument("--batch-size", type=int, help=f"images per batch; part of the configuration "
                                                           f"(default: {_batch_size_defaults()})")
        _flag(parser, "--tighten-boxes", "replace boxes by their masks' bounding boxes")


def _batch_size_defaults() -> str:
    """The batch size a run takes without --batch-size (labeling.resolve_batch_size), in words."""
    from .labeling import CPU_BATCH_SIZE, DEFAULT_BATCH_SIZE, LARGE_GPU_BATCH_SIZE, LARGE_GPU_MEMORY_GIB

    return (f"the dataset's when resuming, else {CPU_BATCH_SIZE} on a CPU, {DEFAULT_BATCH_SIZE} on a GPU, "
            f"{LARGE_GPU_BATCH_SIZE} on a CUDA GPU with {LARGE_GPU_MEMORY_GIB} GiB or more")


def _add_grounding_options(parser: argparse.ArgumentParser, ontology: bool = True) -> None:
    """The text-grounded commands' ontology (unless ``ontology`` is False), grounding model and box filters."""
    from .filters import FilterConfig
    from .grounding import DEFAULT_GROUNDER, GROUNDERS, Florence2Config, GroundingDinoConfig, Owlv2Config

    if ontology:
        parser.add_argument("--ontology", required=True, help="{prompt: class} as a YAML/JSON file, a JSON string, "
                                                              "or a shipped name (coco80, example)")
    parser.add_argument("--grounder", help=f"grounding model: {', '.join(GROUNDERS)}, optionally with ':<hub id or "
                                           f"directory>' (default: {DEFAULT_GROUNDER})")
    parser.add_argument("--florence", help=f"Florence-2 hub id or directory (default: {Florence2Config.checkpoint})")
    parser.add_argument("--strategy", choices=["phrase_grounding", "open_vocabulary"],
                        help=f"florence2: one caption with all prompts per image, or one request per prompt "
                             f"(default: {Florence2Config.strategy})")
    parser.add_argument("--num-beams", type=int,
                        help=f"florence2: beam search width (default: {Florence2Config.num_beams}: greedy)")
    parser.add_argument("--box-threshold", type=float,
                        help=f"grounding-dino, mm-grounding-dino, owlv2: minimum box score (default: "
                             f"{GroundingDinoConfig.box_threshold}, owlv2 {Owlv2Config.box_threshold})")
    parser.add_argument("--text-threshold", type=float,
                        help=f"grounding-dino, mm-grounding-dino: minimum score of the box's prompt "
                             f"(default: {GroundingDinoConfig.text_threshold})")
    if ontology:  # tune-prompts measures every threshold
        parser.add_argument("--min-confidence", type=float,
                            help=f"minimum grounding confidence of a box (default: {FilterConfig.min_confidence})")
    parser.add_argument("--nms-threshold", type=float,
                        help=f"box NMS IoU threshold; 1 disables (default: {FilterConfig.nms_threshold})")
    _flag(parser, "--class-agnostic-nms", "NMS across classes")
    parser.add_argument("--min-box-area", type=float,
                        help=f"minimum box area in pixels (default: {FilterConfig.min_box_area})")


def build_parser() -> argparse.ArgumentParser:
    from .labeling import generator_defaults
    from .video import TrackingSettings

    parser = argparse.ArgumentParser(
        prog="grounded-sam2", description="Label images with grounding boxes and SAM 2 masks from a text ontology."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    label = commands.add_parser(
        "label", help="label a folder of images into a YOLO or COCO dataset", epilog=LABEL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    label.add_argument("images", type=Path, help="folder of images (searched recursively) or one image file")
    label.add_argument("-o", "--output", type=Path, required=True, help="output dataset folder (not inside IMAGES)")
    _add_grounding_options(label)
    _add_output_options(label, ["yolo", "yolo-det", "coco", "label-studio"], "yolo")
    _add_model_options(label)
    _add_split_options(label)
    label.add_argument("--devices", help="one worker process per device, all writing one dataset: cuda:0,cuda:1 "
                                         "(or cpu:N for N workers on the CPU); the dataset is the one a single "
                                         "process makes")
    label.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="label on a Ray cluster: ADDRESS (auto, head:6379, ray://head:10001), or without it "
                            "RAY_ADDRESS, else a Ray started here; the output folder and the models must be on "
                            "storage every node sees (needs pip install 'grounded-sam2[ray]')")
    label.add_argument("--workers", type=int, help="with --ray: the Ray actors (default: one per GPU of the "
                                                   "cluster, or its CPUs divided by --threads)")

    boxes = commands.add_parser(
        "segment-boxes",
        help="turn a YOLO or COCO detection dataset into a segmentation dataset with SAM 2",
        description="Segments the boxes of an existing detection dataset (YOLO folder with data.yaml, COCO JSON, or "
                    "a folder of split folders with _annotations.coco.json). Classes and splits are kept. Streams and "
                    "resumes like 'label'. Exit codes: 0 done, 1 some inputs skipped, 2 error, 130 interrupted.",
    )
    boxes.add_argument("dataset", type=Path, help="detection dataset: YOLO folder, COCO JSON or COCO split folders")
    boxes.add_argument("-o", "--output", type=Path, required=True, help="output dataset folder")
    _add_output_options(boxes, ["yolo", "coco"], "yolo")
    _add_model_options(boxes)

    everything = commands.add_parser(
        "segment-everything",
        help="class-agnostic masks of everything (SAM 2's automatic mask generator) as a dataset",
        description="Masks of every object, with one class 'object', from a grid of point prompts. Streams, resumes "
                    "and reports bad inputs like 'label'. Exit codes: 0 done, 1 some inputs skipped, 2 error, "
                    "130 interrupted.",
    )
    everything.add_argument("images", type=Path, help="folder of images (searched recursively) or one image file")
    everything.add_argument("-o", "--output", type=Path, required=True,
                            help="output dataset folder (not inside IMAGES)")
    _add_output_options(everything, ["coco", "yolo"], "coco")
    _add_split_options(everything)
    defaults = generator_defaults()
    for name, kind, what in (
        ("points_per_side", int, "point grid size"), ("points_per_batch", int, "points per decoder call"),
        ("pred_iou_thresh", float, "minimum predicted IoU"), ("stability_score_thresh", float, "minimum stability"),
        ("box_nms_thresh", float, "NMS IoU threshold"), ("crop_n_layers", int, "layers of image crops"),
        ("min_mask_region_area", int, "fill holes/remove specks up to this area"),
    ):
        everything.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"{what} (default: {defaults[name]})")
    _flag(everything, "--use-m2m", "one refinement step with each mask as prompt")
    _add_model_options(everything, boxes=False)

    video = commands.add_parser(
        "label-video",
        help="track the ontology's objects through a video into a frame dataset with track ids",
        description="The grounding model finds the objects on frame 0 and every K-th frame; SAM 2 tracks them in "
                    "between. Writes every frame with its labels (train/), video.json (COCO with video, frame and "
                    "track ids) and, with --annotated-video, annotated.mp4. Running the same command again after an "
                    "interruption tracks from the start and writes only the missing frames. "
                    "Exit codes: 0 done, 2 error, 130 interrupted.",
    )
    video.add_argument("video", type=Path, nargs="+",
                       help="video file (mp4, avi, mov, mkv...) or folder of numbered frames (00000.jpg...); "
                            "several: one dataset each, OUTPUT/<video name>")
    video.add_argument("-o", "--output", type=Path, required=True, help="output dataset folder")
    _add_grounding_options(video)
    _add_output_options(video, ["yolo", "yolo-det", "coco", "label-studio"], "yolo")
    _add_model_options(video, boxes=False)
    video.add_argument("--every", type=int,
                       help=f"ground every K frames to find new objects (default: {TrackingSettings.every})")
    video.add_argument("--match-iou", type=float,
                       help="box-to-track IoU that confirms a track on a keyframe "
                            f"(default: {TrackingSettings.match_iou})")
    video.add_argument("--max-missed", dest="max_missed_keyframes", type=int,
                       help=f"keyframes in a row a track may go without a box before it ends "
                            f"(default: {TrackingSettings.max_missed_keyframes})")
    video.add_argument("--annotated-video", action="store_true", help="also write annotated.mp4")
    video.add_argument("--no-video-json", action="store_true", help="do not write video.json")
    video.add_argument("--devices", help="with several videos: one worker process per device, each labeling one "
                                         "video at a time: cuda:0,cuda:1 (or cpu:N)")

    evaluation = commands.add_parser(
        "evaluate", help="measure a labeled dataset against hand labels (COCO AP, per-class F1 by confidence)",
        description="Compares PREDICTED with TRUTH (each a YOLO folder with data.yaml, a COCO JSON or COCO split "
                    "folders): images matched by file name, classes by name. Prints box and mask AP, AP50, AP75, "
                    "AR (pycocotools) and per class the best F1 and its confidence threshold; writes "
                    "evaluation.json and precision_recall.png. Exit codes: 0 done, 2 error.",
    )
    evaluation.add_argument("predicted", type=Path, help="the labeled dataset to measure")
    evaluation.add_argument("truth", type=Path, help="the hand-labeled dataset (a few images are enough)")
    evaluation.add_argument("-o", "--output", type=Path, default=Path("evaluation"),
                            help="folder for evaluation.json and precision_recall.png (default: ./evaluation)")

    preview = commands.add_parser(
        "preview", help="an HTML review report of a labeled dataset (summary, histograms, least confident first)",
        description="Writes one HTML page that opens from disk (no network): the summary (images, labeled, skipped "
                    "and why, objects per class), confidence histograms per class, and a gallery of a fixed sample "
                    "of images with their masks, boxes and 'class confidence', the least confident first, with a "
                    "class filter; its images go to OUT_files/ next to it. Exit codes: 0 done, 2 error.",
    )
    preview.add_argument("dataset", type=Path, help="a YOLO folder (or data.yaml), a COCO JSON or COCO split folders")
    preview.add_argument("-o", "--output", type=Path, default=Path("preview.html"),
                         help="the HTML file (default: ./preview.html)")
    preview.add_argument("--max-images", type=int, default=300,
                         help="images in the gallery, a deterministic sample (default: 300; 0: the summary only)")
    preview.add_argument("--open", action="store_true", help="open the report in the default browser")

    tune = commands.add_parser(
        "tune-prompts", help="pick each class's best prompt among candidates, measured on hand-labeled images",
        description="Grounds and segments every candidate prompt on the images of TRUTH (a YOLO folder with "
                    "data.yaml, a COCO JSON or COCO split folders), ranks the candidates of each class by AP (mask "
                    "AP where the truth has masks), and writes the best ontology as YAML for 'label --ontology', "
                    "with the --min-confidence that maximises F1. Exit codes: 0 done, 2 error.",
    )
    tune.add_argument("truth", type=Path, help="the hand-labeled dataset")
    tune.add_argument("--candidates", type=Path, required=True,
                      help='YAML or JSON file: per class a list of prompts, e.g. dog: ["dog", "a dog", "puppy"]')
    tune.add_argument("-o", "--output", type=Path, default=Path("tuned_ontology.yaml"),
                      help="the best ontology, as YAML (default: ./tuned_ontology.yaml)")
    tune.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_grounding_options(tune, ontology=False)
    _add_model_options(tune)

    tiny = commands.add_parser(
        "make-tiny-models",
        help="write tiny random models of every grounding backend (DIR/<backend>) and of SAM 2 (DIR/sam2.pt) "
             "for offline smoke runs",
        description="Writes random models that load like the real ones. Their labels are meaningless: "
                    "they are for testing the pipeline where real weights cannot be downloaded.",
    )
    tiny.add_argument("directory", type=Path)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "make-tiny-models":
        from .tiny_models import TINY_GROUNDERS, make_tiny_models

        _, sam2 = make_tiny_models(args.directory, grounders=tuple(TINY_GROUNDERS))
        for backend in TINY_GROUNDERS:
            print(f"--grounder {backend}:{args.directory / backend}")
        print(f"--sam2 {sam2}\n(random weights: the labels they produce are meaningless)")
        return EXIT_OK
    return _run(args)


def _run(args) -> int:
    """A dataset command, with errors as messages and exit codes. Only the package's own errors,
    Ctrl-C and running out of memory are caught: anything else is a bug and shows its traceback."""
    from .errors import GroundedSAM2Error, is_out_of_memory

    if getattr(args, "no_progress", False):
        from .pipeline import quiet_model_loading

        quiet_model_loading()
    try:
        run = {"label": _label, "segment-boxes": _segment_boxes, "segment-everything": _segment_everything,
               "label-video": _label_video, "evaluate": _evaluate, "tune-prompts": _tune_prompts,
               "preview": _preview}[args.command]
        summary = run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except GroundedSAM2Error as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:
        if not is_out_of_memory(e):
            raise
        print(f"error: out of memory ({str(e).splitlines()[0] if str(e) else type(e).__name__}).\n"
              f"{_memory_advice(args)}", file=sys.stderr)
        return EXIT_ERROR
    print(summary)
    return EXIT_SKIPPED if getattr(summary, "skipped", None) else EXIT_OK


def _memory_advice(args) -> str:
    """What to lower when a command runs out of memory."""
    if args.command == "segment-everything":
        return "Lower --points-per-batch, or --crop-n-layers, or use a smaller --sam2 variant."
    if args.command == "label-video":
        return "Use a smaller --sam2 variant or a shorter video."
    now = f"now {args.batch_size}" if args.batch_size else f"default: {_batch_size_defaults()}"
    return f"Lower --batch-size ({now}), or use smaller models (--sam2, --florence)."


def _existing(path: Path, what: str) -> Path:
    from .errors import InputNotFoundError

    if not path.exists():
        raise InputNotFoundError(f"{what} not found: {path}")
    return path


def _dataset_config(args):
    from .datasets.writer import DatasetConfig

    return DatasetConfig(**given(args, DATASET_OPTIONS))


def _segmenter_config(args):
    from .segmentation import SegmenterConfig

    return SegmenterConfig(**given(args, ("sam2", "tighten_boxes")))


def _placement(args):
    from .config import DeviceConfig

    return DeviceConfig(**given(args, ("device", "threads", "compile")))


def _segment_boxes(args):
    from .labeling import segment_box_dataset

    return segment_box_dataset(
        _existing(args.dataset, "dataset"), args.output, _segmenter_config(args), _dataset_config(args),
        _placement(args), progress=not args.no_progress, **given(args, ("batch_size",)),
    )


def _segment_everything(args):
    from .datasets.writer import DatasetConfig
    from .labeling import segment_everything

    images = _existing(args.images, "input")
    dataset = DatasetConfig(**{"format": "coco", **given(args, DATASET_OPTIONS)})
    return segment_everything(
        images if images.is_dir() else [images], args.output, _segmenter_config(args), dataset,
        generator_options=given(args, GENERATOR_OPTIONS), placement=_placement(args), progress=not args.no_progress,
    )


def _pipeline_options(args) -> Dict[str, Any]:
    """The pipeline options the user gave; ``--nms-threshold 1`` turns NMS off."""
    options = given(args, PIPELINE_OPTIONS)
    if options.get("nms_threshold", 0.0) >= 1:
        options["nms_threshold"] = None  # off
    return options


def _pipeline_config(args, sources: List[Path], check_inputs=None):
    """The pipeline's configuration from the options. Before any model loads: the ontology and
    options, then each input (``check_inputs(source)`` too, when given) and the output folder."""
    from .config import PipelineConfig
    from .labeling import check_output_folder

    config = PipelineConfig.from_options(args.ontology, **_pipeline_options(args))
    for source in sources:
        _existing(source, "input")
        if check_inputs is not None:
            check_inputs(source)
        check_output_folder(source, args.output)
    return config


def _label(args):
    from .errors import SettingsError
    from .labeling import input_images, label_folder
    from .pipeline import Pipeline

    if args.devices is not None and (args.device is not None or args.ray is not None):
        raise SettingsError("--devices goes without --device and --ray (with --ray, --device cpu or cuda "
                            "chooses the actors' device type)")
    if args.workers is not None and args.ray is None:
        raise SettingsError("--workers is the number of Ray actors: it goes with --ray")
    images = args.images if args.images.is_dir() else [args.images]
    config = _pipeline_config(args, [args.images], check_inputs=lambda _: input_images(images))
    options = dict(progress=not args.no_progress, **given(args, ("batch_size",)))
    if args.devices:
        from .parallel import label_on_devices

        return label_on_devices(config, images, args.output, args.devices, _dataset_config(args), **options)
    if args.ray is not None:
        from .cluster import label_on_ray

        return label_on_ray(config, images, args.output, args.ray or None, args.workers, _dataset_config(args),
                            **options)
    return label_folder(Pipeline(config), images, args.output, _dataset_config(args), **options)


def _evaluate(args):
    from .evaluation import evaluate

    result = evaluate(args.predicted, args.truth)
    folder = result.write(args.output)
    print(f"wrote {folder / 'evaluation.json'} and {folder / 'precision_recall.png'}", file=sys.stderr)
    return result


def _preview(args):
    from .preview import write_preview

    path = write_preview(args.dataset, args.output, max_images=args.max_images, open_browser=args.open)
    return f"wrote {path} (its images: {path.with_name(path.stem + '_files')})"


def _tune_prompts(args):
    from .datasets.writer import atomic_write
    from .prompt_tuning import tune_prompts

    result = tune_prompts(args.truth, args.candidates, _pipeline_options(args), progress=not args.no_progress,
                          **given(args, ("batch_size",)))
    atomic_write(args.output, result.ontology_yaml().encode())
    print(f"wrote {args.output}: label with --ontology {args.output}", file=sys.stderr)
    return result


def _label_video(args):
    from .errors import SettingsError
    from .video import TrackingSettings
    from .video_labeling import label_videos

    if args.devices is not None and args.device is not None:
        raise SettingsError("give either --device or --devices, not both")
    config = _pipeline_config(args, args.video)
    summary = label_videos(
        config, args.video, args.output, args.devices, _dataset_config(args),
        TrackingSettings(**given(args, TRACKING_OPTIONS)), video_json=not args.no_video_json,
        annotated_video=args.annotated_video, progress=not args.no_progress,
    )
    return summary.videos[0] if len(summary.videos) == 1 else summary


if __name__ == "__main__":
    sys.exit(main())
