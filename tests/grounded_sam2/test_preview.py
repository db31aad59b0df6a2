"""The HTML review report of a dataset: counts, order, sample, files, escaping, and a real browser."""

import re
import shutil
import subprocess
from glob import escape as glob_escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from grounded_sam2.datasets.reading import LabeledDataset
from grounded_sam2.datasets.sources import SourceImage
from grounded_sam2.datasets.writer import DatasetConfig, DatasetWriter, ImageResult
from grounded_sam2.detections import make_detections
from grounded_sam2.preview import THUMBNAIL_SIZE, PreviewError, write_preview

MAGENTA = (255, 0, 255)  # the images' background: easy to find in a screenshot
VOID = {"meta", "img", "br", "hr", "input", "link", "source", "wbr", "col", "area", "base", "embed", "track"}
HOSTILE_CLASS = '"><img src=x onerror=alert(1)>'


def write_labeled(output: Path, dataset_format: str, images: Dict[str, Sequence[Tuple[int, float]]],
                  classes: Sequence[str] = ("cat", "dog"), skipped: Sequence[Tuple[str, str, str]] = ()) -> Path:
    """A dataset written by the project's writer: ``images`` maps a name to its objects (class id,
    confidence), each a rectangle of its own on a 96x128 magenta image; ``skipped`` (name, input
    path, reason) are inputs that could not be labeled."""
    h, w = 96, 128
    writer = DatasetWriter(output, DatasetConfig(dataset_format), classes, {"pipeline": "test"})
    for name, objects in images.items():
        masks = np.zeros((len(objects), h, w), bool)
        for i in range(len(objects)):
            masks[i, 8 + 20 * i: 28 + 20 * i, 10 + 25 * i: 50 + 25 * i] = True
        ids = [c for c, _ in objects]
        names = [classes[c] for c in ids]
        detections = make_detections(masks, ids, names, names, [s for _, s in objects], [1.0] * len(objects))
        rgb = np.full((h, w, 3), MAGENTA, np.uint8)
        writer.commit(ImageResult(SourceImage(None, name), rgb=rgb, detections=detections))
    for name, path, reason in skipped:
        writer.commit(ImageResult(SourceImage(Path(path), name), skip_reason=reason))
    writer.finalize()
    return output


class Page(HTMLParser):
    """The tags of a page, checked to be balanced, with their attributes and its text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.open: List[str] = []
        self.tags: List[Tuple[str, Dict[str, Optional[str]]]] = []
        self.text: List[str] = []
        self.feed(text)
        self.close()
        assert not self.open, f"unclosed tags {self.open}"

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> List[Dict[str, Optional[str]]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    def keys(self) -> List[str]:
        """The gallery's image keys, in page order."""
        return [a["data-key"] for a in self.find("figure")]


def read_page(html_file: Path) -> Tuple[str, Page]:
    text = html_file.read_text(encoding="utf-8")
    page = Page(text)
    assert text.startswith("<!DOCTYPE html>") and page.find("meta", charset="utf-8")
    ids = [a["id"] for _, a in page.tags if "id" in a]
    assert len(ids) == len(set(ids)), "duplicate ids"
    # nothing from the network: no scheme, no protocol-relative URL, no CSS url()
    assert "http:" not in text and "https:" not in text and "url(" not in text and "//cdn" not in text
    for _, attrs in page.tags:
        for name in ("src", "href"):
            if name in attrs:
                value = attrs[name]
                assert ":" not in value and not value.startswith("/") and not value.startswith("data"), value
                assert (html_file.parent / unquote(value)).is_file(), value
    return text, page


def figures(text: str) -> List[Tuple[str, int]]:
    """The summary's (name, count) tiles."""
    found = []

    class Tiles(HTMLParser):
        current: Optional[str] = None

        def handle_starttag(self, tag, attrs):
            ident = dict(attrs).get("id") or ""
            self.current = ident[len("count-"):] if ident.startswith("count-") else None

        def handle_data(self, data):
            if self.current:
                found.append((self.current, int(data)))
                self.current = None

    Tiles().feed(text)
    return found


def class_rows(text: str) -> Dict[str, Tuple[int, int]]:
    """class id -> (objects, images) from the class table."""
    rows: Dict[str, List[int]] = {}

    class Rows(HTMLParser):
        row: Optional[str] = None
        cell: Optional[str] = None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "tr" and "data-class" in attrs:
                self.row = attrs["data-class"]
                rows[self.row] = [0, 0]
            self.cell = attrs.get("class") if tag == "td" else None

        def handle_data(self, data):
            if self.row is not None and self.cell in ("objects", "class-images"):
                rows[self.row][0 if self.cell == "objects" else 1] = int(data)
                self.cell = None

    Rows().feed(text)
    return {k: tuple(v) for k, v in rows.items()}


