"""The detector backends (Grounding DINO, MM-Grounding-DINO, OWLv2) with tiny random models:
their boxes, prompts and scores against transformers' own post-processing of the same forward
pass, text chunks, batching, and the errors before any image."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from grounded_sam2.grounding import GroundingModelError, build_grounder, grounder_config

DINO_FAMILY = ["grounding-dino", "mm-grounding-dino"]
# more than the tiny models' 32-token text window holds
PROMPTS = ["dog", "red car", "person riding a bicycle", "big table", "blue truck", "small bird", "cat", "the horse",
           "a small dog", "red table", "big horse", "blue bird"]
IMAGES = [np.random.default_rng(i).integers(0, 255, (60, 80, 3), dtype=np.uint8) for i in range(2)]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def grounder(tiny_grounder, backend, **options):
    return build_grounder(grounder_config(f"{backend}:{tiny_grounder(backend)}", **options), device="cpu")


def clipped(boxes, width, height):
    return boxes.clamp(min=0).minimum(torch.tensor([width, height, width, height], dtype=boxes.dtype))


@pytest.mark.parametrize("backend, box_threshold, text_threshold", [
    ("grounding-dino", 0.5, 0.9), ("mm-grounding-dino", 0.6, 0.75),  # where their random scores fall
])
def test_dino_family_equals_transformers_post_processing(tiny_grounder, backend, box_threshold, text_threshold):
    """Per prompt, transformers' post-processing of the logits restricted to that prompt's tokens
    gives each query's score for the prompt; a box goes to its best prompt, and is kept when
    transformers' own (all-token) score passes box_threshold and the best prompt's text_threshold."""
    g = grounder(tiny_grounder, backend, box_threshold=box_threshold, text_threshold=text_threshold)
    chunks = g.chunks(PROMPTS)
    assert len(chunks) > 1 and [p for c in chunks for p in c.prompts] == PROMPTS
    ours = g.ground(IMAGES, PROMPTS)
    expected = [[] for _ in IMAGES]
    for chunk in chunks:
        inputs = g.processor(images=[Image.fromarray(i) for i in IMAGES], text=[chunk.caption] * len(IMAGES),
                             return_tensors="pt")
        with torch.no_grad():
            outputs = g.model(**inputs)
        post = g.processor.post_process_grounded_object_detection
        sizes = [image.shape[:2] for image in IMAGES]
        everything = post(outputs, inputs.input_ids, threshold=0.0, text_threshold=1.0, target_sizes=sizes)
        per_prompt = []
        for span in chunk.token_spans:
            only = dataclasses.replace(outputs, logits=torch.full_like(outputs.logits, float("-inf")))
            only.logits[..., list(span)] = outputs.logits[..., list(span)]
            per_prompt.append(post(only, inputs.input_ids, threshold=0.0, text_threshold=1.0, target_sizes=sizes))
        for i in range(len(IMAGES)):
            scores = torch.stack([p[i]["scores"] for p in per_prompt])  # prompts x queries
            best, prompt = scores.max(dim=0)
            boxes = clipped(everything[i]["boxes"], 80, 60)
            inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            keep = (everything[i]["scores"] > box_threshold) & (best > text_threshold) & inside
            kept = torch.nonzero(keep).flatten()
            expected[i] += [(chunk.prompts[int(prompt[q])], boxes[q], float(best[q])) for q in kept]
    for found, wanted in zip(ours, expected):
        assert 0 < len(found) < 2 * 20, "the thresholds should keep some queries and drop others"
        assert [b.prompt for b in found] == [w[0] for w in wanted]
        for box, (_, xyxy, score) in zip(found, wanted):
            np.testing.assert_allclose(box.xyxy, xyxy.numpy(), atol=1e-4)
            assert box.confidence == pytest.approx(score, abs=1e-6)


def test_owlv2_equals_transformers_post_processing(tiny_grounder):
    g = grounder(tiny_grounder, "owlv2", box_threshold=0.55)  # where the random scores fall
    images = [IMAGES[0], np.random.default_rng(5).integers(0, 255, (50, 90, 3), dtype=np.uint8)]
    ours = g.ground(images, PROMPTS)
    inputs = g.processor(images=[Image.fromarray(i) for i in images], text=[PROMPTS] * 2, return_tensors="pt")
    with torch.no_grad():
        outputs = g.model(**inputs)
    results = g.processor.post_process_grounded_object_detection(
        outputs, threshold=0.55, target_sizes=[i.shape[:2] for i in images], text_labels=[PROMPTS] * 2)
    for found, result, image in zip(ours, results, images):
        h, w = image.shape[:2]
        boxes = clipped(result["boxes"], w, h)
        inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        assert 0 < len(found) == int(inside.sum()) and len(result["scores"]) < outputs.logits.shape[1]
        assert [b.prompt for b in found] == [t for t, k in zip(result["text_labels"], inside) if k]
        np.testing.assert_allclose([b.xyxy for b in found], boxes[inside].numpy(), atol=1e-4)
        np.testing.assert_allclose([b.confidence for b in found], result["scores"][inside].numpy(), rtol=1e-6)


@pytest.mark.parametrize("backend", [*DINO_FAMILY, "owlv2"])
def test_batched_equals_one_by_one(tiny_grounder, backend):
    """Images of different sizes: the Grounding DINO family never pads one image to another's size."""
    g = grounder(tiny_grounder, backend, batch_size=4)
    images = IMAGES + [np.random.default_rng(9).integers(0, 255, (40, 70, 3), dtype=np.uint8)]
    batched = g.ground(images, PROMPTS[:3])
    single = [g.ground([image], PROMPTS[:3])[0] for image in images]
    for a, b in zip(batched, single):
        assert [x.prompt for x in a] == [y.prompt for y in b] and len(a)
        np.testing.assert_allclose([x.xyxy for x in a], [y.xyxy for y in b], atol=1e-3)
        np.testing.assert_allclose([x.confidence for x in a], [y.confidence for y in b], atol=1e-5)


