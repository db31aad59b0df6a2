"""The ``grounded-sam2`` command.

Exit codes: 0 done; 1 done, but some inputs were skipped (listed in OUT/skipped.txt);
2 bad usage, ontology, model or output folder (nothing labeled); 130 interrupted (run the same
command again to resume).
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

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


def _split(text: str):
    parts = [float(p) for p in text.split(",")]
    if len(parts) == 2:
        parts.append(0.0)
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("give train,valid or train,valid,test fractions, e.g. 0.8,0.2")
    return tuple(parts)


def _add_segmentation_options(parser: argparse.ArgumentParser, boxes: bool = True) -> None:
    """Options every dataset command shares (SAM 2, device, mask output, progress), plus the
    box commands' batching and box tightening."""
    parser.add_argument("--sam2", default="facebook/sam2.1-hiera-large",
                        help="SAM 2 checkpoint: .pt path, hub id or variant name (default: facebook/sam2.1-hiera-large)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or mps (default: best available)")
    parser.add_argument("--coco-masks", choices=["rle", "polygon"], default="rle", help="COCO mask encoding (default rle)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    if boxes:
        parser.add_argument("--batch-size", type=int, default=4, help="images per batch (default 4)")
        parser.add_argument("--tighten-boxes", action="store_true", help="replace boxes by their masks' bounding boxes")


def _add_grounding_options(parser: argparse.ArgumentParser) -> None:
    """The text-grounded commands' ontology, output format, Florence-2 and box filters."""
    parser.add_argument("--ontology", required=True,
                        help="{prompt: class} as a YAML/JSON file, a JSON string, or a shipped name (coco80, example)")
    parser.add_argument("--format", choices=["yolo", "yolo-det", "coco"], default="yolo",
                        help="yolo: segmentation polygons; yolo-det: boxes; coco: instance masks (default: yolo)")
    parser.add_argument("--florence", default="florence-community/Florence-2-large", help="Florence-2 hub id or directory")
    parser.add_argument("--strategy", choices=["phrase_grounding", "open_vocabulary"], default="phrase_grounding",
                        help="one caption with all prompts per image, or one request per prompt")
    parser.add_argument("--min-confidence", type=float, default=0.0, help="minimum grounding confidence of a box")
    parser.add_argument("--nms-threshold", type=float, default=0.7, help="box NMS IoU threshold; 1 disables")
    parser.add_argument("--class-agnostic-nms", action="store_true", help="NMS across classes")
    parser.add_argument("--min-box-area", type=float, default=0.0, help="minimum box area in pixels")
    parser.add_argument("--num-beams", type=int, default=1, help="Florence-2 beam search width (1: greedy)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grounded-sam2", description="Label images with Florence-2 boxes and SAM 2 masks from a text ontology."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    label = commands.add_parser(
        "label", help="label a folder of images into a YOLO or COCO dataset", epilog=LABEL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    label.add_argument("images", type=Path, help="folder of images (searched recursively) or one image file")
    label.add_argument("-o", "--output", type=Path, required=True, help="output dataset folder (not inside IMAGES)")
    _add_grounding_options(label)
    _add_segmentation_options(label)
    label.add_argument("--split", type=_split, default=(0.8, 0.2, 0.0), help="train,valid[,test] fractions (default 0.8,0.2)")
    label.add_argument("--seed", type=int, default=0, help="seed of the train/valid/test split")

    boxes = commands.add_parser(
        "segment-boxes",
        help="turn a YOLO or COCO detection dataset into a segmentation dataset with SAM 2",
        description="Segments the boxes of an existing detection dataset (YOLO folder with data.yaml, COCO JSON, or "
                    "a folder of split folders with _annotations.coco.json). Classes and splits are kept. Streams and "
                    "resumes like 'label'. Exit codes: 0 done, 1 some inputs skipped, 2 error, 130 interrupted.",
    )
    boxes.add_argument("dataset", type=Path, help="detection dataset: YOLO folder, COCO JSON or COCO split folders")
    boxes.add_argument("-o", "--output", type=Path, required=True, help="output dataset folder")
    boxes.add_argument("--format", choices=["yolo", "coco"], default="yolo", help="output format (default: yolo)")
    _add_segmentation_options(boxes)

    everything = commands.add_parser(
        "segment-everything",
        help="class-agnostic masks of everything (SAM 2's automatic mask generator) as a dataset",
        description="Masks of every object, with one class 'object', from a grid of point prompts. Streams, resumes "
                    "and reports bad inputs like 'label'. Exit codes: 0 done, 1 some inputs skipped, 2 error, 130 interrupted.",
    )
    everything.add_argument("images", type=Path, help="folder of images (searched recursively) or one image file")
    everything.add_argument("-o", "--output", type=Path, required=True, help="output dataset folder (not inside IMAGES)")
    everything.add_argument("--format", choices=["coco", "yolo"], default="coco", help="output format (default: coco)")
    everything.add_argument("--split", type=_split, default=(0.8, 0.2, 0.0), help="train,valid[,test] fractions")
    everything.add_argument("--seed", type=int, default=0, help="seed of the split")
    everything.add_argument("--points-per-side", type=int, default=32, help="point grid size (default 32)")
    everything.add_argument("--points-per-batch", type=int, default=64, help="points per decoder call (default 64)")
    everything.add_argument("--pred-iou-thresh", type=float, default=0.8, help="minimum predicted IoU (default 0.8)")
    everything.add_argument("--stability-score-thresh", type=float, default=0.95, help="minimum stability (default 0.95)")
    everything.add_argument("--box-nms-thresh", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    everything.add_argument("--crop-n-layers", type=int, default=0, help="layers of image crops (default 0)")
    everything.add_argument("--min-mask-region-area", type=int, default=0, help="fill holes/remove specks up to this area")
    everything.add_argument("--use-m2m", action="store_true", help="one refinement step with each mask as prompt")
    _add_segmentation_options(everything, boxes=False)

    video = commands.add_parser(
        "label-video",
        help="track the ontology's objects through a video into a frame dataset with track ids",
        description="Florence-2 finds the objects on frame 0 and every K-th frame; SAM 2 tracks them in between. "
                    "Writes every frame with its labels (train/), video.json (COCO with video, frame and track ids) "
                    "and, with --annotated-video, annotated.mp4. Running the same command again after an "
                    "interruption tracks from the start and writes only the missing frames. "
                    "Exit codes: 0 done, 2 error, 130 interrupted.",
    )
    video.add_argument("video", type=Path, help="video file (mp4, avi, mov, mkv...) or folder of numbered frames (00000.jpg...)")
    video.add_argument("-o", "--output", type=Path, required=True, help="output dataset folder")
    _add_grounding_options(video)
    _add_segmentation_options(video, boxes=False)
    video.add_argument("--every", type=int, default=15, help="ground every K frames to find new objects (default 15)")
    video.add_argument("--match-iou", type=float, default=0.5,
                       help="box-to-track IoU that confirms a track on a keyframe (default 0.5)")
    video.add_argument("--max-missed", type=int, default=1,
                       help="keyframes in a row a track may go without a box before it ends (default 1)")
    video.add_argument("--annotated-video", action="store_true", help="also write annotated.mp4")
    video.add_argument("--no-video-json", action="store_true", help="do not write video.json")

    tiny = commands.add_parser(
        "make-tiny-models",
        help="write a tiny random Florence-2 (DIR/florence2) and SAM 2 checkpoint (DIR/sam2.pt) for offline smoke runs",
        description="Writes random models that load like the real ones. Their labels are meaningless: "
                    "they are for testing the pipeline where real weights cannot be downloaded.",
    )
    tiny.add_argument("directory", type=Path)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "make-tiny-models":
        from .tiny_models import make_tiny_models

        florence, sam2 = make_tiny_models(args.directory)
        print(f"Florence-2: {florence}\nSAM 2: {sam2}\n(random weights: the labels they produce are meaningless)")
        return EXIT_OK
    return _run(args)


def _run(args) -> int:
    """A dataset command, with errors as messages and exit codes. Only the package's own errors,
    Ctrl-C and running out of memory are caught: anything else is a bug and shows its traceback."""
    from .errors import GroundedSAM2Error, is_out_of_memory

    try:
        run = {"label": _label, "segment-boxes": _segment_boxes, "segment-everything": _segment_everything,
               "label-video": _label_video}[args.command]
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
    return EXIT_SKIPPED if summary.skipped else EXIT_OK


def _memory_advice(args) -> str:
    """What to lower when a command runs out of memory."""
    if args.command == "segment-everything":
        return "Lower --points-per-batch, or --crop-n-layers, or use a smaller --sam2 variant."
    if args.command == "label-video":
        return "Use a smaller --sam2 variant or a shorter video."
    return f"Lower --batch-size (now {args.batch_size}), or use smaller models (--sam2, --florence)."


def _segment_boxes(args):
    from .errors import InputNotFoundError
    from .labeling import segment_box_dataset

    if not args.dataset.exists():
        raise InputNotFoundError(f"dataset not found: {args.dataset}")
    return segment_box_dataset(
        args.dataset, args.output, args.sam2, device=args.device, format=args.format, coco_mask_format=args.coco_masks,
        tighten_boxes=args.tighten_boxes, batch_size=args.batch_size, progress=not args.no_progress,
    )


def _segment_everything(args):
    from .errors import InputNotFoundError
    from .labeling import segment_everything

    if not args.images.exists():
        raise InputNotFoundError(f"input not found: {args.images}")
    options = {name: getattr(args, name) for name in (
        "points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh", "box_nms_thresh",
        "crop_n_layers", "min_mask_region_area", "use_m2m")}
    return segment_everything(
        args.images if args.images.is_dir() else [args.images], args.output, args.sam2, device=args.device,
        format=args.format, split=args.split, seed=args.seed, coco_mask_format=args.coco_masks,
        generator_options=options, progress=not args.no_progress,
    )


def _grounded_model(args, source: Path):
    """GroundedSAM2 from the grounding options, after the inputs are checked (before any model loads)."""
    from .errors import InputNotFoundError
    from .labeling import check_output_folder
    from .model import GroundedSAM2
    from .ontology import Ontology

    ontology = Ontology.load(args.ontology)
    if not source.exists():
        raise InputNotFoundError(f"input not found: {source}")
    check_output_folder(source, args.output)
    return GroundedSAM2(
        ontology, florence=args.florence, sam2=args.sam2, device=args.device, strategy=args.strategy,
        min_confidence=args.min_confidence, nms_threshold=None if args.nms_threshold >= 1 else args.nms_threshold,
        class_agnostic_nms=args.class_agnostic_nms, min_box_area=args.min_box_area,
        tighten_boxes=getattr(args, "tighten_boxes", False), num_beams=args.num_beams,
    )


def _label(args):
    model = _grounded_model(args, args.images)
    return model.label(
        args.images if args.images.is_dir() else [args.images], output_folder=args.output, format=args.format,
        split=args.split, seed=args.seed, coco_mask_format=args.coco_masks, batch_size=args.batch_size,
        progress=not args.no_progress,
    )


def _label_video(args):
    from .video_labeling import label_video

    model = _grounded_model(args, args.video)
    return label_video(
        model, args.video, args.output, format=args.format, every=args.every, match_iou=args.match_iou,
        max_missed_keyframes=args.max_missed, coco_mask_format=args.coco_masks,
        video_json=not args.no_video_json, annotated_video=args.annotated_video, progress=not args.no_progress,
    )


if __name__ == "__main__":
    sys.exit(main())
