"""Ontology parsing and validation: every input form, stable class ids, clear errors."""

import json

import pytest

from grounded_sam2.ontology import Ontology, OntologyError, shipped_ontologies


def test_shared_classes_get_stable_ids_in_first_seen_order():
    ontology = Ontology.load({"red car": "car", "dog": "dog", "blue car": "car", "puppy": "dog", "cat": "cat"})
    assert ontology.classes == ("car", "dog", "cat")
    assert [ontology.class_id(p) for p in ontology.prompts] == [0, 1, 0, 1, 2]
    assert ontology.to_dict() == {"red car": "car", "dog": "dog", "blue car": "car", "puppy": "dog", "cat": "cat"}


def test_caption_ontology_is_accepted():
    from autodistill.detection import CaptionOntology

    ontology = Ontology.load(CaptionOntology({"dog": "dog", "red car": "car"}))
    assert ontology.prompts == ("dog", "red car") and ontology.classes == ("dog", "car")


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "dog: dog\nred car: car\n"),
    (".yml", "{dog: dog, red car: car}"),
    (".json", json.dumps({"dog": "dog", "red car": "car"})),
], ids=["yaml", "yaml flow", "json"])
def test_files(tmp_path, suffix, text):
    path = tmp_path / f"ontology{suffix}"
    path.write_text(text)
    for source in (path, str(path)):
        assert Ontology.load(source).to_dict() == {"dog": "dog", "red car": "car"}


def test_json_string():
    assert Ontology.load('{"dog": "dog", "red car": "car"}').classes == ("dog", "car")


def test_shipped_ontologies_load_by_name():
    assert {"coco80", "example"} <= set(shipped_ontologies())
    coco = Ontology.load("coco80")
    assert len(coco.classes) == 80 and coco.classes[0] == "person" and coco.class_id("toothbrush") == 79
    assert Ontology.load("example").class_id("blue car") == Ontology.load("example").class_id("red car")


BAD = {
    "empty dict": ({}, "empty"),
    "blank prompt": ({" ": "dog"}, "non-blank string"),
    "blank class": ({"dog": ""}, "non-blank string"),
    "non-string class": ({"dog": 3}, "non-blank string"),
    "non-string prompt": ({3: "dog"}, "non-blank string"),
    "padded prompt": ({" dog": "dog"}, "leading or trailing spaces"),
    "duplicate prompt, case": ({"Dog": "dog", "dog": "dog"}, "duplicate prompt 'dog'"),
    "duplicate prompt, spacing": ({"red  car": "car", "red car": "car"}, "duplicate prompt"),
    "broken JSON string": ('{"a": "b"', "not valid JSON"),
    "missing file": ("no/such/ontology.yaml", "ontology file not found"),
    "unsupported type": (42, "cannot make an ontology from int"),
}


@pytest.mark.parametrize("case", list(BAD), ids=str)
def test_bad_ontologies(case):
    source, message = BAD[case]
    with pytest.raises(OntologyError, match=message):
        Ontology.load(source)


@pytest.mark.parametrize("suffix, text, message", [
    (".yaml", "dog: dog\ndog: puppy\n", "duplicate prompt"),
    (".json", '{"dog": "dog", "dog": "puppy"}', "duplicate prompt"),
    (".yaml", "- dog\n- cat\n", "must hold a mapping"),
    (".json", '["dog"]', "must be a JSON object"),
    (".yaml", "dog: [unclosed", "not valid YAML"),
], ids=["yaml duplicate key", "json duplicate key", "yaml list", "json list", "broken yaml"])
def test_bad_files(tmp_path, suffix, text, message):
    path = tmp_path / f"o{suffix}"
    path.write_text(text)
    with pytest.raises(OntologyError, match=message):
        Ontology.load(path)
