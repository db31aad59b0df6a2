"""Frames of one video for SAM 2's video predictor: a folder of frames, a video file or arrays.

`load_video_frames(video_path, image_size)` returns a `VideoFrames`, a sequence whose item `i`
is the model input of frame `i` (3xSxS float32, S = image_size) and whose `original(i)` is the
frame as decoded (HxWx3 uint8 RGB, original resolution).

Sources
- A folder of .jpg, .jpeg or .png files (any case) named by frame number: "00000.jpg",
  "17.png". Frames are ordered by number; numbering may start anywhere (ffmpeg starts at 1) but
  must have no gap; frame index 0 is the lowest number and `names` holds the file stems. Other
  files, subfolders and hidden files (".name") are ignored. EXIF orientation is not applied
  (as Meta's loader).
- A video file in any format cv2.VideoCapture decodes (OpenCV's FFmpeg backend: .mp4, .avi,
  .mov, .mkv, ...).
- A non-empty sequence of HxWx3 uint8 RGB arrays, or one NxHxWx3 uint8 array.

Model input
Every frame takes one path, the numerics of Meta's `sam2.utils.misc.load_video_frames` for
JPEG folders: HxWx3 uint8 RGB -> PIL resize to SxS with PIL's default filter -> /255 -> minus
ImageNet mean, divided by ImageNet std. For folders the result equals Meta's bit for bit. Meta
decodes video files with decord, we with cv2, so frames of video files may differ from Meta's.

Memory and speed (Meta keeps every frame as a float32 tensor: 12 MiB a frame at S = 1024, on
the GPU unless offload_video_to_cpu)
- Folders: loading reads only each file's header, to check that all frames have one size; a
  frame is decoded when it is accessed. `original(i)` decodes the file again.
- Video files cannot be read at random cheaply, so the whole file is decoded once when loading
  and the resized frames are kept as uint8 in CPU memory: 3 MiB a frame at S = 1024 (3 GiB for
  1000 frames). `original(i)` decodes the file again with a cv2 capture that stays open (the
  one used for loading, until the VideoFrames is garbage-collected): frames visited in order
  cost one decode each; going backwards, or forwards by more than MAX_READ_AHEAD frames, seeks
  with CAP_PROP_POS_FRAMES. Seeking is not exact in every
  container, so a frame reached by seeking is checked against the one decoded when loading
  (resized, they must be equal); when they differ the file is read again from the start.
- Arrays are kept by reference, not copied (changing them changes the frames) and resized when
  accessed.
- The model inputs of the last CACHED_FRAMES frames accessed are kept (least recently used
  dropped first; 48 MiB at S = 1024) on `device`, as the predictor asks for the current frame
  repeatedly.

A VideoFrames is not thread-safe.
"""

import collections
import collections.abc
import operator
import os
import re
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Protocol, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from PIL import Image

from .errors import GroundedSAM2Error
from .transforms import IMAGENET_MEAN, IMAGENET_STD

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
CACHED_FRAMES = 4  # model inputs kept by VideoFrames
PREFETCH_FRAMES = 2  # frames VideoFrames reads and resizes ahead, in a background thread
MAX_READ_AHEAD = 32  # VideoFrames.original on video files: frames read forward rather than seeking

VideoInput = Union[str, os.PathLike, Sequence[np.ndarray]]


class VideoError(GroundedSAM2Error, ValueError):
    """A video or frame folder that cannot be used."""


