"""A review report of a labeled dataset: one self-contained HTML file that opens from disk.

:func:`write_preview` reads any dataset :func:`~grounded_sam2.datasets.reading.read_dataset`
reads (YOLO segmentation or boxes, COCO) and writes ``OUT.html`` with, next to it, ``OUT_files/``
(``thumbs/`` and ``full/``: JPEG images referenced by relative, percent-encoded paths). The page
uses no network at all: its CSS and its few lines of JavaScript are inline, its charts inline SVG
and CSS bars.

- **Summary**, over *all* images: inputs, images labeled (with and without objects), inputs
  skipped and why (the dataset's ``skipped.txt``, next to ``data.yaml`` or the split folders),
  objects and images per class with a bar chart, and per class a histogram of the confidences
  (or a line saying the dataset records none). This pass reads only class ids and confidences
  (:meth:`~grounded_sam2.datasets.reading.LabeledDataset.classes_and_scores`): no pixels, no
  masks, one image at a time.
- **Gallery**: a deterministic sample of at most ``max_images`` images (those whose key has the
  smallest SHA-256, so the sample does not depend on the file order and an image stays in it as
  the dataset grows unless others displace it), each drawn with its masks, boxes and
  ``class confidence`` labels (supervision's annotators). A thumbnail links to the full-size
  annotated image. Review order: the images with confidences by their least confident object,
  lowest first; then images with objects but no confidences; then images without objects; ties
  by key. A class filter (inline JavaScript; without JavaScript every image shows).

Every name from the dataset (file names, keys, class names, skip reasons) is HTML-escaped.
"""

import hashlib
import html
import re
import webbrowser
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import quote

import numpy as np

from .datasets.reading import DatasetImage, LabeledDataset, read_dataset
from .datasets.writer import atomic_write
from .errors import GroundedSAM2Error
from .images import to_rgb_uint8

THUMBNAIL_SIZE = 320  # longest side of a thumbnail, pixels
CONFIDENCE_BINS = 20  # bins of [0, 1] in the confidence histograms
SKIPPED_FILE = "skipped.txt"
SKIPPED_LISTED = 200  # skipped inputs listed by name; the rest are counted
_JPEG_QUALITY = 90


class PreviewError(GroundedSAM2Error, ValueError):
    """A preview that cannot be written as asked."""


class _Summary:
    """Counts over every image of a dataset; per-class arrays indexed by class id. Images are
    :meth:`add`-ed one at a time and counted in chunks (a few numpy calls per chunk, not per
    image); :meth:`flush` counts the last one."""

    CHUNK = 4096  # images buffered between counts

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self.images = 0
        self.with_objects = 0
        self.splits: Counter = Counter()
        self.objects = np.zeros(classes, np.int64)
        self.class_images = np.zeros(classes, np.int64)  # images holding the class
        self.histogram = np.zeros((classes, CONFIDENCE_BINS), np.int64)
        self.score_sum = np.zeros(classes)
        self.score_min = np.full(classes, np.inf)  # inf: no confidence
        self._ids: List[np.ndarray] = []
        self._scored: List[Tuple[np.ndarray, np.ndarray]] = []

    def add(self, split: str, class_ids: np.ndarray, scores: Optional[np.ndarray]) -> None:
        self.images += 1
        self.with_objects += bool(len(class_ids))
        self.splits[split] += 1
        self._ids.append(class_ids)
        if scores is not None and len(scores):
            self._scored.append((class_ids, scores))
        if len(self._ids) >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        n = self.classes
        if self._ids:
            ids = np.concatenate(self._ids)
            owners = np.repeat(np.arange(len(self._ids)), [len(i) for i in self._ids])
            self.objects += np.bincount(ids, minlength=n)
            self.class_images += np.bincount(np.unique(owners * n + ids) % n, minlength=n)
        if self._scored:
            ids = np.concatenate([i for i, _ in self._scored])
            scores = np.concatenate([s for _, s in self._scored]).astype(np.float64)
            # 1e-6: a stored 0.35 (float32 0.34999...) falls in the bin that starts at 0.35
            bins = np.clip(np.floor(scores * CONFIDENCE_BINS + 1e-6).astype(int), 0, CONFIDENCE_BINS - 1)
            self.histogram += np.bincount(ids * CONFIDENCE_BINS + bins, minlength=n * CONFIDENCE_BINS).reshape(
                n, CONFIDENCE_BINS)
            self.score_sum += np.bincount(ids, weights=scores, minlength=n)
            np.minimum.at(self.score_min, ids, scores)
        self._ids, self._scored = [], []


