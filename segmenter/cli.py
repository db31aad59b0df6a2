"""``python -m segmenter``: segment one or more images with box and point prompts.

    python -m segmenter photo.jpg --box 40 60 300 420 --sam2 facebook/sam2.1-hiera-large -o masks/

writes one PNG mask per prompt (``masks/photo_0.png`` ...) and prints each mask's predicted IoU.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np

from .build_sam import build_sam2
from .errors import GroundedSAM2Error
from .image_io import ImageError
from .predictor import SAM2ImagePredictor


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m segmenter",
        description="Segment images with SAM 2 from box and point prompts; one PNG mask per prompt.",
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--box", nargs=4, type=float, action="append", metavar=("X0", "Y0", "X1", "Y1"),
                        help="box prompt in pixels, XYXY; repeat for several objects (one mask each)")
    parser.add_argument("--point", nargs=3, type=float, action="append", metavar=("X", "Y", "LABEL"),
                        help="click in pixels with label 1 (object) or 0 (background); repeat for more. "
                             "With boxes, the clicks refine every box")
    parser.add_argument("--sam2", required=True,
                        help="checkpoint: a .pt path or a hub id such as facebook/sam2.1-hiera-large")
    parser.add_argument("--config", default=None, help="variant (e.g. sam2.1_hiera_l.yaml); default: detected")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or mps; default: best available")
    parser.add_argument("--multimask", action="store_true", help="write the best of 3 candidate masks per prompt")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    if not args.box and not args.point:
        parser.error("give at least one --box or --point")
    if args.point and any(label not in (0, 1) for _, _, label in args.point):
        parser.error("a --point LABEL is 1 (object) or 0 (background)")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        predictor = SAM2ImagePredictor(build_sam2(args.config, args.sam2, device=args.device))
    except GroundedSAM2Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    boxes = np.array(args.box) if args.box else None
    points = np.array(args.point)[:, :2] if args.point else None
    labels = np.array(args.point)[:, 2].astype(np.int32) if args.point else None
    args.output.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in args.images:
        try:
            predictor.set_image(path)
            masks, scores, _ = predictor.predict(points, labels, boxes, multimask_output=args.multimask)
        except ImageError as e:
            print(f"{path}: skipped: {e}", file=sys.stderr)
            failed += 1
            continue
        if masks.ndim == 3:  # one prompt: CxHxW -> 1xCxHxW
            masks, scores = masks[None], scores[None]
        for i, (candidates, candidate_scores) in enumerate(zip(masks, scores)):
            best = int(np.argmax(candidate_scores))
            out = args.output / f"{path.stem}_{i}.png"
            cv2.imwrite(str(out), (candidates[best] > 0).astype(np.uint8) * 255)
            print(f"{out}\tpredicted IoU {candidate_scores[best]:.3f}")
    return 1 if failed else 0