def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 RGB -> SxSx3 uint8 RGB, resized by PIL with its default filter (as Meta)."""
    return np.array(Image.fromarray(rgb).resize((size, size)))


def _size_text(shape: Tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def _listing(names: List[str]) -> str:
    shown = ", ".join(names[:3])
    return shown if len(names) <= 3 else f"{shown}, ... ({len(names)} in all)"


class _FrameSource(Protocol):
    names: List[str]
    height: int
    width: int
    fps: Optional[float]

    def resized(self, index: int) -> np.ndarray:
        """SxSx3 uint8 RGB frame `index` (0 <= index < len(names))."""

    def original(self, index: int) -> np.ndarray:
        """HxWx3 uint8 RGB frame `index` at the original resolution, a new array."""


class _FolderFrames:
    """Frame files of a folder, decoded when accessed."""

    def __init__(self, folder: Path, size: int):
        self.size = size
        self.paths = _frame_paths(folder)
        self.names = [path.stem for path in self.paths]
        self.height, self.width = _common_shape(folder, self.paths)
        self.fps: Optional[float] = None

    def resized(self, index: int) -> np.ndarray:
        return _resize(self.original(index), self.size)

    def original(self, index: int) -> np.ndarray:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return np.array(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as e:
            raise VideoError(f"{path}: cannot read frame {index}: {e}") from e


def _frame_paths(folder: Path) -> List[Path]:
    """The frame files of `folder` in frame order; VideoError unless they are numbered without gaps."""
    files = sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() in FRAME_EXTENSIONS and not path.name.startswith(".") and path.is_file()
    )
    if not files:
        raise VideoError(
            f"{folder}: no frames found; expected {', '.join(FRAME_EXTENSIONS)} files named by frame number "
            "(00000.jpg, 00001.jpg, ...)"
        )
    unnumbered = [path.name for path in files if not re.fullmatch(r"[0-9]+", path.stem)]
    if unnumbered:
        raise VideoError(
            f"{folder}: frame files must be named by their frame number (00000.jpg, 00001.jpg, ...); "
            f"not named so: {_listing(unnumbered)}"
        )
    by_number: Dict[int, Path] = {}
    for path in files:
        number = int(path.stem)
        if number in by_number:
            raise VideoError(f"{folder}: frame {number} appears twice: {by_number[number].name} and {path.name}")
        by_number[number] = path
    numbers = range(min(by_number), max(by_number) + 1)
    missing = [number for number in numbers if number not in by_number]
    if missing:
        raise VideoError(
            f"{folder}: frame {missing[0]} is missing ({len(missing)} missing in all); "
            f"frames must be numbered without gaps, found {len(by_number)} from {numbers[0]} to {numbers[-1]}"
        )
    return [by_number[number] for number in numbers]


def _header_shape(path: Path) -> Tuple[int, int]:
    """(height, width) of a frame file, from its header."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError) as e:
        raise VideoError(f"{path}: cannot read this frame file: {e}") from e
    return height, width


def _common_shape(folder: Path, paths: List[Path]) -> Tuple[int, int]:
    """(height, width) of all frames, from the file headers; VideoError if they differ."""
    first = _header_shape(paths[0])
    for path in paths[1:]:
        shape = _header_shape(path)
        if shape != first:
            raise VideoError(
                f"{folder}: frames differ in size: {paths[0].name} is {_size_text(first)}, {path.name} is "
                f"{_size_text(shape)} (width x height); all frames of a video must have one size"
            )
    return first


