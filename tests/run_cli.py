"""Runs the grounded-sam2 command in a test subprocess.

The test environment's torchvision is the CUDA-only wheel pulled in by Meta's sam2 reference;
transformers imports torchvision whenever it is installed, so its op schemas are registered
first, as tests/conftest.py does for the test process itself."""

import sys

from meta_reference import register_torchvision_ops

register_torchvision_ops()

from grounded_sam2.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
