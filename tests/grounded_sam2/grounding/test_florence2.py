"""Florence-2 grounding with a tiny random model and scripted answers: request layout,
phrase -> prompt mapping, chunking, strategies, batching, confidences, errors."""

import numpy as np
import pytest

from grounded_sam2.errors import SettingsError
from grounded_sam2.grounding import Florence2Config, Florence2Grounder, GroundingModelError
from grounded_sam2.grounding.florence2_tokens import bins_to_xyxy

from florence_script import ScriptedAnswers

IMAGES = [np.full((40, 60, 3), 90, np.uint8), np.random.default_rng(0).integers(0, 255, (50, 30, 3), dtype=np.uint8)]


def grounder(tiny_florence, answers=(), **settings) -> Florence2Grounder:
    g = Florence2Grounder(Florence2Config(str(tiny_florence), **settings), device="cpu")
    g.logits_processor = [ScriptedAnswers(g.processor.tokenizer, answers, settings.get("num_beams", 1))]
    return g


def box(*bins):
    return "".join(f"<loc_{b}>" for b in bins)


@pytest.mark.parametrize("strategy, task", [
    ("phrase_grounding", "<CAPTION_TO_PHRASE_GROUNDING>"), ("open_vocabulary", "<OPEN_VOCABULARY_DETECTION>"),
])
def test_request_layout_equals_the_processor(tiny_florence, strategy, task):
    g = grounder(tiny_florence, strategy=strategy)
    from PIL import Image

    expected = g.processor(text=[task + "dog. red car"], images=[Image.fromarray(IMAGES[0])], return_tensors="pt")
    ours = g.processor.tokenizer(g.row_text("dog. red car"), add_special_tokens=False)["input_ids"]
    assert ours == expected["input_ids"][0].tolist()


def test_phrase_grounding_maps_phrases_to_prompts(tiny_florence):
    prompts = ["dog", "red car", "café table"]
    answers = [
        "Dogs" + box(100, 200, 300, 400) + box(500, 500, 600, 700) + "the image" + box(0, 0, 999, 999)
        + " red cars" + box(1, 2, 3, 4),
        "caf table" + box(10, 20, 990, 980) + "unicorn" + box(5, 5, 6, 6),
    ]
    g = grounder(tiny_florence, answers)
    results = g.ground(IMAGES, prompts)
    assert [(b.prompt, b.phrase) for b in results[0]] == [("dog", "Dogs"), ("dog", "Dogs"), ("red car", "red cars")]
    assert [(b.prompt, b.phrase) for b in results[1]] == [("café table", "caf table")]
    assert results[0][0].xyxy == pytest.approx(bins_to_xyxy((100, 200, 300, 400), 60, 40))
    assert results[1][0].xyxy == pytest.approx(bins_to_xyxy((10, 20, 990, 980), 30, 50))
    for b in results[0] + results[1]:
        assert 0.0 < b.confidence <= 1.0
    assert g.logits_processor[0].rows_started == 2  # one request per image


def test_open_vocabulary_asks_once_per_prompt(tiny_florence):
    answers = ["dog" + box(1, 2, 3, 4), "", "dog" + box(7, 8, 9, 10), "red car" + box(4, 4, 8, 8)]
    g = grounder(tiny_florence, answers, strategy="open_vocabulary")
    results = g.ground(IMAGES, ["dog", "red car"])
    assert [b.prompt for b in results[0]] == ["dog"]
    assert [b.prompt for b in results[1]] == ["dog", "red car"]
    assert g.logits_processor[0].rows_started == 4


def test_long_ontologies_are_split_to_fit_the_encoder(tiny_florence):
    prompts = [f"object number {i} with a rather long descriptive name" for i in range(40)]
    g = grounder(tiny_florence)
    groups = g.prompt_groups(prompts)
    assert len(groups) > 1 and sum(groups, []) == prompts
    for group in groups:
        assert g._length(". ".join(group)) <= g._max_positions
    answers = [prompts[0] + box(1, 1, 2, 2)] + [""] * (len(groups) - 1)
    g.logits_processor = [ScriptedAnswers(g.processor.tokenizer, answers)]
    results = g.ground(IMAGES[:1], prompts)
    assert [b.prompt for b in results[0]] == [prompts[0]]


