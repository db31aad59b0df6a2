"""load_video_frames: frame folders (parity with Meta's loader), video files, arrays, and errors."""

import threading
from pathlib import Path
from typing import Callable, List

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segmenter import video_io
from segmenter.video_io import CACHED_FRAMES, VideoError, VideoFrames, load_video_frames

from meta_reference import import_meta_sam2

HEIGHT, WIDTH, COUNT, FPS = 48, 64, 8, 10.0


def make_frames(count: int = COUNT, height: int = HEIGHT, width: int = WIDTH) -> List[np.ndarray]:
    """HxWx3 uint8 RGB frames: gradients, a square moving right and a disc moving left."""
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(count):
        frame = np.stack([(xx * 4) % 256, (yy * 5) % 256, np.full_like(xx, i * 30 % 256)], axis=2).astype(np.uint8)
        frame[10:26, 4 + 6 * i : 16 + 6 * i] = (255, 255, 0)
        frame[(xx - (width - 4 - 6 * i)) ** 2 + (yy - 34) ** 2 < 49] = (0, 0, 255)
        frames.append(frame)
    return frames


def write_folder(folder: Path, frames: List[np.ndarray], names: List[str]) -> Path:
    folder.mkdir()
    for frame, name in zip(frames, names):
        Image.fromarray(frame).save(folder / name)
    return folder


def write_video(path: Path, frames: List[np.ndarray], fourcc: str) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (width, height))
    assert writer.isOpened(), f"cv2 cannot write {path.suffix} with {fourcc} here"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def decode_with_cv2(path: Path) -> List[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


@pytest.fixture
def jpeg_folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "frames", make_frames(), [f"{i:05d}.jpg" for i in range(COUNT)])


def as_stack(frames: VideoFrames) -> torch.Tensor:
    return torch.stack(list(frames))


# ---------------------------------------------------------------- frame folders


