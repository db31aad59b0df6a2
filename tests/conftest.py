"""Test-wide settings: never touch the network, never use the user's hub cache.

Meta's sam2 reference and its torchvision are not on ``sys.path`` here (see meta_reference.py):
the tests see the packages a user's environment has.
"""

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="grounded-sam2-test-hf-")
os.environ.pop("HF_HUB_CACHE", None)
os.environ.pop("HUGGINGFACE_HUB_CACHE", None)
