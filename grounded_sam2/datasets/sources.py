"""Finding the images to label and giving each a distinct, stable output name."""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from ..errors import InputNotFoundError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class SourceImage:
    """An input image and its output name (no extension), unique within a dataset. ``path`` is
    None for pixels without a file of their own (frames decoded from a video)."""

    path: Optional[Path]
    name: str


def find_images(
    source: Union[str, Path, Sequence[Union[str, Path]]], extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> List[SourceImage]:
    """The images of a folder (searched recursively, extensions case-insensitive) or of a list
    of files, sorted by path.

    Output names are the path relative to the folder (or to the files' common parent) with
    folders joined by ``__``: ``a/img.jpg`` and ``b/img.jpg`` become ``a__img`` and ``b__img``.
    Files of a list are all kept, whatever their extension, so that unreadable ones are reported."""
    extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    if isinstance(source, (str, Path)):
        root = Path(source)
        if not root.is_dir():
            raise InputNotFoundError(f"input folder not found: {root}")
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in extensions and p.is_file())
    else:
        paths = sorted(Path(p) for p in source)
        if not paths:
            return []
        root = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    return _named(paths, root)


def ignored_files(source: Union[str, Path, Sequence[Union[str, Path]]],
                  extensions: Sequence[str] = IMAGE_EXTENSIONS) -> int:
    """How many files of a folder (searched recursively) :func:`find_images` leaves out because
    of their extension; 0 for a list of files, which are all kept."""
    if not isinstance(source, (str, Path)):
        return 0
    extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    return sum(1 for p in Path(source).rglob("*") if p.is_file() and p.suffix.lower() not in extensions)


def _named(paths: List[Path], root: Path) -> List[SourceImage]:
    names: Dict[str, int] = {}
    images = []
    for path in paths:
        try:
            relative = path.resolve().relative_to(root.resolve())
        except ValueError:
            relative = Path(path.name)
        name = "__".join(relative.with_suffix("").parts)
        if name in names:  # same path but another extension: a.jpg and a.png
            name = f"{name}_{path.suffix.lstrip('.').lower()}"
        names[name] = 1
        images.append(SourceImage(path, name))
    return images
