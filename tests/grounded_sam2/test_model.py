"""GroundedSAM2 end to end with tiny models: scripted Florence-2 answers -> prompts -> classes
-> SAM 2 masks -> sv.Detections."""

import cv2
import numpy as np
import pytest
import supervision as sv

from grounded_sam2 import GroundedSAM2, OntologyError
from grounded_sam2.errors import ModelNotAvailableError

from florence_script import ScriptedAnswers


def box(*bins):
    return "".join(f"<loc_{b}>" for b in bins)


def make_model(tiny_florence, small_sam2, ontology, answers, **kwargs) -> GroundedSAM2:
    model = GroundedSAM2(ontology, florence=str(tiny_florence), sam2=small_sam2, device="cpu", **kwargs)
    model.grounder.logits_processor = [ScriptedAnswers(model.grounder.processor.tokenizer, answers)]
    return model


@pytest.fixture
def image():
    """RGB image whose channels differ, so a BGR/RGB mix-up is visible."""
    img = np.zeros((60, 80, 3), np.uint8)
    img[..., 0] = 200
    img[10:40, 20:60] = (30, 160, 90)
    return img


def test_article_usage(tiny_florence, small_sam2, image, tmp_path):
    from autodistill.detection import CaptionOntology

    path = tmp_path / "dog.png"
    cv2.imwrite(str(path), image[:, :, ::-1])
    model = make_model(tiny_florence, small_sam2, CaptionOntology({"dog": "dog"}), ["dog" + box(250, 166, 750, 666)])
    detections = model.predict(str(path))
    assert isinstance(detections, sv.Detections) and len(detections) == 1
    assert detections.mask.shape == (1, 60, 80) and detections.mask.dtype == bool
    assert detections.class_id.tolist() == [0]
    assert list(detections.data["class_name"]) == ["dog"] and list(detections.data["prompt"]) == ["dog"]
    np.testing.assert_allclose(detections.xyxy[0], [20.04, 9.99, 60.04, 39.99], atol=0.01)
    expected = detections.data["grounding_confidence"] * detections.data["sam_iou"]
    np.testing.assert_allclose(detections.confidence, expected)
    assert 0 < detections.confidence[0] < 1


def test_shared_classes_and_prompts(tiny_florence, small_sam2, image):
    ontology = {"red car": "car", "dog": "dog", "blue car": "car"}
    answer = "blue car" + box(1, 1, 400, 400) + "dog" + box(500, 500, 900, 900) + "red car" + box(100, 500, 300, 990)
    detections = make_model(tiny_florence, small_sam2, ontology, [answer], nms_threshold=None).predict(image, rgb=True)
    assert detections.class_id.tolist() == [0, 1, 0]
    assert list(detections.data["class_name"]) == ["car", "dog", "car"]
    assert list(detections.data["prompt"]) == ["blue car", "dog", "red car"]


def test_numpy_is_bgr_unless_told(tiny_florence, small_sam2, image):
    model = make_model(tiny_florence, small_sam2, {"dog": "dog"}, [""] * 3)
    seen = []
    original = model.grounder.ground

    def recorded(images, prompts, prepared=None):
        seen.extend(images)
        return original(images, prompts, prepared)

    model.grounder.ground = recorded
    model.predict(image[:, :, ::-1])  # BGR, as cv2.imread gives
    model.predict(image, rgb=True)
    from PIL import Image

    model.predict(Image.fromarray(image))
    for received in seen:
        np.testing.assert_array_equal(received, image)


def test_no_detection_gives_empty_detections_with_image_sized_masks(tiny_florence, small_sam2, image):
    detections = make_model(tiny_florence, small_sam2, {"dog": "dog"}, ["unicorn" + box(1, 1, 5, 5)]).predict(image)
    assert len(detections) == 0 and detections.mask.shape == (0, 60, 80)
    assert set(detections.data) == {"class_name", "prompt", "grounding_confidence", "sam_iou"}


FILTER_ONTOLOGY = {"dog": "dog", "puppy": "dog", "cat": "cat"}
# dog and puppy: one class, the same box; cat: another class, a box overlapping them (IoU 0.86)
FILTER_ANSWER = "dog" + box(100, 100, 800, 800) + "puppy" + box(100, 100, 800, 800) + "cat" + box(100, 100, 800, 700)


def _best(confidence, prompts):
    return max(prompts, key=confidence.get)


@pytest.mark.parametrize("kwargs, expected", [
    (dict(nms_threshold=0.5), lambda c: sorted([_best(c, ["dog", "puppy"]), "cat"])),
    (dict(nms_threshold=0.5, class_agnostic_nms=True), lambda c: [_best(c, ["dog", "puppy", "cat"])]),
    (dict(nms_threshold=0.9), lambda c: sorted([_best(c, ["dog", "puppy"]), "cat"])),
    (dict(nms_threshold=None, min_box_area=0.45 * 60 * 80), lambda c: ["dog", "puppy"]),
    (dict(nms_threshold=None, min_confidence=1.01), lambda c: []),
], ids=["class nms", "agnostic nms", "high nms threshold", "min area", "min confidence"])
def test_filters(tiny_florence, small_sam2, image, kwargs, expected):
    unfiltered = make_model(tiny_florence, small_sam2, FILTER_ONTOLOGY, [FILTER_ANSWER],
                            nms_threshold=None).predict(image)
    assert list(unfiltered.data["prompt"]) == ["dog", "puppy", "cat"]
    confidence = dict(zip(unfiltered.data["prompt"], unfiltered.data["grounding_confidence"]))
    assert len(set(confidence.values())) == 3, "ties would make NMS order arbitrary"
    kept = make_model(tiny_florence, small_sam2, FILTER_ONTOLOGY, [FILTER_ANSWER], **kwargs).predict(image)
    assert sorted(kept.data["prompt"]) == sorted(expected(confidence))


