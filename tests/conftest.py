"""Test-wide settings: never touch the network, never use the user's hub cache.

Meta's sam2 reference and its torchvision are not on ``sys.path`` here (see meta_reference.py):
the tests see the packages a user's environment has.
"""

import os
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="grounded-sam2-test-hf-")
os.environ.pop("HF_HUB_CACHE", None)
os.environ.pop("HUGGINGFACE_HUB_CACHE", None)

TESTS = Path(__file__).resolve().parent
# the files whose tests share the scale-out runs (the label_runs fixture) and one Ray instance
SCALE_OUT_FILES = {"test_cluster.py", "test_parallel.py"}


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``bash tests/run.sh`` runs ``-n 2 --dist loadgroup``), each test file
    runs on one worker, so that its module fixtures are made once, and the scale-out files share
    one worker (their runs and Ray instance are made once per worker)."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        path = Path(str(item.fspath))
        group = "scale-out" if path.name in SCALE_OUT_FILES else str(path.relative_to(TESTS))
        item.add_marker(pytest.mark.xdist_group(group))