def devices() -> List[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("image_size", [64, 100])
@pytest.mark.parametrize("device", devices())
def test_folder_equals_meta(jpeg_folder, image_size, device):
    import_meta_sam2()
    from sam2.utils.misc import load_video_frames as meta_load_video_frames

    offload = device == "cpu"
    expected, height, width = meta_load_video_frames(
        video_path=str(jpeg_folder),
        image_size=image_size,
        offload_video_to_cpu=offload,
        compute_device=torch.device(device),
    )
    frames = load_video_frames(jpeg_folder, image_size, offload_video_to_cpu=offload, device=device)
    assert (frames.video_height, frames.video_width) == (height, width) == (HEIGHT, WIDTH)
    assert len(frames) == COUNT and frames.fps is None
    assert frames.names == [f"{i:05d}" for i in range(COUNT)]
    out = as_stack(frames)
    assert out.device.type == device and out.dtype == torch.float32
    assert out.shape == (COUNT, 3, image_size, image_size)
    assert torch.equal(out, expected)
    for i in range(COUNT):
        with Image.open(jpeg_folder / f"{i:05d}.jpg") as image:
            np.testing.assert_array_equal(frames.original(i), np.asarray(image.convert("RGB")))


def test_folder_png_numbered_from_8_sorted_by_number(tmp_path):
    frames_in = make_frames()
    folder = write_folder(tmp_path / "frames", frames_in, [f"{8 + i}.png" for i in range(COUNT)])
    (folder / "notes.txt").write_text("not a frame")
    (folder / ".00020.jpg").write_bytes(b"macOS resource fork")
    (folder / "sub.jpg").mkdir()
    frames = load_video_frames(str(folder), 64)
    assert frames.names == [str(8 + i) for i in range(COUNT)]  # 8, 9, 10, ...: numeric, not lexicographic
    for i in range(COUNT):
        np.testing.assert_array_equal(frames.original(i), frames_in[i])  # PNG is lossless


def test_model_input_is_the_same_for_every_source(tmp_path):
    """Arrays and a lossless folder of the same frames give the same tensors; a video file gives
    the tensors of the frames cv2 decodes from it."""
    frames_in = make_frames()
    folder = write_folder(tmp_path / "frames", frames_in, [f"{i:05d}.png" for i in range(COUNT)])
    assert torch.equal(as_stack(load_video_frames(frames_in, 64)), as_stack(load_video_frames(folder, 64)))
    video = write_video(tmp_path / "clip.avi", frames_in, "MJPG")
    decoded = decode_with_cv2(video)
    assert torch.equal(as_stack(load_video_frames(video, 64)), as_stack(load_video_frames(decoded, 64)))


def test_float32_division_equals_metas_float64_division():
    """VideoFrames divides uint8 by 255 in float32; Meta in float64, then stores float32."""
    values = np.arange(256, dtype=np.uint8)
    expected = torch.from_numpy(values / 255.0).float()
    assert torch.equal(torch.from_numpy(values).float() / 255.0, expected)


# ---------------------------------------------------------------- video files


@pytest.mark.parametrize("name, fourcc", [("clip.avi", "MJPG"), ("clip.mp4", "mp4v")])
def test_video_file(tmp_path, name, fourcc):
    video = write_video(tmp_path / name, make_frames(), fourcc)
    decoded = decode_with_cv2(video)
    assert len(decoded) == COUNT
    frames = load_video_frames(video, 64, offload_video_to_cpu=True, device="cuda")
    assert frames.device == torch.device("cpu")
    assert (len(frames), frames.video_height, frames.video_width, frames.fps) == (COUNT, HEIGHT, WIDTH, FPS)
    assert frames.names == [f"{i:05d}" for i in range(COUNT)]
    assert frames[0].shape == (3, 64, 64) and frames[0].dtype == torch.float32
    for i in [*range(COUNT), 5, 2, 3, 7, 0, -1]:
        np.testing.assert_array_equal(frames.original(i), decoded[i], err_msg=f"frame {i}")


class Capture:
    """A cv2.VideoCapture to monkeypatch in, with its methods to override (subclassing
    cv2.VideoCapture crashes in garbage collection with cv2 5.0)."""

    opens = 0
    seeks = 0
    ignore_seeks = False

    def __init__(self, path: str):
        self.capture = REAL_CAPTURE(path)
        type(self).opens += 1

    def isOpened(self) -> bool:
        return self.capture.isOpened()

    def get(self, prop: int) -> float:
        return self.capture.get(prop)

    def read(self):
        return self.capture.read()

    def grab(self) -> bool:
        return self.capture.grab()

    def retrieve(self):
        return self.capture.retrieve()

    def set(self, prop: int, value: float) -> bool:
        if prop == cv2.CAP_PROP_POS_FRAMES:
            type(self).seeks += 1
            if self.ignore_seeks:
                return True
        return self.capture.set(prop, value)


REAL_CAPTURE = cv2.VideoCapture


@pytest.mark.parametrize("ignore_seeks, opens", [(False, 1), (True, 4)])  # opens: when loading, then fallbacks
def test_original_reads_forward_and_verifies_seeks(tmp_path, monkeypatch, ignore_seeks, opens):
    """In-order frames are read forward on the capture opened when loading; going backwards seeks,
    and a seek that lands on the wrong frame is caught and replaced by reading from the start."""
    video = write_video(tmp_path / "clip.avi", make_frames(), "MJPG")
    decoded = decode_with_cv2(video)
    capture = type("SeekCapture", (Capture,), {"ignore_seeks": ignore_seeks})
    monkeypatch.setattr(video_io.cv2, "VideoCapture", capture)
    frames = load_video_frames(video, 64)
    order = [0, 1, 2, 3, 4, 5, 6, 7, 5, 2, 3]  # seeks: to 0 (capture is at the end), to 5, to 2
    for i in order:
        np.testing.assert_array_equal(frames.original(i), decoded[i], err_msg=f"frame {i}")
    # ignoring seeks: 0 and 5 fail to read at the end of the file, 2 reads frame 6 and is rejected
    assert (capture.opens, capture.seeks) == (opens, 3)


def test_frame_sizes_checked_while_decoding(tmp_path, monkeypatch):
    class ShrinkingCapture(Capture):
        frame = 0

        def read(self):
            ok, bgr = self.capture.read()
            self.frame += 1
            return (ok, bgr[::2, ::2].copy()) if ok and self.frame == 4 else (ok, bgr)

    monkeypatch.setattr(video_io.cv2, "VideoCapture", ShrinkingCapture)
    video = write_video(tmp_path / "clip.avi", make_frames(), "MJPG")
    with pytest.raises(VideoError, match=f"{video}: frame 3 is 32x24 but frame 0 is 64x48"):
        load_video_frames(video, 64)


def test_video_file_unreadable_after_loading(tmp_path, monkeypatch):
    class BrokenCapture(Capture):
        def set(self, prop, value):
            return False

        def grab(self):
            return False

    monkeypatch.setattr(video_io.cv2, "VideoCapture", BrokenCapture)
    video = write_video(tmp_path / "clip.avi", make_frames(), "MJPG")
    frames = load_video_frames(video, 64)
    with pytest.raises(VideoError, match=f"{video}: cannot decode frame 0 again; was the file changed"):
        frames.original(3)


# ---------------------------------------------------------------- arrays, indexing, cache, device


def test_arrays():
    frames_in = make_frames()
    for source in (frames_in, tuple(frames_in), np.stack(frames_in)):
        frames = load_video_frames(source, 32)
        assert (len(frames), frames.video_height, frames.video_width, frames.fps) == (COUNT, HEIGHT, WIDTH, None)
        assert frames.names == [f"{i:05d}" for i in range(COUNT)]
        original = frames.original(3)
        np.testing.assert_array_equal(original, frames_in[3])
        original[:] = 0  # a copy: the frames are unchanged
        np.testing.assert_array_equal(frames.original(3), frames_in[3])


def test_indexing_and_cache(jpeg_folder):
    frames = load_video_frames(jpeg_folder, 64)
    first = frames[0]
    assert frames[0] is first and frames[-COUNT] is first
    assert torch.equal(frames[-1], frames[COUNT - 1])
    for i in range(1, CACHED_FRAMES + 1):
        frames[i]
    assert frames[0] is not first and torch.equal(frames[0], first)  # dropped from the cache, read again
    assert len(list(frames)) == COUNT
    for bad in (COUNT, -COUNT - 1):
        with pytest.raises(IndexError, match=f"frame index {bad} out of range for a video of {COUNT} frames"):
            frames[bad]
        with pytest.raises(IndexError):
            frames.original(bad)
    with pytest.raises(TypeError):
        frames[1:3]


@pytest.mark.parametrize("order", ["forward", "backward", "jumping"])
def test_frames_read_ahead_in_the_background_are_the_frames(jpeg_folder, monkeypatch, order):
    visits = {"forward": list(range(COUNT)), "backward": list(range(COUNT))[::-1],
              "jumping": [0, 1, COUNT - 1, 2, 3, 1]}[order]
    frames = load_video_frames(jpeg_folder, 64)
    reads = []
    resized = frames._source.resized
    monkeypatch.setattr(frames._source, "resized", lambda i: reads.append((i, threading.current_thread().name))
                        or resized(i))
    got = [frames[i].clone() for i in visits]
    monkeypatch.setattr(video_io, "PREFETCH_FRAMES", 0)
    plain = load_video_frames(jpeg_folder, 64)
    for i, tensor in zip(visits, got):
        assert torch.equal(tensor, plain[i])
    background = {i for i, thread in reads if thread != threading.main_thread().name}
    if order == "forward":
        assert background == set(range(1, COUNT)), "every frame after the first was read ahead"
    if order == "backward":
        # the direction is known from the second frame visited on
        assert background == set(range(COUNT - 2)), "going backwards, the frames before are read ahead"


DEVICE_CASES = [(False, "cpu", "cpu"), (True, "cpu", "cpu"), (True, "meta", "cpu"), (False, "meta", "meta")]


@pytest.mark.parametrize("offload, device, expected", DEVICE_CASES)
def test_device(jpeg_folder, offload, device, expected):
    frames = load_video_frames(jpeg_folder, 64, offload_video_to_cpu=offload, device=device)
    assert frames.device == torch.device(expected)
    assert frames[2].device == torch.device(expected)


# ---------------------------------------------------------------- errors


def folder_of(names: List[str], sizes=None) -> Callable[[Path], Path]:
    """A builder of a folder holding frames with these file names (and these (height, width))."""

    def build(tmp_path: Path) -> Path:
        shapes = sizes or [(HEIGHT, WIDTH)] * len(names)
        frames = [make_frames(1, h, w)[0] for h, w in shapes]
        return write_folder(tmp_path / "frames", frames, names)

    return build


def junk_frame(tmp_path: Path) -> Path:
    folder = folder_of(["00000.jpg", "00001.jpg"])(tmp_path)
    (folder / "00001.jpg").write_bytes(b"not an image")
    return folder


def zero_frame_video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT)).release()
    return path