def test_tighten_boxes_to_masks(tiny_florence, small_sam2, image):
    model = make_model(tiny_florence, small_sam2, {"dog": "dog"}, ["dog" + box(100, 100, 900, 900)], tighten_boxes=True)
    detections = model.predict(image, rgb=True)
    ys, xs = np.nonzero(detections.mask[0])
    assert len(xs), "random weights gave an empty mask; choose another box"
    np.testing.assert_array_equal(detections.xyxy[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def test_predict_batch_equals_predict(tiny_florence, small_sam2, image):
    answers = ["dog" + box(100, 100, 600, 600), "dog" + box(300, 200, 900, 800)]
    other = np.ascontiguousarray(image[::-1, :, :])
    batch = make_model(tiny_florence, small_sam2, {"dog": "dog"}, answers).predict_batch([image, other], rgb=True)
    single = make_model(tiny_florence, small_sam2, {"dog": "dog"}, answers)
    for detections, img in zip(batch, [image, other]):
        alone = single.predict(img, rgb=True)
        np.testing.assert_array_equal(detections.xyxy, alone.xyxy)
        assert (detections.mask == alone.mask).mean() > 0.999
        np.testing.assert_allclose(detections.confidence, alone.confidence, rtol=1e-3)


def test_segment_boxes_skips_grounding(tiny_florence, small_sam2, image):
    model = make_model(tiny_florence, small_sam2, {"dog": "dog", "cat": "cat"}, [])
    [detections] = model.segment_boxes([image], [np.array([[5, 5, 40, 30], [20, 10, 70, 50]])], [np.array([1, 0])],
                                       rgb=True)
    assert detections.class_id.tolist() == [1, 0] and list(detections.data["class_name"]) == ["cat", "dog"]
    assert detections.mask.shape == (2, 60, 80)
    np.testing.assert_allclose(detections.confidence, detections.data["sam_iou"])
    assert model.grounder.logits_processor[0].rows_started == 0


def test_ontology_errors_come_before_model_loading():
    with pytest.raises(OntologyError, match="empty"):
        GroundedSAM2({}, florence="/no/such/florence", sam2="/no/such.pt")


@pytest.mark.parametrize("options, lines", [
    (dict(florence="/no/such/florence"), ["- Florence-2: folder not found: /no/such/florence"]),
    (dict(florence="./tiny/flornce2", sam2="./tiny/sam.pt"),  # mistyped local paths, not hub ids
     ["- Florence-2: folder not found: ./tiny/flornce2", "- SAM 2 checkpoint file not found: ./tiny/sam.pt"]),
    ({}, ["- Florence-2 'florence-community/Florence-2-large' is not downloaded and the hub cannot be reached",
          "- SAM 2 'facebook/sam2.1-hiera-large' is not downloaded and the hub cannot be reached"]),
], ids=["missing folder", "mistyped paths", "hub ids offline"])
def test_every_missing_model_is_listed_in_one_error_before_any_loads(options, lines):
    with pytest.raises(ModelNotAvailableError) as raised:
        GroundedSAM2({"dog": "dog"}, device="cpu", **options)
    message = str(raised.value)
    assert all(any(m.startswith(line) for m in message.splitlines()) for line in lines), message
    assert "`grounded-sam2 make-tiny-models tiny/`" in message  # the way to an offline smoke run
    if not options:
        assert "`hf download florence-community/Florence-2-large`" in message
        assert "`hf download facebook/sam2.1-hiera-large sam2.1_hiera_large.pt`" in message


def test_a_grounder_in_the_hub_cache_loads_offline(tiny_florence, small_sam2, tmp_path, monkeypatch):
    """The default Florence-2, already downloaded into the hub cache, loads without the network."""
    import shutil

    import huggingface_hub.constants

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    repo = cache / "models--florence-community--Florence-2-large"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(tiny_florence, repo / "snapshots" / revision)
    model = GroundedSAM2({"dog": "dog"}, sam2=small_sam2, device="cpu")
    assert model.pipeline.describe()["grounder"]["checkpoint"] == "florence-community/Florence-2-large"
    assert len(model.predict(np.zeros((40, 60, 3), np.uint8))) == 1  # the tiny model's one dog


def test_tiny_models_load_by_path_and_always_find_one_dog(tmp_path):
    """make-tiny-models: both models load through the real loaders by path and go all the way
    to a mask (their one fixed answer), for offline smoke runs."""
    from grounded_sam2.tiny_models import make_tiny_models

    florence, sam2 = make_tiny_models(tmp_path)
    model = GroundedSAM2({"dog": "dog", "cat": "cat"}, florence=str(florence), sam2=str(sam2), device="cpu")
    detections = model.predict(np.zeros((64, 96, 3), np.uint8))
    assert list(detections.data["prompt"]) == ["dog"] and detections.mask.shape == (1, 64, 96)
    np.testing.assert_allclose(detections.xyxy[0],
                               [(100.5) * 96 / 1000, 150.5 * 64 / 1000, 600.5 * 96 / 1000, 700.5 * 64 / 1000],
                               atol=1e-3)
