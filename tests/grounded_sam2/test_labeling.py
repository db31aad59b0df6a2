"""Labeling folders into datasets: inputs of every kind, YOLO and COCO output checked with
their readers, resume after kill -9, refusals, and the grounded-sam2 command."""

import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from grounded_sam2 import GroundedSAM2, labeling
from grounded_sam2.datasets.sources import SourceImage, find_images
from grounded_sam2.datasets.writer import DatasetConfig, DatasetError, DatasetWriter, ImageResult
from grounded_sam2.detections import empty_detections, make_detections, masks_to_xyxy
from grounded_sam2.errors import InputNotFoundError, SettingsError
from grounded_sam2.grounding import GROUNDERS
from grounded_sam2.labeling import (
    CPU_BATCH_SIZE,
    DEFAULT_BATCH_SIZE,
    LARGE_GPU_BATCH_SIZE,
    STOP_AFTER_SAME_FAILURES,
    batch_groups,
    default_batch_size,
    input_images,
    label_groups,
    label_images,
    resolve_batch_size,
)

from dataset_files import normalized_dataset
from florence_script import ScriptedAnswers
from meta_reference import has_ultralytics, reference_env

ROOT = Path(__file__).resolve().parents[2]
ONTOLOGY = {"dog": "dog", "red car": "car", "blue car": "car"}
ANSWER = "dog<loc_100><loc_100><loc_600><loc_700>red car<loc_500><loc_400><loc_950><loc_900>"


def picture(h, w, seed):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = rng.integers(0, 255, 3)
    img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = rng.integers(0, 255, 3)
    return img


def make_inputs(folder: Path) -> dict:
    """Good images of many kinds and bad files; returns {relative path: reason or None}."""
    folder.mkdir(parents=True)
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    cv2.imwrite(str(folder / "a" / "img.jpg"), picture(60, 80, 1))
    cv2.imwrite(str(folder / "b" / "img.JPG"), picture(50, 70, 2))  # same basename, upper-case extension
    Image.fromarray(picture(40, 40, 3)[:, :, 0]).save(folder / "gray.png")
    Image.fromarray(np.dstack([picture(30, 50, 4), np.full((30, 50), 128, np.uint8)])).save(folder / "rgba.png")
    Image.fromarray(picture(40, 30, 5)[:, :, 0].astype(np.uint16) * 257).save(folder / "sixteen.png")
    Image.fromarray(picture(1, 1, 6)).save(folder / "tiny.bmp")
    Image.fromarray(picture(48, 64, 7)).convert("CMYK").save(folder / "cmyk.jpg")
    rotated = Image.fromarray(picture(40, 60, 8))
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(folder / "rotated.jpg", exif=exif)
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image")
    good = (folder / "a" / "img.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "notes.txt").write_text("ignored: not an image extension")
    return {"empty.png": "empty file", "text.jpg": "cannot", "truncated.jpg": ""}


def tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def model(tiny_florence, small_sam2):
    m = GroundedSAM2(ONTOLOGY, florence=str(tiny_florence), sam2=small_sam2, device="cpu")
    m.grounder.logits_processor = [ScriptedAnswers(m.grounder.processor.tokenizer, [ANSWER] * 50)]
    return m


def test_yolo_dataset(model, tmp_path):
    bad = make_inputs(tmp_path / "in")
    before = tree_digest(tmp_path / "in")
    summary = model.label(tmp_path / "in", output_folder=tmp_path / "out", progress=False)
    out = tmp_path / "out"
    assert tree_digest(tmp_path / "in") == before, "the input folder must never be written to"
    assert summary.images == 11 and summary.labeled == 8 and len(summary.skipped) == 3
    assert summary.ignored == 1 and "11 found (1 other files ignored)" in str(summary)  # notes.txt
    assert sorted(p.name for p, _ in summary.skipped) == sorted(bad)
    report = (out / "skipped.txt").read_text()
    assert all(name in report for name in bad) and "empty file" in report
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["train"] == "train/images" and data["val"] == "valid/images" and "test" not in data
    assert "path" not in data and data["names"] == {0: "dog", 1: "car"} and data["nc"] == 2
    labels = sorted(out.glob("*/labels/*.txt"))
    images = sorted(out.glob("*/images/*"))
    assert {p.stem for p in labels} == {p.stem for p in images} == {
        "a__img", "b__img", "gray", "rgba", "sixteen", "tiny", "cmyk", "rotated"}
    assert (out / "train" / "images").is_dir() and (out / "valid" / "images").is_dir()
    rows = [line.split() for p in labels for line in p.read_text().splitlines()]
    assert rows and all(len(r) >= 7 and len(r) % 2 == 1 and r[0] in ("0", "1") for r in rows)
    assert all(0.0 <= float(v) <= 1.0 for r in rows for v in r[1:])
    assert summary.objects_per_class == {"dog": sum(r[0] == "0" for r in rows), "car": sum(r[0] == "1" for r in rows)}
    # the EXIF-rotated image is stored upright, as labeled; others are byte copies
    rotated = next(out.glob("*/images/rotated.*"))
    assert rotated.suffix == ".png" and cv2.imread(str(rotated)).shape[:2] == (60, 40)
    assert next(out.glob("*/images/a__img.jpg")).read_bytes() == (tmp_path / "in" / "a" / "img.jpg").read_bytes()


def test_coco_dataset_decodes_to_the_predicted_masks(model, tmp_path):
    from pycocotools.coco import COCO

    (tmp_path / "in").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "in" / f"{i}.png"), picture(50 + 10 * i, 80, i))
    summary = model.label(tmp_path / "in", output_folder=tmp_path / "out", format="coco", split=(0.5, 0.25, 0.25),
                          progress=False)
    total = 0
    for split in ("train", "valid", "test"):
        coco = COCO(str(tmp_path / "out" / split / "_annotations.coco.json"))
        assert [c["id"] for c in coco.loadCats(coco.getCatIds())] == [1, 2]
        for image in coco.loadImgs(coco.getImgIds()):
            path = tmp_path / "in" / image["file_name"]
            reference = GroundedSAM2.predict(model, str(path))
            reference = reference[reference.mask.any(axis=(1, 2))]  # empty masks are not written
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
            assert len(anns) == len(reference)
            for ann, mask, cls in zip(anns, reference.mask, reference.class_id):
                assert ann["iscrowd"] == 0 and ann["category_id"] == cls + 1
                np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), mask)
                assert ann["area"] == int(mask.sum())
            total += len(anns)
    assert total == sum(summary.objects_per_class.values()) > 0


