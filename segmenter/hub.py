"""The Hugging Face hub, asked once and quickly: is it reachable, and what is already cached.

Without this, a missing model on a machine without network means minutes of retries before the
error; here an unreachable hub is noticed in at most a few seconds (or at once with
``HF_HUB_OFFLINE=1``), and from then on only the local cache is used.
"""

import functools
import os
import socket
from pathlib import Path
from typing import Optional, Union
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0


@functools.cache
def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set or the hub's host does not answer within
    :data:`PROBE_TIMEOUT_S` (asked once per process)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return True
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError:
        return True
    return False


def cached_file(repo_id: str, filename: str) -> Optional[Path]:
    """The file from the local hub cache, or None when it has not been downloaded."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename)
    except ValueError:  # not a valid repo id
        return None
    return Path(found) if isinstance(found, str) else None


def looks_like_path(value: Union[str, Path]) -> bool:
    """True for a value meant as a local path rather than a hub id (``org/name``): it starts with
    ``.``, ``/`` or ``~``, is absolute, has a backslash or more than one ``/``, or names a file."""
    text = str(value)
    return (
        text.startswith((".", "/", "~")) or os.path.isabs(text) or "\\" in text or text.count("/") > 1
        or Path(text).suffix in (".pt", ".pth", ".safetensors", ".bin")
    )