def notes_only(tmp_path: Path) -> Path:
    folder = write_folder(tmp_path / "frames", [], [])
    (folder / "notes.txt").write_text("not a frame")
    return folder


def text_file(name: str, text: str) -> Callable[[Path], Path]:
    def build(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return build


PATH_ERRORS = [  # (id, builder of the input from tmp_path, fragment of the message after the path)
    ("missing-path", lambda tmp: tmp / "nowhere", "nowhere: no such file or folder; expected a folder of frames"),
    (
        "empty-folder",
        lambda tmp: write_folder(tmp / "frames", [], []),
        "frames: no frames found; expected .jpg, .jpeg, .png files named by frame number",
    ),
    ("no-frame-files", notes_only, "frames: no frames found"),
    (
        "not-numbered",
        folder_of(["00000.jpg", "frame_a.jpg", "b.png"]),
        "named by their frame number (00000.jpg, 00001.jpg, ...); not named so: b.png, frame_a.jpg",
    ),
    ("negative-number", folder_of(["-1.jpg", "0.jpg"]), "not named so: -1.jpg"),
    (
        "many-not-numbered",
        folder_of(["a.jpg", "b.jpg", "c.jpg", "d.jpg"]),
        "not named so: a.jpg, b.jpg, c.jpg, ... (4 in all)",
    ),
    (
        "gap",
        folder_of(["00000.jpg", "00001.jpg", "00003.jpg"]),
        "frames: frame 2 is missing (1 missing in all); frames must be numbered without gaps, found 3 from 0 to 3",
    ),
    ("two-gaps", folder_of(["5.jpg", "8.jpg"]), "frame 6 is missing (2 missing in all)"),
    (
        "duplicate-number",
        folder_of(["00001.jpg", "1.png", "00000.jpg"]),
        "frames: frame 1 appears twice: 00001.jpg and 1.png",
    ),
    (
        "sizes-differ",
        folder_of(["00000.jpg", "00001.jpg", "00002.jpg"], [(48, 64), (48, 64), (24, 32)]),
        "frames: frames differ in size: 00000.jpg is 64x48, 00002.jpg is 32x24 (width x height)",
    ),
    ("junk-frame-file", junk_frame, "frames/00001.jpg: cannot read this frame file: cannot identify image file"),
    (
        "text-as-video",
        text_file("clip.mp4", "not a video"),
        "clip.mp4: cv2 cannot open this file as a video; expected a video file",
    ),
    ("empty-video-file", text_file("clip.avi", ""), "clip.avi: cv2 cannot open this file as a video"),
    ("video-without-frames", zero_frame_video, "clip.avi: the video has no frames (cv2 opened it but decoded none)"),
]


@pytest.mark.parametrize("build, fragment", [c[1:] for c in PATH_ERRORS], ids=[c[0] for c in PATH_ERRORS])
def test_path_errors(tmp_path, build, fragment):
    path = build(tmp_path)
    with pytest.raises(VideoError) as error:
        load_video_frames(path, 64)
    message = str(error.value)
    assert message.startswith(str(tmp_path)) and fragment in message, message


def test_corrupt_frame_file_raises_when_read(jpeg_folder):
    path = jpeg_folder / "00003.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header is intact: loading succeeds
    frames = load_video_frames(jpeg_folder, 64)
    frames[2]
    for read in (frames.__getitem__, frames.original):
        with pytest.raises(VideoError, match=f"{path}: cannot read frame 3: image file is truncated"):
            read(3)


FRAME = make_frames(1)[0]
ARRAY_ERRORS = [  # (id, input, fragment of the message)
    ("empty-list", [], "no frames: expected a non-empty sequence of HxWx3 uint8 RGB arrays"),
    ("one-HxWx3-array", FRAME, "expected an NxHxWx3 uint8 array or a sequence of HxWx3 arrays, got shape (48, 64"),
    ("float-frame", [FRAME, FRAME / 2], "frame 1: expected an HxWx3 uint8 RGB array, got shape (48, 64, 3) dtype f"),
    ("gray-frame", [FRAME[:, :, 0]], "frame 0: expected an HxWx3 uint8 RGB array, got shape (48, 64) dtype uint8"),
    ("rgba-frame", [np.dstack([FRAME, FRAME[:, :, :1]])], "got shape (48, 64, 4) dtype uint8"),
    ("no-pixels", [FRAME[:0]], "got shape (0, 64, 3) dtype uint8"),
    ("not-an-array", [FRAME, Image.fromarray(FRAME)], "frame 1: expected an HxWx3 uint8 RGB array, got Image"),
    ("sizes-differ", [FRAME, FRAME[::2, ::2]], "frame 1 is 32x24 but frame 0 is 64x48 (width x height)"),
    ("bytes", b"clip.mp4", "unsupported video input type bytes; pass a folder of frames, a video file or a sequence"),
    ("int", 3, "unsupported video input type int"),
]


@pytest.mark.parametrize("frames, fragment", [c[1:] for c in ARRAY_ERRORS], ids=[c[0] for c in ARRAY_ERRORS])
def test_array_errors(frames, fragment):
    with pytest.raises(VideoError) as error:
        load_video_frames(frames, 64)
    assert fragment in str(error.value), str(error.value)