def test_refusals(model, tiny_florence, small_sam2, tmp_path):
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "x.png"), picture(20, 20, 0))
    with pytest.raises(ValueError, match="inside the input folder"):
        model.label(tmp_path / "in", output_folder=tmp_path / "in" / "out", progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        model.label(tmp_path / "in", output_folder=tmp_path / "busy", progress=False)
    model.label(tmp_path / "in", output_folder=tmp_path / "out", progress=False)
    with pytest.raises(DatasetError, match="other settings.*format"):
        model.label(tmp_path / "in", output_folder=tmp_path / "out", format="coco", progress=False)
    other = GroundedSAM2({"cat": "cat"}, florence=str(tiny_florence), sam2=small_sam2, device="cpu")
    with pytest.raises(DatasetError, match=r"pipeline\.ontology: \[\['dog', 'dog'\].* -> \[\['cat', 'cat'\]\]"):
        other.label(tmp_path / "in", output_folder=tmp_path / "out", progress=False)


# --- the command line, with models on disk -------------------------------------------------------


CLI = [sys.executable, "-m", "grounded_sam2.cli"]
CLI_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def cli(*args):
    return subprocess.run([*CLI, *map(str, args)], cwd=ROOT, env=CLI_ENV, capture_output=True, text=True)


def in_process(capsys, *args):
    """The command run in this process (for its errors: no start-up cost): (exit code, stderr)."""
    from grounded_sam2.cli import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_cli_help_and_errors(capsys, tmp_path):
    with pytest.raises(SystemExit):
        in_process(capsys, "label", "--help")
    assert "Exit codes" in capsys.readouterr().out
    (tmp_path / "in").mkdir()
    code, err = in_process(capsys, "label", tmp_path / "in", "-o", tmp_path / "out", "--ontology", "{}")
    assert code == 2 and "empty" in err  # the ontology first, then the input
    code, err = in_process(capsys, "label", tmp_path / "in", "-o", tmp_path / "out", "--ontology", "example")
    assert code == 2 and "no images found in" in err  # ... then the models
    cv2.imwrite(str(tmp_path / "in" / "a.png"), picture(20, 30, 0))
    code, err = in_process(capsys, "label", tmp_path / "in", "-o", tmp_path / "out", "--ontology", "example",
                           "--florence", tmp_path / "none")
    assert code == 2 and f"Florence-2: folder not found: {tmp_path / 'none'}" in err
    # the defaults, offline: both models in one message, with the commands that get them, at once
    code, err = in_process(capsys, "label", tmp_path / "in", "-o", tmp_path / "out", "--ontology", "example")
    assert code == 2 and "Retrying" not in err
    assert "`hf download florence-community/Florence-2-large`" in err
    assert "`hf download facebook/sam2.1-hiera-large sam2.1_hiera_large.pt`" in err
    assert not (tmp_path / "out").exists()


def test_an_empty_input_folder_is_an_error_before_anything_is_created(model, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    with pytest.raises(InputNotFoundError, match="no images found in .*1 other files ignored: only .jpg"):
        model.label(tmp_path / "in", output_folder=tmp_path / "out", progress=False)
    with pytest.raises(SettingsError, match="batch_size must be a whole number of at least 1, got 0"):
        model.label(tmp_path / "in", output_folder=tmp_path / "out", batch_size=0, progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_label_with_skipped_input(tiny_models, tmp_path):
    florence, sam2 = tiny_models
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "good.png"), picture(40, 50, 1))
    (tmp_path / "in" / "bad.jpg").write_text("no")
    result = cli("label", tmp_path / "in", "-o", tmp_path / "out", "--ontology", "example", "--florence", florence,
                 "--sam2", sam2, "--device", "cpu", "--no-progress")
    assert result.returncode == 1, result.stderr
    assert ("1 labeled now" in result.stdout and "1 skipped" in result.stdout
            and "objects per class: dog 1" in result.stdout)
    assert (tmp_path / "out" / "data.yaml").is_file()
    assert "Loading weights" not in result.stderr, "--no-progress silences the model loading bars too"
    (tmp_path / "empty_in").mkdir()
    empty = cli("label", tmp_path / "empty_in", "-o", tmp_path / "out2", "--ontology", "example",
                "--florence", florence, "--sam2", sam2, "--no-progress")
    assert empty.returncode == 2 and "no images found in" in empty.stderr and not (tmp_path / "out2").exists()


def test_kill_and_resume_gives_the_uninterrupted_dataset(tiny_models, tmp_path):
    """kill -9 at any moment, batches of 2 (so the kill may fall inside a batch), then the same
    command: the dataset of an uninterrupted run, to the byte."""
    florence, sam2 = tiny_models
    (tmp_path / "in").mkdir()
    for i in range(5):
        cv2.imwrite(str(tmp_path / "in" / f"{i}.png"), picture(40 + i, 50, i))
    args = ["label", tmp_path / "in", "--ontology", "example", "--florence", florence, "--sam2", sam2,
            "--device", "cpu", "--batch-size", "2", "--no-progress", "--format", "coco"]
    assert cli(*args, "-o", tmp_path / "full").returncode == 0

    process = subprocess.Popen([*CLI, *map(str, args), "-o", str(tmp_path / "cut")],
                               cwd=ROOT, env=CLI_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list((tmp_path / "cut").glob(".work/*.json"))) < 1 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = len(list((tmp_path / "cut").glob(".work/*.json")))
    assert 1 <= done < 5, "the run was not cut in the middle"
    resumed = cli(*args, "-o", tmp_path / "cut")
    assert resumed.returncode == 0 and f"{done} already done" in resumed.stdout
    leftovers = [p for p in (tmp_path / "cut").rglob("*.tmp")]
    assert not leftovers
    assert normalized_dataset(tmp_path / "cut") == normalized_dataset(tmp_path / "full")
    annotations = sum(len(json.loads(p.read_text())["annotations"])
                      for p in (tmp_path / "full").glob("*/_annotations.coco.json"))
    assert annotations == 5, "the tiny Florence-2 finds one dog per image: the compared datasets are not empty"


# --- the per-image step and the loop, with a stand-in predict function ---------------------------

def no_objects(arrays, sources):
    return [empty_detections(*a.shape[:2]) for a in arrays]


def write_pictures(folder: Path, widths) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    for i, w in enumerate(widths):
        cv2.imwrite(str(folder / f"{i:02d}.png"), picture(20, w, i))
    return find_images(folder)


def handed(groups):
    """``label_groups``' next_group over a fixed list of groups, numbered in order."""
    numbered = iter(enumerate(groups))
    return lambda wait: next(numbered, None)


def writer_for(folder: Path, create: bool = True) -> DatasetWriter:
    return DatasetWriter(folder, DatasetConfig(), ("dog",), {"pipeline": "test"}, create=create)


def test_load_image_gives_the_pixels_or_the_reason_and_writes_nothing(tmp_path):
    write_pictures(tmp_path / "in", [30, 40])
    (tmp_path / "in" / "03.png").write_bytes(b"broken")
    sources = find_images(tmp_path / "in")
    before = tree_digest(tmp_path)
    results = [labeling.load_image(source) for source in sources]
    assert tree_digest(tmp_path) == before
    assert [r.source for r in results] == sources
    assert [r.rgb.shape[1] if r.rgb is not None else None for r in results] == [30, 40, None]
    assert "cannot read image" in results[2].skip_reason and results[2].error is None


def test_a_failing_batch_is_predicted_image_by_image(tmp_path):
    sources = write_pictures(tmp_path / "in", [30, 33, 40])
    calls, seen = [], []

    def predict(arrays, sources):
        calls.append(len(arrays))
        if any(a.shape[1] == 33 for a in arrays):
            raise ValueError("this image breaks the model")
        return no_objects(arrays, sources)

    label_groups(handed([sources]), writer_for(tmp_path / "out"), predict,
                 lambda group, results, splits: seen.extend(results), lambda group, results, wrote: None)
    assert calls == [3, 1, 1, 1]
    assert [r.skip_reason for r in seen] == [None, "labeling failed: ValueError: this image breaks the model", None]
    assert isinstance(seen[1].error, ValueError)


def test_the_same_failure_again_and_again_stops_the_run(tmp_path):
    sources = write_pictures(tmp_path / "in", [30] * 8)

    def broken(arrays, sources):
        return [1 / 0 for _ in arrays]

    with pytest.raises(ZeroDivisionError) as raised:
        label_images(sources, writer_for(tmp_path / "out"), broken, batch_size=2, progress=False)
    if hasattr(raised.value, "__notes__"):
        assert f"{STOP_AFTER_SAME_FAILURES} images in a row failed" in raised.value.__notes__[0]
    recorded = sorted(p.stem for p in (tmp_path / "out" / ".work" / "skipped").iterdir())
    assert STOP_AFTER_SAME_FAILURES == 3, "the third failure is in group 1 (images 2 and 3)"
    assert recorded == [s.name for s in sources[:4]], "skips are on disk as they happen, up to the whole last group"


def test_failures_that_differ_or_are_interrupted_by_successes_do_not_stop(tmp_path):
    sources = write_pictures(tmp_path / "in", [30, 31, 32, 33, 34, 35, 36, 37])

    def flaky(arrays, sources):
        width = arrays[0].shape[1]
        if width % 4 == 1:
            raise ValueError("one way")
        if width % 4 == 3:
            raise KeyError("another way")
        return no_objects(arrays, sources)

    summary = label_images(sources, writer_for(tmp_path / "out"), flaky, batch_size=1, progress=False)
    assert summary.labeled == 4 and len(summary.skipped) == 4
    report = (tmp_path / "out" / "skipped.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in report] == [str(s.path) for s in sources if int(s.name) % 2]


def test_an_input_that_fails_once_and_then_works_leaves_no_skip_record(tmp_path):
    sources = write_pictures(tmp_path / "in", [30, 40])
    writer = writer_for(tmp_path / "out")
    writer.commit(ImageResult(sources[0], skip_reason="out of memory"))
    assert (tmp_path / "out" / ".work" / "skipped" / "00.txt").read_text() == f"{sources[0].path}\tout of memory\n"
    summary = label_images(sources, writer_for(tmp_path / "out"), no_objects, progress=False)
    assert summary.labeled == 2 and (tmp_path / "out" / "skipped.txt").read_text() == ""


@pytest.mark.parametrize("dataset_format", ["yolo", "yolo-det"])
def test_yolo_scores_are_the_confidences_of_the_rows_written(tmp_path, dataset_format):
    """One score line per label row, in row order; an object that gives no row (an empty mask: no
    polygon, no box area) gives no score either."""
    source = write_pictures(tmp_path / "in", [40])[0]
    masks = np.zeros((3, 20, 40), bool)
    masks[0, 2:8, 3:9] = True
    masks[2, 10:18, 20:35] = True  # masks[1] is empty: no polygon
    d = make_detections(masks, [0, 0, 0], ["dog"] * 3, ["dog"] * 3, [0.9, 0.8, 0.7], [1.0, 1.0, 0.123456])
    writer = DatasetWriter(tmp_path / "out", DatasetConfig(format=dataset_format, split=(1.0, 0.0, 0.0)), ("dog",),
                           {"pipeline": "test"})
    writer.commit(ImageResult(source, rgb=picture(20, 40, 0), detections=d))
    rows = (tmp_path / "out" / "train" / "labels" / "00.txt").read_text().splitlines()
    scores = (tmp_path / "out" / "train" / "scores" / "00.txt").read_text().splitlines()
    assert len(rows) == 2 and scores == ["0.9", "0.0864"]


def test_a_resume_with_other_settings_names_only_the_differing_keys(tmp_path):
    DatasetWriter(tmp_path, DatasetConfig(), ("dog",), {"pipeline": {"grounder": {"num_beams": 1, "strategy": "a"}}})
    with pytest.raises(DatasetError) as raised:
        DatasetWriter(tmp_path, DatasetConfig(seed=3), ("dog",),
                      {"pipeline": {"grounder": {"num_beams": 2, "strategy": "a"}}})
    message = str(raised.value)
    assert "dataset.seed: 0 -> 3; pipeline.grounder.num_beams: 1 -> 2." in message
    assert "strategy" not in message and message.count("->") == 2


def _open_writer(args):
    folder, barrier = args
    barrier.wait()
    writer_for(folder)
    return "ok"


def test_many_writers_opening_one_new_dataset_at_once_do_not_race(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for attempt in range(2):
        folder = tmp_path / f"out{attempt}"
        barrier = context.Manager().Barrier(6)
        with context.Pool(6) as pool:
            assert pool.map(_open_writer, [(folder, barrier)] * 6) == ["ok"] * 6
        assert [p.name for p in folder.iterdir()] == ["manifest.json"]


def test_a_writer_opening_while_another_creates_the_manifest_does_not_fail(tmp_path):
    """The two moments of a race, made to happen: another writer's manifest is half-way (its
    temporary file exists), or it appears between this writer's check and its own creation."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / ".manifest.json.abc123.tmp").write_text("{")  # another writer, half-way
    writer_for(folder)
    assert json.loads((folder / "manifest.json").read_text())["classes"] == ["dog"]

    other = tmp_path / "other"
    theirs = writer_for(tmp_path / "theirs").manifest
    link = os.link

    def created_first(source, target):  # another process links its manifest just before this one
        Path(target).write_text(json.dumps(theirs))
        return link(source, target)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "link", created_first)
        writer_for(other)
    assert json.loads((other / "manifest.json").read_text()) == theirs
    assert [p.name for p in other.iterdir()] == ["manifest.json"]


def test_a_worker_never_creates_the_dataset(tmp_path):
    with pytest.raises(DatasetError, match="holds no manifest.json"):
        writer_for(tmp_path / "new", create=False)
    assert not (tmp_path / "new" / "manifest.json").exists()
    writer_for(tmp_path / "new")
    writer_for(tmp_path / "new", create=False)  # opens what the parent created


# --- every grounding backend, end to end ----------------------------------------------------------

SHARED = {"dog": "dog", "puppy": "dog", "red car": "car"}  # two prompts share a class


@pytest.mark.parametrize("backend", list(GROUNDERS))
def test_every_grounding_backend_labels_a_folder_and_a_video(backend, tiny_grounder, tiny_florence, small_sam2,
                                                             tmp_path):
    checkpoint = tiny_florence if backend == "florence2" else tiny_grounder(backend)
    model = GroundedSAM2(SHARED, grounder=f"{backend}:{checkpoint}", sam2=small_sam2, device="cpu")
    sources = write_pictures(tmp_path / "in", [64, 80])
    summary = model.label(tmp_path / "in", output_folder=tmp_path / "out", progress=False)
    assert summary.labeled == 2 and not summary.skipped and sum(summary.objects_per_class.values()) > 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["pipeline"]["grounder"]["backend"] == backend
    assert manifest["pipeline"]["grounder"]["checkpoint"] == str(checkpoint.resolve())
    labels = {p.stem for p in (tmp_path / "out").glob("*/labels/*.txt")}
    assert labels == {s.name for s in sources}
    frames = [picture(40, 64, seed) for seed in range(3)]
    video = model.label_video(frames, tmp_path / "video", every=2, progress=False)
    assert video.frames == 3 and (tmp_path / "video" / "video.json").is_file()


def test_cli_make_tiny_models_then_label_with_another_grounder(tmp_path, capsys):
    from grounded_sam2.cli import main

    assert main(["make-tiny-models", str(tmp_path / "tiny")]) == 0
    specs = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("--grounder")]
    assert specs == [f"{name}:{tmp_path / 'tiny' / name}" for name in GROUNDERS]
    write_pictures(tmp_path / "in", [50, 60])
    common = ["--ontology", "example", "--sam2", tmp_path / "tiny" / "sam2.pt", "--device", "cpu", "--no-progress"]
    result = cli("label", tmp_path / "in", "-o", tmp_path / "out", "--grounder", specs[-1], "--box-threshold", "0.5",
                 *common)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["pipeline"]["grounder"]["box_threshold"] == 0.5
    code, err = in_process(capsys, "label", tmp_path / "in", "-o", tmp_path / "out2", "--box-threshold", "0.5", *common)
    assert code == 2 and "the florence2 grounder has no option box_threshold" in err
    assert not (tmp_path / "out2").exists(), "options are checked before anything is created"


MOVED_DATASET_CHECK = """
import sys
from ultralytics.data.utils import check_det_dataset
data = check_det_dataset(sys.argv[1], autodownload=False)
print(data["path"], data["train"], data["val"])
"""


def test_a_moved_yolo_dataset_still_works_in_ultralytics(tmp_path):
    """ultralytics' own dataset check, run from another folder, on a dataset moved after labeling
    (the original deleted): every folder resolves inside the moved copy."""
    import shutil

    if not has_ultralytics():
        pytest.skip("ultralytics is not installed")
    sources = write_pictures(tmp_path / "in", [30, 40, 50, 60])
    label_images(sources, writer_for(tmp_path / "out"), no_objects, progress=False)
    moved = shutil.move(str(tmp_path / "out"), str(tmp_path / "elsewhere" / "moved"))
    (tmp_path / "cwd").mkdir()
    env = reference_env({**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics-config"), "YOLO_OFFLINE": "1"})
    run = subprocess.run([sys.executable, "-c", MOVED_DATASET_CHECK, str(Path(moved) / "data.yaml")],
                         cwd=tmp_path / "cwd", env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    root, train, val = run.stdout.split()[-3:]
    assert (root, train, val) == (moved, f"{moved}/train/images", f"{moved}/valid/images")


# --- a dataset is a function of its inputs and its configuration --------------------------------


def test_batch_groups_are_fixed_by_position():
    images = [SourceImage(None, f"{i}") for i in range(8)]
    assert [[i.name for i in g] for g in batch_groups(images, 3)] == [["0", "1", "2"], ["3", "4", "5"], ["6", "7"]]


def test_a_run_interrupted_inside_a_batch_resumes_to_the_uninterrupted_dataset(model, tmp_path, monkeypatch):
    """The resumed run predicts the unfinished group whole, in the company an uninterrupted run
    gives each image, and writes only what is missing: the datasets are equal to the byte."""
    write_pictures(tmp_path / "in", [40 + 4 * i for i in range(8)])
    model.label(tmp_path / "in", output_folder=tmp_path / "whole", format="coco", batch_size=3, progress=False)

    commit, names = DatasetWriter.commit, [image.name for image in input_images(tmp_path / "in")]

    def interrupted(self, result):  # the process dies with group 0 written and group 1 one image in
        if result.source.name in names[4:]:
            raise KeyboardInterrupt
        return commit(self, result)

    monkeypatch.setattr(DatasetWriter, "commit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.label(tmp_path / "in", output_folder=tmp_path / "cut", format="coco", batch_size=3, progress=False)
    monkeypatch.setattr(DatasetWriter, "commit", commit)
    batches, predict_batch = [], model.pipeline.predict_batch
    model.pipeline.predict_batch = lambda arrays: batches.append(len(arrays)) or predict_batch(arrays)
    summary = model.label(tmp_path / "in", output_folder=tmp_path / "cut", format="coco", batch_size=3,
                          progress=False)
    assert summary.already_done == 4 and summary.labeled == 4
    assert batches == [3, 2], "the unfinished group 1 is predicted whole again, then group 2"
    assert normalized_dataset(tmp_path / "cut") == normalized_dataset(tmp_path / "whole")


def test_a_resume_without_a_batch_size_keeps_the_datasets(model, tmp_path):
    write_pictures(tmp_path / "in", [40 + 4 * i for i in range(5)])
    model.label(tmp_path / "in", output_folder=tmp_path / "out", format="coco", batch_size=2, progress=False)
    (tmp_path / "in" / "extra.png").write_bytes((tmp_path / "in" / "00.png").read_bytes())
    batches, predict_batch = [], model.pipeline.predict_batch
    model.pipeline.predict_batch = lambda arrays: batches.append(len(arrays)) or predict_batch(arrays)
    summary = model.label(tmp_path / "in", output_folder=tmp_path / "out", format="coco", progress=False)
    assert summary.already_done == 5 and summary.labeled == 1 and batches == [2]  # group 2: the 5th and the new
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["batch_size"] == 2
    with pytest.raises(DatasetError, match="batch_size: 2 -> 3"):
        model.label(tmp_path / "in", output_folder=tmp_path / "out", format="coco", batch_size=3, progress=False)


class FakeCudaDevice:
    def __init__(self, gib):
        self.total_memory = int(gib * 2**30)


@pytest.mark.parametrize("device, memory_gib, expected", [
    ("cpu", None, CPU_BATCH_SIZE),
    ("cpu", 80, CPU_BATCH_SIZE),  # a CPU, whatever GPU this machine has
    ("mps", None, DEFAULT_BATCH_SIZE),
    ("cuda", 80, LARGE_GPU_BATCH_SIZE),
    ("cuda:1", 40, LARGE_GPU_BATCH_SIZE),
    ("cuda", 24, DEFAULT_BATCH_SIZE),
    ("cuda", None, DEFAULT_BATCH_SIZE),  # a CUDA device this machine does not have (a Ray driver)
], ids=str)
def test_the_default_batch_size_follows_the_devices_memory(monkeypatch, device, memory_gib, expected):
    asked = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: memory_gib is not None)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: asked.append(i) or FakeCudaDevice(memory_gib))
    assert default_batch_size(device) == expected
    assert asked == ([torch.device(device).index or 0] if memory_gib is not None and device != "cpu" else [])


@pytest.mark.parametrize("given, manifest, expected, error", [
    (3, {"batch_size": 2}, 3, None),  # given wins (the writer then refuses the difference)
    (None, {"batch_size": 2}, 2, None),
    (None, {"batch_size": "2"}, CPU_BATCH_SIZE, None),  # not a batch size: the default
    (None, None, CPU_BATCH_SIZE, None),
    (0, None, None, "at least 1"),
    (2.0, None, None, "whole number"),
], ids=str)
def test_resolve_batch_size(tmp_path, given, manifest, expected, error):
    if manifest is not None:
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    if error:
        with pytest.raises(SettingsError, match=error):
            resolve_batch_size(given, tmp_path, "cpu")
    else:
        assert resolve_batch_size(given, tmp_path, "cpu") == expected


def test_the_cpu_thread_count_is_part_of_the_configuration(tiny_florence, small_sam2, tmp_path):
    threads = torch.get_num_threads()
    try:
        model = GroundedSAM2(ONTOLOGY, florence=str(tiny_florence), sam2=small_sam2, device="cpu", threads=1)
        assert torch.get_num_threads() == 1 and model.pipeline.describe()["placement"]["threads"] == 1
        write_pictures(tmp_path / "in", [40])
        model.label(tmp_path / "in", output_folder=tmp_path / "out", progress=False)
        other = GroundedSAM2(ONTOLOGY, florence=str(tiny_florence), sam2=small_sam2, device="cpu", threads=2)
        with pytest.raises(DatasetError, match="pipeline.placement.threads: 1 -> 2"):
            other.label(tmp_path / "in", output_folder=tmp_path / "out", progress=False)
    finally:
        torch.set_num_threads(threads)


def fragmented_detections(arrays, sources):
    """Masks from the pixels (deterministic, many parts: polygon joining and RLE do real work);
    an image 33 pixels wide breaks the model."""
    if any(a.shape[1] == 33 for a in arrays):
        raise ValueError("this image breaks the model")
    results = []
    for a in arrays:
        masks = np.stack([a[..., c] > 128 for c in range(3)])
        results.append(make_detections(masks, [0, 0, 0], ["dog"] * 3, ["dog"] * 3, grounding_confidence=[0.9] * 3,
                                       sam_iou=[0.5, 0.6, 0.7], xyxy=masks_to_xyxy(masks, fallback=np.zeros((3, 4)))))
    return results


@pytest.mark.parametrize("dataset_format", ["yolo", "coco"])
def test_the_overlapped_loop_writes_the_serial_loops_dataset_byte_for_byte(tmp_path, monkeypatch, dataset_format):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, w in enumerate([40, 33, 50, 60, 45, 70, 38]):
        pixels = cv2.GaussianBlur(rng.integers(0, 256, (30, w, 3), np.uint8), (5, 5), 0)
        cv2.imwrite(str(folder / f"{i:02d}.png"), pixels)
    (folder / "07.png").write_bytes(b"broken")
    sources = find_images(folder)

    def run(name, **threads):
        writer = DatasetWriter(tmp_path / name, DatasetConfig(format=dataset_format), ("dog",), {"pipeline": "test"})
        return label_images(sources, writer, fragmented_detections, batch_size=2, progress=False, **threads)

    overlapped = run("overlapped", loader_threads=3, export_threads=3)
    monkeypatch.setattr(labeling, "LOAD_AHEAD_GROUPS", 0)
    monkeypatch.setattr(labeling, "EXPORT_BEHIND_GROUPS", 0)
    serial = run("serial", loader_threads=1, export_threads=1)  # each stage waits for the one before
    assert (overlapped.labeled, len(overlapped.skipped)) == (serial.labeled, len(serial.skipped)) == (6, 2)
    assert overlapped.objects_per_class == serial.objects_per_class
    assert normalized_dataset(tmp_path / "overlapped") == normalized_dataset(tmp_path / "serial")


def test_an_error_while_writing_stops_the_run_with_what_was_predicted_before_written(tmp_path, monkeypatch):
    sources = write_pictures(tmp_path / "in", [30 + i for i in range(8) if i != 3])
    commit = DatasetWriter.commit

    def full_disk(self, result):
        if result.source.name == sources[4].name:
            raise OSError(28, "No space left on device")
        return commit(self, result)

    monkeypatch.setattr(DatasetWriter, "commit", full_disk)
    with pytest.raises(OSError, match="No space left"):
        label_images(sources, writer_for(tmp_path / "out"), no_objects, batch_size=2, progress=False)
    written = {p.stem for p in (tmp_path / "out").glob("*/labels/*.txt")}
    assert {s.name for s in sources[:4]} <= written and sources[4].name not in written


def test_a_batch_that_does_not_fit_in_memory_is_split_in_halves_and_reported(tmp_path, capsys):
    sources = write_pictures(tmp_path / "in", [30 + i for i in range(7)])
    calls = []

    def small_device(arrays, sources):
        calls.append(len(arrays))
        if len(arrays) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return no_objects(arrays, sources)

    summary = label_images(sources, writer_for(tmp_path / "out"), small_device, batch_size=5, progress=True)
    assert calls == [5, 3, 2, 1, 2, 2], "group 0: 5 -> 3 (-> 2 + 1) + 2; group 1 (2 images) fits"
    assert summary.labeled == 7 and not summary.skipped and summary.memory_splits == 2
    assert "2 batch(es) did not fit in memory and were labeled in halves" in str(summary)
    assert capsys.readouterr().err.count("did not fit in memory") == 1, "said once while running"


# --- the engine: stages overlapped, groups taken as they come -------------------------------------

STAGE_WAIT_S = 60  # how long a stage waits for the overlap it expects before the test fails


def test_the_next_group_is_read_while_one_is_predicted(tmp_path, monkeypatch):
    sources = write_pictures(tmp_path / "in", [30, 31, 32])
    load, reading = labeling.load_image, {name: threading.Event() for name in ("01", "02")}

    def recorded_load(source):
        if source.name in reading:
            reading[source.name].set()
        return load(source)

    read_meanwhile = []

    def predict(arrays, batch):
        if batch[0].name == "00":  # an error here would only skip the image: recorded instead
            read_meanwhile.extend(reading[name].wait(STAGE_WAIT_S) for name in ("01", "02"))
        return no_objects(arrays, batch)

    monkeypatch.setattr(labeling, "load_image", recorded_load)
    summary = label_images(sources, writer_for(tmp_path / "out"), predict, batch_size=1, progress=False)
    assert read_meanwhile == [True, True], "groups 1 and 2 (LOAD_AHEAD_GROUPS) are read while group 0 is predicted"
    assert summary.labeled == 3


def test_a_group_is_written_while_the_next_is_predicted(tmp_path, monkeypatch):
    sources = write_pictures(tmp_path / "in", [30, 31])
    commit, predicting = DatasetWriter.commit, threading.Event()

    def slow_commit(self, result):
        if result.source.name == "00":
            assert predicting.wait(STAGE_WAIT_S), "group 1 is not predicted while group 0 is written"
        return commit(self, result)

    def predict(arrays, batch):
        predicting.set() if batch[0].name == "01" else None
        return no_objects(arrays, batch)

    monkeypatch.setattr(DatasetWriter, "commit", slow_commit)
    summary = label_images(sources, writer_for(tmp_path / "out"), predict, batch_size=1, progress=False)
    assert summary.labeled == 2


def test_groups_handed_out_as_others_are_written_never_deadlock(tmp_path):
    """A worker's source: group k+1 comes only once group k is written, and not yet when the
    engine looks ahead; the engine writes what it holds before it waits."""
    sources = write_pictures(tmp_path / "in", [30, 31, 32, 33, 34])
    tasks, taken = queue.Queue(), []
    tasks.put((0, sources[:2]))

    def next_group(wait):
        try:
            group = tasks.get(timeout=STAGE_WAIT_S) if wait else tasks.get_nowait()
        except queue.Empty:
            assert not wait, "the engine waits for a group while holding unwritten results"
            return None
        taken.append((group or (None,))[0])
        return group

    def written(group, results, wrote):
        k = group[0] + 1
        tasks.put((k, sources[2 * k : 2 * k + 2]) if k < 3 else None)

    label_groups(next_group, writer_for(tmp_path / "out"), no_objects, lambda group, results, splits: None, written)
    assert taken == [0, 1, 2, None]
    assert all(writer_for(tmp_path / "out", create=False).is_done(s) for s in sources)


def test_the_grounders_inputs_are_made_in_the_loader_threads_and_change_nothing(model, tmp_path):
    """label_folder passes Pipeline.prepare to the engine: Florence-2's pixels are made by the
    loader threads, and the dataset is the one the images alone give, to the byte."""
    write_pictures(tmp_path / "in", [40 + 4 * i for i in range(5)])
    pipeline, threads = model.pipeline, set()
    prepare = pipeline.prepare

    def recorded(image):
        threads.add(threading.current_thread().name)
        return prepare(image)

    pipeline.prepare = recorded
    model.label(tmp_path / "in", output_folder=tmp_path / "prepared", format="coco", batch_size=2, progress=False)
    assert threads and all(name.startswith("grounded-sam2-load") for name in threads)
    sources = input_images(tmp_path / "in")
    writer = DatasetWriter(tmp_path / "plain", DatasetConfig(format="coco"), pipeline.classes,
                           {"pipeline": pipeline.describe(), "batch_size": 2})  # label_folder's provenance
    label_images(sources, writer, lambda arrays, _: pipeline.predict_batch(arrays), batch_size=2, progress=False)
    assert normalized_dataset(tmp_path / "plain") == normalized_dataset(tmp_path / "prepared")


def test_a_prepare_that_fails_leaves_the_image_to_the_predict_function(tmp_path):
    sources = write_pictures(tmp_path / "in", [30, 31])
    given = []

    def prepare(rgb):
        if rgb.shape[1] == 31:
            raise ValueError("cannot prepare")
        return ("prepared", rgb)

    def predict(inputs, batch):
        given.extend(type(i).__name__ for i in inputs)
        return no_objects([i[1] if isinstance(i, tuple) else i for i in inputs], batch)

    summary = label_images(sources, writer_for(tmp_path / "out"), predict, batch_size=2, progress=False,
                           prepare=prepare)
    assert given == ["tuple", "ndarray"] and summary.labeled == 2