@dataclass(frozen=True)
class _Shown:
    """A gallery image: its classes, objects and confidence (its least confident object's)."""

    image: DatasetImage
    class_ids: Tuple[int, ...]
    objects: int
    confidence: Optional[float]

    def review_order(self) -> Tuple[int, float, str]:
        if self.confidence is not None:
            return 0, self.confidence, self.image.key
        return (1 if self.objects else 2), 0.0, self.image.key


def write_preview(
    dataset_path: Union[str, Path],
    output_html: Union[str, Path],
    max_images: int = 300,
    open_browser: bool = False,
) -> Path:
    """Write the HTML review report of a labeled dataset; see the module docstring.

    Arguments:
      dataset_path: a YOLO dataset (its folder or data.yaml), a COCO JSON file or a folder of
        COCO split folders.
      output_html: the report to write; its images go to ``<stem>_files/`` next to it.
      max_images: the most images the gallery shows (0: the summary only); the summary counts
        every image whatever this is.
      open_browser: open the report in the default web browser once written.

    Returns the path of the HTML file.
    """
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 0:
        raise PreviewError(f"max_images must be a non-negative integer, got {max_images!r}")
    dataset = read_dataset(Path(dataset_path))
    output_html = Path(output_html)
    files = output_html.with_name(f"{output_html.stem}_files")
    sample = _sample(dataset.images, max_images)
    summary, shown = _summarize(dataset, {image.key for image in sample})
    shown.sort(key=_Shown.review_order)
    skipped = _read_skipped(Path(dataset_path))
    cards = [_card(dataset, item, files) for item in shown]
    _remove_stale(files, {name for card in cards for name in card[1]})
    page = _page(dataset, Path(dataset_path), summary, skipped, shown, [card[0] for card in cards])
    atomic_write(output_html, page.encode("utf-8"))
    if open_browser:
        webbrowser.open(output_html.resolve().as_uri())
    return output_html


# --- what is shown ----------------------------------------------------------------------------


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _sample(images: Sequence[DatasetImage], max_images: int) -> List[DatasetImage]:
    """The ``max_images`` images whose key has the smallest SHA-256."""
    return sorted(images, key=lambda image: _key_hash(image.key))[:max_images]


def _summarize(dataset: LabeledDataset, sampled: set) -> Tuple[_Summary, List[_Shown]]:
    """The summary of every image, and the sampled images' gallery entries, in one streamed pass
    over class ids and confidences."""
    summary = _Summary(len(dataset.classes))
    shown = []
    for image in dataset.images:
        class_ids, scores = dataset.classes_and_scores(image)
        summary.add(image.split, class_ids, scores)
        if image.key in sampled:
            confidence = float(scores.min()) if scores is not None and len(scores) else None
            shown.append(_Shown(image, tuple(int(c) for c in np.unique(class_ids)), len(class_ids), confidence))
    summary.flush()
    return summary, shown


def _read_skipped(dataset_path: Path) -> List[Tuple[str, str]]:
    """(input, reason) of each line of the dataset's skipped.txt (none when it has none)."""
    folder = dataset_path if dataset_path.is_dir() else dataset_path.parent
    path = folder / SKIPPED_FILE
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip():
            name, _, reason = line.partition("\t")
            entries.append((name, reason.strip() or "no reason given"))
    return entries


# --- the images -------------------------------------------------------------------------------


def _file_stem(key: str) -> str:
    """A safe, unique file name for an image key: its letters and digits, and its hash."""
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', key)[:60]}_{_key_hash(key)[:10]}"


def _url(path: Path, base: Path) -> str:
    """``path`` relative to the folder ``base``, percent-encoded, for an attribute."""
    return html.escape(quote(path.relative_to(base).as_posix()))