@pytest.mark.parametrize("backend", DINO_FAMILY)
def test_a_prompt_too_long_for_the_text_window_is_refused(tiny_grounder, backend):
    g = grounder(tiny_grounder, backend)
    with pytest.raises(GroundingModelError, match="too long"):
        g.check_prompts(["dog", " ".join(["dog"] * 40)])
    with pytest.raises(GroundingModelError, match="empty once '.'"):
        g.check_prompts(["..."])


def test_owlv2_truncates_long_prompts_with_a_warning(tiny_grounder):
    g = grounder(tiny_grounder, "owlv2")
    with pytest.warns(UserWarning, match="OWLv2 reads the first 16"):
        g.check_prompts(["dog", " ".join(["dog"] * 20)])
    assert len(g.ground(IMAGES[:1], [" ".join(["dog"] * 20)])) == 1


def test_dots_are_removed_from_prompts(tiny_grounder):
    g = grounder(tiny_grounder, "grounding-dino")
    [chunk] = g.chunks(["st. bernard", "dog"])
    assert chunk.caption == "st bernard. dog." and len(chunk.token_spans[0]) > 1


@pytest.mark.parametrize("backend, other", [("owlv2", "grounding-dino"), ("grounding-dino", "owlv2"),
                                            ("mm-grounding-dino", "grounding-dino")])
def test_a_checkpoint_of_another_kind_is_refused(tiny_grounder, backend, other):
    with pytest.raises(GroundingModelError, match="holds a '.*' model, not"):
        build_grounder(grounder_config(f"{backend}:{tiny_grounder(other)}"), device="cpu")


@pytest.mark.parametrize("backend", [*DINO_FAMILY, "owlv2"])
def test_a_missing_checkpoint_says_how_to_get_it(tmp_path, backend):
    with pytest.raises(GroundingModelError, match="hf download"):
        build_grounder(grounder_config(f"{backend}:{tmp_path / 'none'}"), device="cpu")
