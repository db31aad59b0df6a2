"""Comparing output folders in tests."""

import hashlib
from pathlib import Path


def normalized_dataset(folder: Path) -> dict:
    """The SHA-256 of every file by relative path; data.yaml without its absolute ``path:`` line,
    so that datasets written to different folders compare equal."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "data.yaml":
                data = b"\n".join(line for line in data.splitlines() if not line.startswith(b"path:"))
            files[str(p.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    return files