def _card(dataset: LabeledDataset, item: _Shown, files: Path) -> Tuple[str, List[Path]]:
    """A gallery entry's HTML and the files written for it: its annotated image at full size and
    as a thumbnail (or a note saying why it could not be drawn)."""
    import cv2

    image = item.image
    key = html.escape(image.key)
    classes = " ".join(str(c) for c in item.class_ids) or "none"
    confidence = "no confidence" if item.confidence is None else f"min {item.confidence:.2f}"
    caption = (f'<figcaption><span class="key">{key}</span><span class="meta">{html.escape(image.split)} · '
               f'{item.objects} object{"" if item.objects == 1 else "s"} · {confidence}</span></figcaption>')
    try:
        annotated, note = _annotated(dataset, image)
    except GroundedSAM2Error as e:
        body = f'<div class="missing">cannot draw this image: {html.escape(str(e))}</div>'
        return f'<figure data-classes="{classes}" data-key="{key}">{body}{caption}</figure>', []
    stem = _file_stem(image.key)
    full, thumb = files / "full" / f"{stem}.jpg", files / "thumbs" / f"{stem}.jpg"
    height, width = annotated.shape[:2]
    scale = THUMBNAIL_SIZE / max(height, width)
    small = annotated
    if scale < 1:
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        small = cv2.resize(annotated, (width, height), interpolation=cv2.INTER_AREA)
    for path, pixels in ((full, annotated), (thumb, small)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])[1].tobytes())
    base = files.parent
    note_html = f'<div class="note">{html.escape(note)}</div>' if note else ""
    body = (f'<a href="{_url(full, base)}" target="_blank" rel="noopener"><img src="{_url(thumb, base)}" '
            f'width="{width}" height="{height}" alt="{key}"></a>{note_html}')
    return f'<figure data-classes="{classes}" data-key="{key}">{body}{caption}</figure>', [full, thumb]


def _annotated(dataset: LabeledDataset, image: DatasetImage) -> Tuple[np.ndarray, str]:
    """An image with its masks, boxes and labels drawn (BGR), and a note when its file could
    not be read (the labels are then drawn on grey)."""
    import cv2
    import supervision as sv

    instances = dataset.instances(image)
    height, width = instances.height, instances.width
    note = ""
    try:
        rgb = to_rgb_uint8(image.path)
    except GroundedSAM2Error as e:
        rgb, note = np.full((height, width, 3), 128, np.uint8), str(e)
    if rgb.shape[:2] != (height, width):  # the labels' pixel grid
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    if not len(instances):
        return bgr, note
    detections = sv.Detections(xyxy=instances.xyxy.astype(np.float32), mask=instances.masks(),
                               class_id=instances.class_ids.astype(int), confidence=instances.scores)
    names = [dataset.classes[c] for c in instances.class_ids]
    labels = names if instances.scores is None else [f"{n} {s:.2f}" for n, s in zip(names, instances.scores)]
    # sized for the thumbnail: text about 9 pixels high and lines 2 pixels wide once scaled down
    factor = max(height, width) / THUMBNAIL_SIZE
    if detections.mask is not None:
        bgr = sv.MaskAnnotator(opacity=0.45).annotate(bgr, detections)
    bgr = sv.BoxAnnotator(thickness=max(1, round(2 * factor))).annotate(bgr, detections)
    text_scale = max(0.35, 0.4 * factor)
    label = sv.LabelAnnotator(text_scale=text_scale, text_thickness=max(1, round(text_scale * 1.6)),
                              text_padding=max(2, round(3 * factor)))
    return label.annotate(bgr, detections, labels), note


def _remove_stale(files: Path, written: set) -> None:
    """Remove the images an earlier report left in ``files`` that this one does not show."""
    for folder in (files / "full", files / "thumbs"):
        if folder.is_dir():
            for path in folder.glob("*.jpg"):
                if path not in written:
                    path.unlink()


# --- the page ---------------------------------------------------------------------------------


def _class_colour(class_id: int) -> str:
    """The colour supervision's annotators give a class (its default palette)."""
    import supervision as sv

    return sv.ColorPalette.DEFAULT.by_idx(class_id).as_hex()


