from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent

setup(
    name="grounded-sam2",
    version="0.1.0",
    description="Label image datasets from a text ontology with Florence-2 and a built-in SAM 2",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=["grounded_sam2", "segmenter", "segmenter.modeling", "segmenter.configs"],
    # The variant YAML files live in the top-level configs/ folder and install as segmenter/configs.
    package_dir={"segmenter.configs": "configs"},
    package_data={"segmenter.configs": ["*/*.yaml"]},
    install_requires=[
        "torch>=2.1",
        "numpy",
        "opencv-python-headless",
        "pillow",
        "pyyaml",
        "huggingface_hub",
    ],
    extras_require={"test": ["pytest"]},
)