class _VideoFileFrames:
    """A video file decoded once into resized frames, and again for original frames."""

    def __init__(self, path: Path, size: int):
        self.path = path
        self.size = size
        capture = self._open()
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps: Optional[float] = fps if fps > 0 else None
        self._resized: List[np.ndarray] = []
        shape: Optional[Tuple[int, ...]] = None
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if shape is None:
                shape = bgr.shape
            elif bgr.shape != shape:
                raise VideoError(
                    f"{path}: frame {len(self._resized)} is {_size_text(bgr.shape)} but frame 0 is "
                    f"{_size_text(shape)} (width x height); all frames of a video must have one size"
                )
            self._resized.append(_resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size))
        if shape is None:
            raise VideoError(f"{path}: the video has no frames (cv2 opened it but decoded none)")
        self.height, self.width = shape[:2]
        self.names = [f"{index:05d}" for index in range(len(self._resized))]
        self._capture = capture  # kept open for original()
        self._next = len(self._resized)  # index of the frame self._capture reads next

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise VideoError(
                f"{self.path}: cv2 cannot open this file as a video; expected a video file that OpenCV's "
                "FFmpeg backend decodes (.mp4, .avi, .mov, .mkv, ...) or a folder of frames"
            )
        return capture

    def resized(self, index: int) -> np.ndarray:
        return self._resized[index]

    def original(self, index: int) -> np.ndarray:
        if not 0 <= index - self._next <= MAX_READ_AHEAD:
            rgb = self._read_after_seek(index)
            if rgb is not None:
                return rgb
            self._capture, self._next = self._open(), 0
        return self._read_forward(index)

    def _read_after_seek(self, index: int) -> Optional[np.ndarray]:
        """Frame `index` read after seeking to it, or None when the seek did not reach it."""
        if not self._capture.set(cv2.CAP_PROP_POS_FRAMES, index):
            return None
        ok, bgr = self._capture.read()
        if not ok:
            return None
        self._next = index + 1
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return rgb if np.array_equal(_resize(rgb, self.size), self._resized[index]) else None

    def _read_forward(self, index: int) -> np.ndarray:
        """Frame `index` (>= self._next), reading forward."""
        while self._next <= index:
            if not self._capture.grab():
                raise self._lost(self._next)
            self._next += 1
        ok, bgr = self._capture.retrieve()
        if not ok:
            raise self._lost(index)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _lost(self, index: int) -> VideoError:
        return VideoError(f"{self.path}: cannot decode frame {index} again; was the file changed after loading?")


class _ArrayFrames:
    """Frames given as arrays, resized when accessed."""

    def __init__(self, frames: Sequence[np.ndarray], size: int):
        if isinstance(frames, np.ndarray) and frames.ndim != 4:
            raise VideoError(f"expected an NxHxWx3 uint8 array or a sequence of HxWx3 arrays, got shape {frames.shape}")
        if len(frames) == 0:
            raise VideoError("no frames: expected a non-empty sequence of HxWx3 uint8 RGB arrays")
        for index, frame in enumerate(frames):
            if not isinstance(frame, np.ndarray):
                raise VideoError(f"frame {index}: expected an HxWx3 uint8 RGB array, got {type(frame).__name__}")
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or 0 in frame.shape:
                raise VideoError(
                    f"frame {index}: expected an HxWx3 uint8 RGB array, got shape {frame.shape} dtype {frame.dtype}"
                )
            if frame.shape != frames[0].shape:
                raise VideoError(
                    f"frame {index} is {_size_text(frame.shape)} but frame 0 is {_size_text(frames[0].shape)} "
                    "(width x height); all frames of a video must have one size"
                )
        self.size = size
        self._frames = list(frames)
        self.height, self.width = self._frames[0].shape[:2]
        self.names = [f"{index:05d}" for index in range(len(self._frames))]
        self.fps: Optional[float] = None

    def resized(self, index: int) -> np.ndarray:
        return _resize(self._frames[index], self.size)

    def original(self, index: int) -> np.ndarray:
        return self._frames[index].copy()


