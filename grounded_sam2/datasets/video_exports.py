"""Video outputs next to the frame dataset: a COCO-style video JSON with track ids, and an
annotated MP4.

``video.json`` (YouTube-VIS/TAO style: COCO plus videos and tracks)::

    {"info": {...}, "categories": [{"id": 1, "name": ...}, ...],
     "videos": [{"id": 1, "name": ..., "width": W, "height": H, "length": N, "fps": ...}],
     "images": [{"id": i + 1, "video_id": 1, "frame_index": i, "file_name": ..., "width": W, "height": H}],
     "tracks": [{"id": track_id, "video_id": 1, "category_id": ...}],
     "annotations": [{"id", "image_id", "video_id", "track_id", "category_id", "segmentation" (RLE),
                      "area", "bbox" (XYWH), "iscrowd": 0, "score"}]}

Both are streamed: annotations go to a JSON-lines file under ``.work/`` as frames arrive and the
JSON is assembled at the end; the MP4 is encoded frame by frame. Each is written under a
temporary name and renamed when complete, so an interrupted run never leaves a partial file.
"""

import json
import os
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import supervision as sv

from .formats import coco_annotation
from .writer import DatasetError, atomic_path

VIDEO_JSON = "video.json"
ANNOTATED_VIDEO = "annotated.mp4"


class VideoJsonWriter:
    """Streams one video's tracked annotations into ``video.json``."""

    def __init__(self, output: Path, classes: Sequence[str], video_name: str, width: int, height: int,
                 fps: Optional[float]) -> None:
        self.path = Path(output) / VIDEO_JSON
        self.classes = list(classes)
        self.video = {"id": 1, "name": video_name, "width": width, "height": height, "length": 0, "fps": fps}
        self._records = Path(output) / ".work" / "video_annotations.jsonl"
        self._records.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._records, "w")  # a rerun tracks the whole video again: start afresh
        self._tracks = {}
        self._annotations = 0

    def add_frame(self, index: int, file_name: str, detections: sv.Detections) -> None:
        """Record frame ``index`` (stored as ``file_name``) and its detections (masks, class ids,
        tracker ids, confidences)."""
        h, w = self.video["height"], self.video["width"]
        image = {"id": index + 1, "video_id": 1, "frame_index": index, "file_name": file_name, "width": w, "height": h}
        annotations = []
        for mask, xyxy, class_id, track_id, score in zip(
            detections.mask, detections.xyxy, detections.class_id, detections.tracker_id, detections.confidence
        ):
            annotation = coco_annotation(
                self._annotations + 1, image["id"], int(class_id) + 1, mask, xyxy, "rle", float(score)
            )
            if annotation is None:
                continue
            self._annotations += 1
            annotation.update(video_id=1, track_id=int(track_id))
            annotations.append(annotation)
            self._tracks.setdefault(int(track_id), int(class_id) + 1)
        self._file.write(json.dumps({"image": image, "annotations": annotations}) + "\n")
        self._file.flush()
        self.video["length"] = max(self.video["length"], index + 1)

    def close(self) -> None:
        """Assemble ``video.json`` from the recorded frames."""
        self._file.close()
        images: List[dict] = []
        annotations: List[dict] = []
        with open(self._records) as records:
            for line in records:
                record = json.loads(line)
                images.append(record["image"])
                annotations += record["annotations"]
        data = {
            "info": {"description": "grounded-sam2 video labels", "version": "1.0"},
            "categories": [{"id": i + 1, "name": name, "supercategory": "none"} for i, name in enumerate(self.classes)],
            "videos": [self.video],
            "images": images,
            "tracks": [{"id": t, "video_id": 1, "category_id": c} for t, c in sorted(self._tracks.items())],
            "annotations": annotations,
        }
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(data))
        self._records.unlink()


class AnnotatedVideoWriter:
    """Encodes frames with their masks, boxes and labels (``#track class confidence``) drawn by
    supervision, colours by track id, into ``annotated.mp4`` (MPEG-4 Part 2, OpenCV's mp4v)."""

    def __init__(self, output: Path, width: int, height: int, fps: Optional[float]) -> None:
        import cv2

        self.path = Path(output) / ANNOTATED_VIDEO
        self._partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        fourcc = cv2.VideoWriter_fourcc(*"mp4v")
        self._writer = cv2.VideoWriter(str(self._partial), fourcc, fps or 30.0, (width, height))
        if not self._writer.isOpened():
            raise DatasetError(f"OpenCV cannot write an MP4 video to {self._partial}")
        self._masks = sv.MaskAnnotator(color_lookup=sv.ColorLookup.TRACK)
        self._boxes = sv.BoxAnnotator(color_lookup=sv.ColorLookup.TRACK)
        self._labels = sv.LabelAnnotator(color_lookup=sv.ColorLookup.TRACK)

    def add_frame(self, rgb: np.ndarray, detections: sv.Detections) -> None:
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        labels = [
            f"#{t} {name} {c:.2f}"
            for t, name, c in zip(detections.tracker_id, detections.data["class_name"], detections.confidence)
        ]
        if len(detections):
            bgr = self._masks.annotate(bgr, detections)
            bgr = self._boxes.annotate(bgr, detections)
            bgr = self._labels.annotate(bgr, detections, labels)
        self._writer.write(bgr)

    def close(self) -> None:
        self._writer.release()
        os.replace(self._partial, self.path)

    def discard(self) -> None:
        """Stop without publishing the partial video."""
        self._writer.release()
        self._partial.unlink(missing_ok=True)
