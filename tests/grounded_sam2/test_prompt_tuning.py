"""Choosing prompts on hand labels: with scripted Florence-2 answers where one candidate finds the
truth's box and another does not, the right one ranks first, for both ways of asking (all
candidates at once, or in rounds), and the written ontology labels with it."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from grounded_sam2 import GroundedSAM2, cli
from grounded_sam2.config import PipelineConfig
from grounded_sam2.grounding import GROUNDERS
from grounded_sam2.grounding.florence2_tokens import bins_to_xyxy
from grounded_sam2.ontology import Ontology
from grounded_sam2.pipeline import Pipeline
from grounded_sam2.prompt_tuning import PromptTuningError, read_candidates, tune_prompts
from grounded_sam2.tiny_models import make_tiny_models

from florence_script import ScriptedAnswers

H, W = 48, 64
DOG, CAT, ELSEWHERE = (100, 150, 450, 700), (600, 100, 950, 500), (550, 750, 950, 990)


def loc(bins) -> str:
    return "".join(f"<loc_{b}>" for b in bins)


@pytest.fixture
def truth(tmp_path) -> Path:
    """Two images, each with one dog and one cat box (COCO, boxes only)."""
    images, annotations = [], []
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((H, W, 3), 60 + 80 * i, np.uint8))
        images.append({"id": i + 1, "file_name": f"img{i}.png", "width": W, "height": H})
        for category, bins in ((1, DOG), (2, CAT)):
            x0, y0, x1, y1 = bins_to_xyxy(bins, W, H)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": category,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0})
    path = tmp_path / "truth.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}]}))
    return path


def pipeline(tiny_florence, small_sam2, strategy: str, answers) -> Pipeline:
    config = PipelineConfig.from_options({"x": "x"}, florence=str(tiny_florence), sam2=small_sam2, device="cpu",
                                         strategy=strategy)
    built = Pipeline(config)
    built.grounder.logits_processor = [ScriptedAnswers(built.grounder.processor.tokenizer, answers)]
    return built


# per image, the rows the grounder is asked, in order: all candidates at once (one request per prompt),
# or round by round (the r-th candidate of each class in one caption)
ANSWERS = {
    "open_vocabulary": [f"puppy{loc(ELSEWHERE)}", f"dog{loc(DOG)}", f"cat{loc(CAT)}"] * 2,
    "phrase_grounding": [f"puppy{loc(ELSEWHERE)}cat{loc(CAT)}"] * 2 + [f"dog{loc(DOG)}"] * 2,
}


@pytest.mark.parametrize("strategy", list(ANSWERS))
def test_the_candidate_that_finds_the_truth_ranks_first(tiny_florence, small_sam2, truth, tmp_path, strategy):
    models = pipeline(tiny_florence, small_sam2, strategy, ANSWERS[strategy])
    result = tune_prompts(truth, {"dog": ["puppy", "dog"], "cat": ["cat"]}, pipeline=models, progress=False)
    assert models.grounder.logits_processor[0].queue == []  # every scripted row was asked
    dog = result.ranked["dog"]
    assert [c.prompt for c in dog] == ["dog", "puppy"] and dog[0].kind == "box"
    assert dog[0].ap == pytest.approx(1.0) and dog[1].ap == 0.0 and dog[1].best["f1"] == 0.0
    assert result.ontology == {"dog": "dog", "cat": "cat"} and result.f1 == pytest.approx(1.0)
    assert result.min_confidence == 0.0  # every box of the chosen prompts is right: keep them all
    table = result.table()
    assert table.index('"dog"') < table.index('"puppy"') and "--min-confidence" in table

    written = tmp_path / "best.yaml"
    written.write_text(result.ontology_yaml())
    assert Ontology.load(written).to_dict() == {"dog": "dog", "cat": "cat"}
    assert f"--min-confidence {result.min_confidence:.4f}" in written.read_text()
    # the written ontology labels with the chosen prompt
    model = GroundedSAM2(str(written), florence=str(tiny_florence), sam2=small_sam2, device="cpu", strategy=strategy,
                         min_confidence=result.min_confidence)
    answers = [f"dog{loc(DOG)}", f"cat{loc(CAT)}"] if strategy == "open_vocabulary" else [f"dog{loc(DOG)}cat{loc(CAT)}"]
    model.grounder.logits_processor = [ScriptedAnswers(model.grounder.processor.tokenizer, answers)]
    detections = model.predict(str(truth.parent / "img0.png"))
    assert sorted(detections.data["class_name"].tolist()) == ["cat", "dog"]
    assert sorted(detections.data["prompt"].tolist()) == ["cat", "dog"]


def test_the_command_writes_the_best_ontology(truth, tmp_path, capsys):
    """The command end to end (a random model answers nothing: every candidate scores 0, the file's
    first stays first, and no threshold is found)."""
    florence, sam2 = make_tiny_models(tmp_path / "tiny")
    candidates = tmp_path / "candidates.yaml"
    candidates.write_text('dog: ["a dog", dog]\ncat: cat\n')
    out = tmp_path / "best.yaml"
    code = cli.main(["tune-prompts", str(truth), "--candidates", str(candidates), "-o", str(out),
                     "--florence", str(florence), "--sam2", str(sam2), "--device", "cpu", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == cli.EXIT_OK and '"a dog"' in printed and "best ontology" in printed
    assert Ontology.load(out).to_dict() == {"a dog": "dog", "cat": "cat"}


@pytest.mark.parametrize("candidates, message", [
    ({}, "must map each class"),
    ({"dog": []}, "must list non-blank prompts"),
    ({"dog": ["ok", " "]}, "must list non-blank prompts"),
    ({"dog": [3]}, "must list non-blank prompts"),
    ("missing.yaml", "candidates file not found"),
    ("bad.yaml", "not valid YAML"),
])
def test_bad_candidates_are_clear_errors(tmp_path, candidates, message):
    (tmp_path / "bad.yaml").write_text("dog: [a\n")
    if isinstance(candidates, str):
        candidates = tmp_path / candidates
    with pytest.raises(PromptTuningError, match=message):
        read_candidates(candidates)


def test_a_class_the_truth_lacks_or_missing_images_are_refused_before_any_model_loads(truth):
    with pytest.raises(PromptTuningError, match=r"classes \['horse'\] are not in the truth"):
        tune_prompts(truth, {"horse": ["horse"]}, options={"sam2": "missing.pt"})
    (truth.parent / "img1.png").unlink()
    with pytest.raises(PromptTuningError, match=r"1 images of the truth dataset are not on disk: .*img1.png"):
        tune_prompts(truth, {"dog": ["dog"]}, options={"sam2": "missing.pt"})


@pytest.mark.parametrize("backend", [b for b in GROUNDERS if b != "florence2"])  # Florence-2: above
def test_the_other_backends_are_asked_in_rounds(backend, tiny_grounder, small_sam2, truth):
    """Backends whose prompts are read together get one candidate per class per request; each
    candidate is ranked and the chosen ontology has one prompt per class."""
    config = PipelineConfig.from_options({"x": "x"}, grounder=f"{backend}:{tiny_grounder(backend)}", sam2=small_sam2,
                                         device="cpu")
    models = Pipeline(config)
    asked = []
    ground = models.grounder.ground
    models.grounder.ground = lambda images, prompts: asked.append(list(prompts)) or ground(images, prompts)
    result = tune_prompts(truth, {"dog": ["puppy", "dog"], "cat": ["cat"]}, pipeline=models, progress=False)
    assert asked == [["puppy", "cat"], ["dog"]]
    assert sorted(c.prompt for c in result.ranked["dog"]) == ["dog", "puppy"] and len(result.ranked["cat"]) == 1
    assert set(result.ontology.values()) == {"dog", "cat"}
