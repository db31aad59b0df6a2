"""Comparing output folders in tests."""

import hashlib
from pathlib import Path


def normalized_dataset(folder: Path) -> dict:
    """The SHA-256 of every file by relative path. Datasets written to different folders compare
    equal: nothing in them names their own folder (data.yaml has no ``path:``)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
