"""The packages' import structure: no import cycles, and no module importing one of a higher layer.

Every import counts, also those inside functions (a function-level import hides a cycle from
Python, not from this test). The layers, lowest first, are the data path of docs/architecture.md.
"""

import ast
from pathlib import Path
from typing import Dict, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("segmenter", "grounded_sam2")

# Lowest first; a module belongs to the first entry that is its name or a parent package of it.
LAYERS = [
    ["segmenter"],
    ["grounded_sam2.errors"],
    ["grounded_sam2.ontology", "grounded_sam2.detections", "grounded_sam2.images", "grounded_sam2.tiny_models"],
    ["grounded_sam2.grounding", "grounded_sam2.datasets", "grounded_sam2.segmentation", "grounded_sam2.prompts"],
    ["grounded_sam2.filters", "grounded_sam2.speed", "grounded_sam2.evaluation", "grounded_sam2.preview"],
    ["grounded_sam2.config"],
    ["grounded_sam2.pipeline"],
    ["grounded_sam2.labeling", "grounded_sam2.video", "grounded_sam2.prompt_tuning"],
    ["grounded_sam2.parallel"],
    ["grounded_sam2.cluster"],
    ["grounded_sam2.video_labeling"],
    ["grounded_sam2.model"],
    ["grounded_sam2.cli", "grounded_sam2"],
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(name: str, path: Path, known: Set[str]) -> Set[str]:
    """The project modules ``name`` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def graph() -> Dict[str, Set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def layer(name: str) -> int:
    for rank, entries in enumerate(LAYERS):
        if any(name == e or name.startswith(f"{e}.") for e in entries if e != "grounded_sam2") or name in entries:
            return rank
    raise AssertionError(f"{name} is in no layer: add it to LAYERS")


def test_every_module_is_in_a_layer():
    for name in modules():
        layer(name)


def test_no_module_imports_a_higher_layer():
    wrong = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
             for a, targets in graph().items() for b in targets if layer(b) > layer(a)]
    assert not wrong, "\n".join(wrong)


FORBIDDEN = ("torchvision", "timm", "hydra", "omegaconf", "sam2")  # not at run time (README, Install)


def test_no_module_imports_torchvision_timm_hydra_or_meta_sam2():
    wrong = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            wrong += [f"{name} imports {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    edges = graph()
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("name, source, expected", [
    ("grounded_sam2.probe", "from .x import y", {"grounded_sam2.x", "grounded_sam2.x.y"}),
    ("grounded_sam2.grounding.probe", "from .. import errors", {"grounded_sam2", "grounded_sam2.errors"}),
    ("grounded_sam2.probe", "def f():\n    from grounded_sam2.model import GroundedSAM2", {"grounded_sam2.model"}),
    ("grounded_sam2.probe", "import segmenter.device, numpy", {"segmenter.device"}),
], ids=["relative", "parent package", "inside a function", "absolute"])
def test_the_import_reader_sees_every_kind_of_import(tmp_path, name, source, expected):
    path = tmp_path / "probe.py"
    path.write_text(source)
    known = {"grounded_sam2", "grounded_sam2.x", "grounded_sam2.x.y", "grounded_sam2.errors", "grounded_sam2.model",
             "segmenter.device", "grounded_sam2.video"}
    assert imports_of(name, path, known) == expected