ORDERED = {  # review order: a (0.3), b (0.6), d (0.7), then c (no objects)
    "c": [],
    "a": [(0, 0.9), (1, 0.3)],
    "d": [(1, 0.8), (1, 0.7)],
    "b": [(0, 0.6)],
}
SKIPPED = [("x", "/in/x.jpg", "cannot read image /in/x.jpg"), ("y", "/in/y.png", "cannot read image /in/y.png"),
           ("z", "/in/z.jpg", "prediction failed: RuntimeError")]


@pytest.mark.parametrize("dataset_format", ["yolo", "coco"])
def test_counts_order_and_thumbnails(tmp_path, dataset_format):
    dataset = write_labeled(tmp_path / "ds", dataset_format, ORDERED, skipped=SKIPPED)
    html_file = write_preview(dataset, tmp_path / "report.html")
    assert html_file == tmp_path / "report.html"
    text, page = read_page(html_file)
    counts = dict(figures(text))
    assert counts == {"images": 7, "labeled": 4, "with-objects": 3, "without-objects": 1, "skipped": 3,
                      "objects": 5}
    assert class_rows(text) == {"0": (2, 2), "1": (3, 2)}  # class: (objects, images)
    joined = "".join(page.text)
    assert "cannot read image /in/x.jpg" in joined and "prediction failed: RuntimeError" in joined
    assert len(page.find("svg", **{"class": "hist"})) == 2 and "no-confidences" not in text
    # each histogram's bars (their titles), cat's then dog's
    bins = [m.groups() for m in (re.fullmatch(r"(\d\.\d\d)–\d\.\d\d: ([1-9]\d*)", t) for t in page.text) if m]
    assert bins == [("0.60", "1"), ("0.90", "1"), ("0.30", "1"), ("0.70", "1"), ("0.80", "1")]
    assert page.keys() == ["a", "b", "d", "c"]
    thumbnails = [a["src"] for a in page.find("img")]
    assert len(thumbnails) == 4 and all(s.startswith("report_files/thumbs/") for s in thumbnails)
    fulls = [a["href"] for a in page.find("a")]
    assert len(fulls) == 4 and all(s.startswith("report_files/full/") for s in fulls)
    for src, href in zip(thumbnails, fulls):
        with Image.open(tmp_path / src) as thumb, Image.open(tmp_path / href) as full:
            assert thumb.format == "JPEG" and max(thumb.size) <= THUMBNAIL_SIZE and full.size == (128, 96)
            pixels = np.asarray(full.convert("RGB")).reshape(-1, 3).astype(int)
            assert (np.abs(pixels - MAGENTA).max(1) < 40).mean() > 0.3  # the image, drawn over in places


def test_hostile_names_are_escaped_and_urls_encoded(tmp_path):
    # "/" cannot be in a file name: the image's closing tag uses "\"; a skipped input's path is free text
    image_name = '<script>alert(1)<\\script> "q" & #1 %41'
    dataset = write_labeled(tmp_path / "ds", "yolo", {image_name: [(1, 0.5)], "plain": [(0, 0.9)]},
                            classes=("cat", HOSTILE_CLASS),
                            skipped=[("s", "/in/<script>alert(2)</script>.png", "<img src=y onerror=alert(3)>")])
    assert len(list(dataset.glob(f"*/images/{glob_escape(image_name)}.jpg"))) == 1  # the file system took it
    html_file = write_preview(tmp_path / "ds" / "data.yaml", tmp_path / "re port #1.html")
    text, page = read_page(html_file)  # also: every src and href resolves once percent-decoded
    assert len(page.find("script")) == 1  # the page's own
    assert all(not name.startswith("on") for _, attrs in page.tags for name in attrs)
    assert not page.find("img", src="x") and not page.find("img", src="y")
    assert "<script>alert" not in text and "<img src=x" not in text and "<img src=y" not in text
    joined = "".join(page.text)
    for name in (image_name, HOSTILE_CLASS, "/in/<script>alert(2)</script>.png", "<img src=y onerror=alert(3)>"):
        assert name in joined
    assert page.keys() == [image_name, "plain"]
    assert all(a["src"].startswith("re%20port%20%231_files/thumbs/") for a in page.find("img"))


