"""Matching returned phrases back to prompts, for every grounding backend."""

import pytest

from grounded_sam2.grounding.matching import match_prompt, normalize_phrase


@pytest.mark.parametrize("phrase, expected", [
    ("Dogs", "dog"), ("the red cars", "red car"), ("A  Red-Car.", "red car"), ("puppies", "puppy"),
    ("café", "cafe"), ("boxes", "box"), ("glass", "glass"), ("bus", "bus"), ("knives", "knif"),
])
def test_normalize_phrase(phrase, expected):
    assert normalize_phrase(phrase) == expected


PROMPTS = ["dog", "red car", "person riding a bicycle", "café table"]


@pytest.mark.parametrize("phrase, expected", [
    ("dog", "dog"), ("Dogs", "dog"), ("the dog", "dog"), ("red cars", "red car"), ("Red  car", "red car"),
    ("persons riding a bicycle", "person riding a bicycle"), ("caf table", "café table"), ("cafe table", "café table"),
    ("café table", "café table"),
    ("car", None), ("cat", None), ("", None), ("the", None),
])
def test_match_prompt(phrase, expected):
    assert match_prompt(phrase, PROMPTS) == expected
