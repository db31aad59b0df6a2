"""Test-wide settings: never touch the network, never use the user's hub cache; make the
test-only torchvision (pulled in by Meta's sam2 reference) importable before transformers,
which imports torchvision whenever it is installed, is first imported."""

import os
import tempfile

from meta_reference import register_torchvision_ops

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="grounded-sam2-test-hf-")
os.environ.pop("HF_HUB_CACHE", None)
os.environ.pop("HUGGINGFACE_HUB_CACHE", None)

register_torchvision_ops()