def _page(dataset: LabeledDataset, dataset_path: Path, summary: _Summary, skipped: List[Tuple[str, str]],
          shown: List[_Shown], cards: List[str]) -> str:
    title = html.escape(f"Preview of {dataset_path.name or dataset_path}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{title}</h1><p class=\"path\">{html.escape(str(dataset_path))} · "
        f"{html.escape(dataset.format.upper())} · {len(dataset.classes)} classes</p></header>",
        _summary_html(summary, skipped),
        _classes_html(dataset.classes, summary),
        _skipped_html(skipped),
        _gallery_html(dataset.classes, summary, shown, cards),
        f"<script>{_JS}</script></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _summary_html(summary: _Summary, skipped: List[Tuple[str, str]]) -> str:
    cells = [
        ("images", "inputs", summary.images + len(skipped)),
        ("labeled", "labeled", summary.images),
        ("with-objects", "with objects", summary.with_objects),
        ("without-objects", "without objects", summary.images - summary.with_objects),
        ("skipped", "skipped", len(skipped)),
        ("objects", "objects", int(summary.objects.sum())),
    ]
    tiles = "".join(f'<div class="tile"><span class="n" id="count-{ident}">{value}</span>'
                    f"<span>{label}</span></div>" for ident, label, value in cells)
    splits = " · ".join(f"{html.escape(split)} {count}" for split, count in sorted(summary.splits.items()))
    return f'<section id="summary"><div class="tiles">{tiles}</div><p class="splits">{splits}</p></section>'


def _classes_html(classes: Sequence[str], summary: _Summary) -> str:
    scored = summary.histogram.sum(1)
    largest = max(1, int(summary.objects.max(initial=0)))
    rows = []
    for c, name in enumerate(classes):
        colour = _class_colour(c)
        share = 100.0 * summary.objects[c] / largest
        if scored[c]:
            mean, histogram = summary.score_sum[c] / scored[c], _histogram_svg(summary.histogram[c], colour, name)
            confidence = f"<td>{mean:.2f}</td><td>{summary.score_min[c]:.2f}</td><td>{histogram}</td>"
        else:
            confidence = '<td>–</td><td>–</td><td class="none">no confidences</td>'
        rows.append(
            f'<tr data-class="{c}"><th scope="row"><span class="swatch" style="background:{colour}"></span>'
            f'{html.escape(name)}</th><td class="objects">{summary.objects[c]}</td>'
            f'<td class="bar-cell"><div class="bar" style="width:{share:.1f}%;background:{colour}"></div></td>'
            f'<td class="class-images">{summary.class_images[c]}</td>{confidence}</tr>'
        )
    note = ""
    if not scored.any():
        note = '<p class="none" id="no-confidences">This dataset records no confidences: no histograms.</p>'
    return ('<section id="classes"><h2>Classes</h2><table><thead><tr><th>class</th><th>objects</th><th></th>'
            '<th>images</th><th>mean conf.</th><th>min conf.</th><th>confidences (0 to 1)</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>{note}</section>')


def _histogram_svg(counts: np.ndarray, colour: str, name: str) -> str:
    """An inline SVG bar chart of a class's confidences over [0, 1]."""
    width, height, bar = 200, 40, 200 / CONFIDENCE_BINS
    top = max(1, int(counts.max()))
    rects = []
    for i, count in enumerate(counts):
        h = height * count / top
        low, high = i / CONFIDENCE_BINS, (i + 1) / CONFIDENCE_BINS
        rects.append(f'<rect x="{i * bar:.1f}" y="{height - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" '
                     f'fill="{colour}"><title>{low:.2f}–{high:.2f}: {count}</title></rect>')
    label = html.escape(f"confidences of {name}: {int(counts.sum())} objects")
    return (f'<svg class="hist" viewBox="0 0 {width} {height + 12}" width="{width}" height="{height + 12}" '
            f'role="img" aria-label="{label}"><title>{label}</title>'
            f'<line x1="0" y1="{height + 0.5}" x2="{width}" y2="{height + 0.5}" stroke="#999"></line>'
            f'{"".join(rects)}<text x="0" y="{height + 11}">0</text>'
            f'<text x="{width / 2}" y="{height + 11}" text-anchor="middle">0.5</text>'
            f'<text x="{width}" y="{height + 11}" text-anchor="end">1</text></svg>')


def _skipped_html(skipped: List[Tuple[str, str]]) -> str:
    if not skipped:
        return '<section id="skipped"><h2>Skipped</h2><p class="none">No input was skipped.</p></section>'
    reasons = Counter(reason for _, reason in skipped)
    rows = "".join(f'<tr><td class="n">{n}</td><td>{html.escape(reason)}</td></tr>'
                   for reason, n in sorted(reasons.items(), key=lambda r: (-r[1], r[0])))
    listed = "".join(f"<li><code>{html.escape(name)}</code> {html.escape(reason)}</li>"
                     for name, reason in skipped[:SKIPPED_LISTED])
    more = f"<li>and {len(skipped) - SKIPPED_LISTED} more</li>" if len(skipped) > SKIPPED_LISTED else ""
    return (f'<section id="skipped"><h2>Skipped ({len(skipped)})</h2><table><tbody>{rows}</tbody></table>'
            f"<details><summary>the inputs</summary><ul>{listed}{more}</ul></details></section>")


def _gallery_html(classes: Sequence[str], summary: _Summary, shown: List[_Shown], cards: List[str]) -> str:
    per_class: Dict[int, int] = Counter(c for item in shown for c in item.class_ids)
    empty = sum(1 for item in shown if not item.class_ids)
    options = "".join(f'<option value="{c}">{html.escape(name)} ({per_class.get(c, 0)})</option>'
                      for c, name in enumerate(classes))
    heading = (f"Gallery: {len(shown)} of {summary.images} images" if len(shown) < summary.images
               else f"Gallery: all {summary.images} images")
    return ('<section id="review"><h2>' + heading + '</h2>'
            '<p class="order">Least confident first (an image\'s confidence is its least confident object\'s), '
            "then images without confidences, then images without objects. Click an image for its full size.</p>"
            '<div id="class-filter" hidden><label>Show <select id="class-select">'
            f'<option value="">every class ({len(shown)})</option>{options}'
            f'<option value="none">no objects ({empty})</option></select></label> '
            '<span id="filter-count"></span></div>'
            f'<div id="gallery">{"".join(cards)}</div></section>')


_CSS = """
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;padding:16px 24px;color:#1d2330;
background:#f4f5f7}
h1{font-size:20px;margin:0}h2{font-size:16px;margin:18px 0 8px}
.path{color:#5b6475;margin:2px 0 8px;word-break:break-all}
.tiles{display:flex;flex-wrap:wrap;gap:8px}
.tile{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:6px 12px;min-width:96px}
.tile .n{display:block;font-size:20px;font-weight:600}
.splits,.order,.none{color:#5b6475;margin:6px 0}
table{border-collapse:collapse;background:#fff;border:1px solid #dde1e8}
th,td{padding:3px 8px;text-align:left;border-bottom:1px solid #eceef2;vertical-align:middle}
.bar-cell{width:220px}.bar{height:12px;border-radius:2px;min-width:1px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
svg.hist{display:block}svg.hist text{font-size:9px;fill:#5b6475}
details{margin-top:6px}code{font-size:12px}
#class-filter{margin:8px 0}
#gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:10px}
figure{margin:0;background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:6px;display:flex;
flex-direction:column;gap:4px}
figure img{width:100%;height:auto;display:block;background:#ddd;image-rendering:auto}
figcaption .key{display:block;font-weight:600;word-break:break-all}
figcaption .meta,.note{color:#5b6475;font-size:12px}
.missing{padding:24px 8px;background:#fbeaea;color:#8a1f1f;font-size:12px}
[hidden]{display:none !important}
"""

# the class filter: shown only where JavaScript runs; hides the cards without the chosen class
_JS = """
(function () {
  var box = document.getElementById("class-filter"), select = document.getElementById("class-select");
  if (!box || !select) return;
  var cards = document.querySelectorAll("#gallery figure"), count = document.getElementById("filter-count");
  box.hidden = false;
  select.addEventListener("change", function () {
    var wanted = select.value, visible = 0;
    for (var i = 0; i < cards.length; i++) {
      var show = !wanted || (" " + cards[i].getAttribute("data-classes") + " ").indexOf(" " + wanted + " ") >= 0;
      cards[i].hidden = !show;
      visible += show ? 1 : 0;
    }
    count.textContent = wanted ? visible + " shown" : "";
  });
})();
"""
