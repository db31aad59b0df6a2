"""The ontology: which text prompts Florence-2 is asked to find, and the class each becomes.

Several prompts may share a class (``{"red car": "car", "blue car": "car"}``). Class ids are
stable: the unique class names in first-seen order, 0-based (COCO category ids add 1). Every
problem is reported before any model is loaded.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Tuple, Union

import yaml

from .errors import GroundedSAM2Error


class OntologyError(GroundedSAM2Error, ValueError):
    """An ontology that cannot be used."""


@dataclass(frozen=True)
class Ontology:
    """Prompts and their classes. Build it with :meth:`load`."""

    prompts: Tuple[str, ...]
    prompt_classes: Tuple[str, ...]  # the class of prompts[i]

    def __post_init__(self) -> None:
        if not self.prompts:
            raise OntologyError("the ontology is empty: give at least one {prompt: class} pair")
        if len(self.prompts) != len(self.prompt_classes):
            raise OntologyError("prompts and prompt_classes differ in length")
        seen: Dict[str, str] = {}
        for prompt, cls in zip(self.prompts, self.prompt_classes):
            for kind, value in (("prompt", prompt), ("class", cls)):
                if not isinstance(value, str) or not value.strip():
                    raise OntologyError(f"every {kind} must be a non-blank string, got {value!r}")
                if value != value.strip():
                    raise OntologyError(f"{kind} {value!r} has leading or trailing spaces")
            key = " ".join(prompt.lower().split())
            if key in seen:
                raise OntologyError(f"duplicate prompt {prompt!r} (same as {seen[key]!r} ignoring case and spacing)")
            seen[key] = prompt

    @property
    def classes(self) -> Tuple[str, ...]:
        """Unique class names in first-seen order; a class's id is its index."""
        return tuple(dict.fromkeys(self.prompt_classes))

    def class_of(self, prompt: str) -> str:
        """The class name of one of the prompts."""
        return self.prompt_classes[self.prompts.index(prompt)]

    def class_id(self, prompt: str) -> int:
        """The class id of one of the prompts."""
        return self.classes.index(self.class_of(prompt))

    def to_dict(self) -> Dict[str, str]:
        """{prompt: class}, the format files and autodistill's CaptionOntology use."""
        return dict(zip(self.prompts, self.prompt_classes))

    @classmethod
    def from_pairs(cls, pairs: Iterable[Tuple[Any, Any]]) -> "Ontology":
        pairs = list(pairs)
        return cls(tuple(p for p, _ in pairs), tuple(c for _, c in pairs))

    @classmethod
    def load(cls, source: Union["Ontology", Mapping[str, str], str, Path, Any]) -> "Ontology":
        """An ontology from: an :class:`Ontology`; autodistill's ``CaptionOntology``; a dict
        {prompt: class}; a YAML or JSON file holding such a mapping; the name of a shipped
        ontology (``"coco80"``, ``"example"``: see :func:`shipped_ontologies`); or a JSON string."""
        if isinstance(source, Ontology):
            return source
        if hasattr(source, "promptMap"):  # autodistill.detection.CaptionOntology
            return cls.from_pairs(source.promptMap)
        if isinstance(source, Mapping):
            return cls.from_pairs(source.items())
        if isinstance(source, (str, Path)):
            text = str(source).strip()
            if isinstance(source, str) and text.startswith("{"):
                return cls.from_pairs(_parse_json_pairs(text, "the JSON ontology"))
            shipped = shipped_ontologies()
            if text in shipped and not Path(text).exists():
                return cls.from_pairs(_read_file_pairs(shipped[text]))
            return cls.from_pairs(_read_file_pairs(Path(source)))
        raise OntologyError(
            f"cannot make an ontology from {type(source).__name__}; pass a dict, a CaptionOntology, a file or JSON"
        )


def shipped_ontologies() -> Dict[str, Path]:
    """Ontology files that come with the package, by name: ``ontologies/`` in a source
    checkout, installed as ``grounded_sam2/ontologies``."""
    here = Path(__file__).resolve().parent
    for folder in (here / "ontologies", here.parent / "ontologies"):
        if folder.is_dir():
            return {p.stem: p for p in sorted(folder.glob("*.yaml"))}
    return {}


def _parse_json_pairs(text: str, where: str) -> List[Tuple[Any, Any]]:
    try:
        data = json.loads(text, object_pairs_hook=lambda pairs: pairs)
    except json.JSONDecodeError as e:
        raise OntologyError(f"{where} is not valid JSON: {e}") from e
    if not isinstance(data, list) or not all(isinstance(p, tuple) for p in data):
        raise OntologyError(f"{where} must be a JSON object {{prompt: class}}")
    return data


class _PairLoader(yaml.SafeLoader):
    """Keeps mappings as lists of pairs, so duplicate prompts are seen instead of overwritten."""


_PairLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    lambda loader, node: [(loader.construct_object(k), loader.construct_object(v)) for k, v in node.value],
)


def _read_file_pairs(path: Path) -> List[Tuple[Any, Any]]:
    if not path.is_file():
        raise OntologyError(f"ontology file not found: {path} (or pass the ontology as JSON: '{{\"dog\": \"dog\"}}')")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return _parse_json_pairs(text, str(path))
    try:
        data = yaml.load(text, Loader=_PairLoader)
    except yaml.YAMLError as e:
        raise OntologyError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(data, list) or not all(isinstance(p, tuple) for p in data):
        raise OntologyError(f"{path} must hold a mapping prompt: class")
    return data