def test_the_sample_is_deterministic_bounded_and_the_summary_counts_everything(tmp_path, monkeypatch):
    images = {f"img{i:02d}": [(i % 2, 0.05 + i / 20)] for i in range(12)}
    dataset = write_labeled(tmp_path / "ds", "yolo", images)
    monkeypatch.setattr("grounded_sam2.preview._Summary.CHUNK", 5)  # counted in chunks of 5 images, then 2
    drawn = []
    real = LabeledDataset.instances
    monkeypatch.setattr(LabeledDataset, "instances", lambda self, image: drawn.append(image.key) or real(self, image))
    first = read_page(write_preview(dataset, tmp_path / "a.html", max_images=5))[1].keys()
    assert len(first) == 5 and sorted(drawn) == sorted(first)  # the summary pass draws no mask
    again = read_page(write_preview(dataset, tmp_path / "a.html", max_images=5))
    assert again[1].keys() == first
    assert dict(figures(again[0]))["labeled"] == 12 and dict(figures(again[0]))["objects"] == 12
    assert "5 of 12 images" in again[0] and class_rows(again[0]) == {"0": (6, 6), "1": (6, 6)}
    confidences = [images[k][0][1] for k in first]
    assert confidences == sorted(confidences)
    more = read_page(write_preview(dataset, tmp_path / "a.html", max_images=8))[1].keys()
    assert len(more) == 8 and set(first) <= set(more)  # a larger sample keeps the smaller one
    write_preview(dataset, tmp_path / "a.html", max_images=5)
    assert len(list((tmp_path / "a_files" / "thumbs").iterdir())) == 5  # the others' files removed
    assert len(list((tmp_path / "a_files" / "full").iterdir())) == 5
    summary_only, page = read_page(write_preview(dataset, tmp_path / "b.html", max_images=0))
    assert page.keys() == [] and dict(figures(summary_only))["labeled"] == 12
    with pytest.raises(PreviewError, match="max_images"):
        write_preview(dataset, tmp_path / "c.html", max_images=-1)


def test_a_dataset_without_confidences_or_masks(tmp_path, monkeypatch):
    dataset = write_labeled(tmp_path / "ds", "yolo-det", {"b": [(0, 0.4)], "a": [(1, 0.2), (0, 0.9)], "e": []})
    for scores in dataset.glob("*/scores"):
        shutil.rmtree(scores)
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    html_file = write_preview(dataset, tmp_path / "report.html", open_browser=True)
    assert opened == [html_file.resolve().as_uri()]
    text, page = read_page(html_file)
    assert page.find("p", id="no-confidences") and not page.find("svg")
    assert page.keys() == ["a", "b", "e"]  # no confidences: by key, images without objects last
    assert "no confidence" in "".join(page.text)


def browser() -> Optional[str]:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def test_the_report_renders_in_a_browser(tmp_path):
    executable = browser()
    if executable is None:
        pytest.skip("no chromium browser: apt-get install chromium")
    dataset = write_labeled(tmp_path / "ds", "yolo", ORDERED, skipped=SKIPPED)
    html_file = write_preview(dataset, tmp_path / "report.html")
    command = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"]
    screenshot = tmp_path / "out.png"
    subprocess.run(command + [f"--screenshot={screenshot}", html_file.as_uri()], capture_output=True, timeout=90,
                   check=True)
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (900, 1200)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # text, charts and images, not a blank page
    magenta = np.abs(pixels - MAGENTA).max(2) < 40
    rows = np.nonzero(magenta.any(1))[0]
    assert magenta.sum() > 20000 and rows.min() > 300  # the thumbnails, below the summary
    # JavaScript ran: the class filter is shown
    dom = subprocess.run(command + ["--dump-dom", html_file.as_uri()], capture_output=True, text=True, timeout=90,
                         check=True).stdout
    assert 'id="class-filter"' in dom and 'id="class-filter" hidden' not in dom


def test_images_that_cannot_be_read_get_a_note(tmp_path):
    """A COCO image file gone: its labels drawn on grey, with the reason; a YOLO image file that is
    not an image (its size unknown): a card saying why, no thumbnail."""
    coco = write_labeled(tmp_path / "coco", "coco", {"gone": [(0, 0.5)], "kept": [(1, 0.9)]})
    next(coco.glob("*/images/gone.jpg")).unlink()
    text, page = read_page(write_preview(coco, tmp_path / "coco.html"))
    assert page.keys() == ["gone", "kept"] and len(page.find("img")) == 2
    assert "image file not found" in "".join(page.text) and len(page.find("div", **{"class": "note"})) == 1
    yolo = write_labeled(tmp_path / "yolo", "yolo", {"broken": [(0, 0.5)], "kept": [(1, 0.9)]})
    next(yolo.glob("*/images/broken.jpg")).write_bytes(b"not an image")
    text, page = read_page(write_preview(yolo, tmp_path / "yolo.html"))
    assert page.keys() == ["broken", "kept"] and len(page.find("img")) == 1
    assert "cannot draw this image" in "".join(page.text)


def test_the_command_writes_the_report_or_a_clear_error(tmp_path, capsys):
    from grounded_sam2 import cli

    dataset = write_labeled(tmp_path / "ds", "yolo", ORDERED, skipped=SKIPPED)
    assert cli.main(["preview", str(dataset), "-o", str(tmp_path / "r.html"), "--max-images", "2"]) == cli.EXIT_OK
    assert f"wrote {tmp_path / 'r.html'}" in capsys.readouterr().out
    assert len(list((tmp_path / "r_files" / "thumbs").iterdir())) == 2
    assert cli.main(["preview", str(tmp_path / "nothing"), "-o", str(tmp_path / "x.html")]) == cli.EXIT_ERROR
    assert "error: dataset not found" in capsys.readouterr().err and not (tmp_path / "x.html").exists()