def test_a_prompt_longer_than_the_encoder_is_refused(tiny_florence):
    with pytest.raises(GroundingModelError, match="too long"):
        grounder(tiny_florence).prompt_groups(["x" * 2000])


@pytest.mark.parametrize("num_beams", [1, 2])
def test_batched_rows_equal_single_rows(tiny_florence, num_beams):
    """Right padding: a row's confidences do not depend on what it is batched with."""
    prompts = ["dog", "a much longer prompt about a red car"]
    answers = ["dog" + box(1, 2, 3, 4), "red" + box(9, 9, 20, 20), "dog" + box(5, 6, 7, 8), "x" + box(1, 1, 1, 1)]
    per_row = grounder(tiny_florence, answers, strategy="open_vocabulary", batch_size=1, num_beams=num_beams)
    batched = grounder(tiny_florence, answers, strategy="open_vocabulary", batch_size=4, num_beams=num_beams)
    a, b = per_row.ground(IMAGES, prompts), batched.ground(IMAGES, prompts)
    assert [[x.prompt for x in r] for r in a] == [[x.prompt for x in r] for r in b]
    for ra, rb in zip(a, b):
        for x, y in zip(ra, rb):
            assert x.xyxy == y.xyxy
            assert x.confidence == pytest.approx(y.confidence, rel=1e-4)


def test_missing_model_says_how_to_get_it(tmp_path):
    with pytest.raises(GroundingModelError, match="hf download"):
        Florence2Grounder(Florence2Config(str(tmp_path / "no-model")), device="cpu")


@pytest.mark.parametrize("kwargs, message", [
    (dict(strategy="od"), "strategy must be one of"), (dict(num_beams=0), "num_beams"),
    (dict(batch_size=0), "batch_size"),
    (dict(max_new_tokens=0), "max_new_tokens"), (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(SettingsError, match=message):
        Florence2Config(**kwargs)


def test_describe_records_every_setting_and_the_resolved_checkpoint(tiny_florence, monkeypatch):
    monkeypatch.chdir(tiny_florence.parent)
    g = Florence2Grounder(Florence2Config(tiny_florence.name, num_beams=2), device="cpu")
    assert g.describe() == {"backend": "florence2", "checkpoint": str(tiny_florence.resolve()),
                            "strategy": "phrase_grounding", "num_beams": 2, "max_new_tokens": 512,
                            "no_repeat_ngram_size": 0, "batch_size": 8}


@pytest.mark.parametrize("side", [None, 768])  # the tiny model's own 32, and the published models'
def test_pixels_prepared_one_image_at_a_time_are_the_batchs(tiny_florence, side):
    import torch

    g = grounder(tiny_florence)
    if side is not None:
        g.processor.image_processor.size = {"height": side, "width": side}
    images = IMAGES + [np.random.default_rng(1).integers(0, 255, (720, 1280, 3), dtype=np.uint8)]
    batch = g._pixel_values(images)
    assert batch.shape[0] == 3 and (side is None or batch.shape[-2:] == (side, side))
    assert torch.equal(torch.cat([g.prepare(image) for image in images]), batch)


def test_grounding_prepared_pixels_gives_the_same_boxes_and_confidences(tiny_florence):
    answers = ["dog" + box(100, 200, 300, 400) + "red car" + box(1, 2, 3, 4)] * 4
    plain = grounder(tiny_florence, answers).ground(IMAGES, ["dog", "red car"])
    g = grounder(tiny_florence, answers)
    prepared = g.ground(IMAGES, ["dog", "red car"], [g.prepare(image) for image in IMAGES])
    assert prepared == plain and all(len(boxes) == 2 for boxes in plain)
