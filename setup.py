from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent

setup(
    name="grounded-sam2",
    version="0.1.0",
    description="Label image datasets from a text ontology with Florence-2 and a built-in SAM 2",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["grounded_sam2", "grounded_sam2.*", "segmenter", "segmenter.*"])
    + ["segmenter.configs", "grounded_sam2.ontologies"],
    # Top-level data folders install inside the packages that read them.
    package_dir={"segmenter.configs": "configs", "grounded_sam2.ontologies": "ontologies"},
    package_data={"segmenter.configs": ["*/*.yaml"], "grounded_sam2.ontologies": ["*.yaml"]},
    install_requires=[
        "torch>=2.1",
        "numpy",
        "opencv-python-headless",
        "pillow",
        "pyyaml",
        "huggingface_hub",
        "transformers>=5.23",  # native Florence-2 (no remote code)
        "supervision>=0.31",
        "autodistill>=0.1.29",
        # autodistill.detection imports these without declaring them
        "roboflow",
        "scikit-learn",
        "tqdm",
        "pycocotools",
        "scipy",  # OWLv2's image processor without torchvision
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist"],
        "ray": ["ray[data]>=2.51"],  # --ray: labeling on a Ray cluster (ActorPoolStrategy(size=...))
    },
    entry_points={"console_scripts": ["grounded-sam2 = grounded_sam2.cli:main"]},
)