class VideoFrames(collections.abc.Sequence):
    """Frames of one video for SAM 2; made by `load_video_frames`.

    frames[i]: 3xSxS float32 model input of frame i (S = image_size), normalised like Meta, on
    `device`; a cached tensor, not to be modified in place; i may be negative, as for lists.
    frames.original(i): HxWx3 uint8 RGB frame i at the original resolution (video_height x
    video_width), a new array. names[i]: frame i's file stem for folders, f"{i:05d}" otherwise;
    paths[i]: frame i's file for folders, else None.
    fps: the frame rate cv2 reports for video files, else None.
    """

    def __init__(self, source: _FrameSource, image_size: int, device: torch.device):
        self._source = source
        self.image_size = image_size
        self.device = device
        self.video_height: int = source.height
        self.video_width: int = source.width
        self.names: List[str] = source.names
        self.fps: Optional[float] = source.fps
        self.paths: List[Optional[Path]] = list(getattr(source, "paths", [None] * len(source.names)))
        self._mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=device)[:, None, None]
        self._std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=device)[:, None, None]
        self._cache: collections.OrderedDict[int, torch.Tensor] = collections.OrderedDict()
        self._reading: Dict[int, Future] = {}  # frame -> its resized pixels being read ahead
        self._reader: Optional[ThreadPoolExecutor] = None
        self._last = -1  # the frame last read

    def __len__(self) -> int:
        return len(self.names)

    def _index(self, index: int) -> int:
        position = operator.index(index)
        if not -len(self) <= position < len(self):
            raise IndexError(f"frame index {position} out of range for a video of {len(self)} frames")
        return position % len(self)

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        position = self._index(index)
        if position in self._cache:
            self._cache.move_to_end(position)
            return self._cache[position]
        pending = self._reading.pop(position, None)
        resized = pending.result() if pending is not None else self._source.resized(position)
        self._read_ahead(position)
        pixels = torch.from_numpy(resized).to(self.device).permute(2, 0, 1).contiguous()
        # float32 uint8/255 equals Meta's float64 uint8/255 rounded to float32, for all 256 values
        image = pixels.float() / 255.0
        image -= self._mean
        image /= self._std
        self._cache[position] = image
        if len(self._cache) > CACHED_FRAMES:
            self._cache.popitem(last=False)
        return image

    def original(self, index: int) -> np.ndarray:
        return self._source.original(self._index(index))

    def _read_ahead(self, position: int) -> None:
        """Start reading and resizing the next PREFETCH_FRAMES frames in the direction of travel
        (a background thread; the tracker goes on meanwhile); frames outside that window are
        forgotten."""
        step = -1 if position < self._last else 1
        self._last = position
        ahead = range(position + step, position + step * (PREFETCH_FRAMES + 1), step)
        window = [i for i in ahead if 0 <= i < len(self)]
        for stale in set(self._reading) - set(window):
            self._reading.pop(stale).cancel()
        if self._reader is None:
            self._reader = ThreadPoolExecutor(1, "video-frames")
            weakref.finalize(self, self._reader.shutdown, wait=False, cancel_futures=True)
        for i in window:
            if i not in self._reading and i not in self._cache:
                self._reading[i] = self._reader.submit(self._source.resized, i)


def load_video_frames(
    video_path: VideoInput,
    image_size: int,
    offload_video_to_cpu: bool = False,
    device: Union[str, torch.device] = "cpu",
) -> VideoFrames:
    """The frames of a folder of frame files, a video file or a sequence of HxWx3 uint8 RGB
    arrays (see the module docstring), as model inputs of image_size x image_size on `device`,
    or on the CPU when offload_video_to_cpu. Raises VideoError for a video that cannot be used."""
    source: _FrameSource
    if isinstance(video_path, (str, os.PathLike)):
        path = Path(video_path)
        if path.is_dir():
            source = _FolderFrames(path, image_size)
        elif path.exists():
            source = _VideoFileFrames(path, image_size)
        else:
            raise VideoError(
                f"{path}: no such file or folder; expected a folder of frames (00000.jpg, 00001.jpg, ...) "
                "or a video file"
            )
    elif isinstance(video_path, (np.ndarray, collections.abc.Sequence)) and not isinstance(video_path, bytes):
        source = _ArrayFrames(video_path, image_size)
    else:
        raise VideoError(
            f"unsupported video input type {type(video_path).__name__}; pass a folder of frames, "
            "a video file or a sequence of HxWx3 uint8 RGB arrays"
        )
    return VideoFrames(source, image_size, torch.device("cpu") if offload_video_to_cpu else torch.device(device))
