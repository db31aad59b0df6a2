"""Choosing each class's prompt by measuring candidates on hand-labeled images.

A candidates file lists, per class of the truth dataset, alternative prompts::

    dog: ["dog", "a dog", "puppy"]
    car: [car, "red car"]

Every candidate is grounded on every truth image, its boxes segmented by SAM 2 and scored
against that class's truth objects with :mod:`grounded_sam2.evaluation` (mask AP where the truth
has masks, else box AP; ties by best F1). The scores are the **grounding confidences**, so a
curve's thresholds are ``--min-confidence`` values.

- Grounding runs once per image for all candidates when the backend's prompts are independent
  (Florence-2's ``open_vocabulary``: one request per prompt). Where prompts are read together (a
  Florence-2 caption, Grounding DINO's text, OWLv2's competing queries) a candidate's boxes depend
  on the other prompts, so the candidates are asked in rounds: round r asks the r-th candidate of
  every class together, as a labeling run with those prompts would. SAM 2 encodes each image once
  per batch and decodes the boxes of every candidate.
- Boxes are filtered as labeling filters them (area, NMS per candidate, that is per class) but
  with no minimum confidence, so that the curves cover every threshold; COCO matching and NMS both
  go by confidence, so keeping the boxes above a threshold afterwards is what that threshold gives.
  Class-agnostic NMS is not applied (the candidates of a class would suppress each other).
- The result: a ranked table per class, the best ontology as YAML that ``label --ontology`` takes,
  and the ``--min-confidence`` that maximises F1 over all classes with the chosen prompts (halfway
  between the last score it keeps and the next lower one, so that scores moving in their last
  digits in another batch do not cross it; 0 when keeping every box is best).
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import yaml

from .config import PipelineConfig
from .datasets.reading import Instances, LabeledDataset, read_dataset
from .errors import GroundedSAM2Error
from .evaluation import Evaluation, clip_text, evaluate_instances
from .filters import filter_boxes
from .images import to_rgb_uint8
from .ontology import Ontology
from .pipeline import Pipeline
from .segmentation import BoxRequest


class PromptTuningError(GroundedSAM2Error, ValueError):
    """Candidates that cannot be tuned."""


@dataclass(frozen=True)
class Candidate:
    """One prompt for one class, and its figures on the truth images."""

    class_name: str
    prompt: str
    evaluation: Evaluation

    @property
    def kind(self) -> str:
        """"mask" when masks were measured, else "box"."""
        return "mask" if "mask" in self.evaluation.metrics else "box"

    @property
    def ap(self) -> float:
        return self.evaluation.metrics[self.kind]["AP"] or 0.0

    @property
    def ap50(self) -> float:
        return self.evaluation.metrics[self.kind]["AP50"] or 0.0

    @property
    def best(self) -> Dict[str, Optional[float]]:
        return self.evaluation.curves[self.kind]["all"].best


@dataclass
class TuningResult:
    """Candidates ranked per class (best first), the chosen ontology and the F1-optimal minimum
    confidence over all classes with the chosen prompts."""

    ranked: Dict[str, List[Candidate]]
    images: int
    min_confidence: Optional[float]
    f1: float

    @property
    def ontology(self) -> Dict[str, str]:
        """{prompt: class}: each class's best candidate."""
        return {candidates[0].prompt: name for name, candidates in self.ranked.items()}

    def table(self) -> str:
        lines = [f"{self.images} truth images; prompts ranked per class by "
                 f"{next(iter(self.ranked.values()))[0].kind} AP (scores: grounding confidence)"]
        for name, candidates in self.ranked.items():
            lines += ["", f"{name}", f"  {'rank':<6}{'prompt':<32}{'AP':>8}{'AP50':>8}{'F1':>8}{'at conf':>9}"]
            for rank, c in enumerate(candidates, start=1):
                threshold = "-" if c.best["threshold"] is None else f"{c.best['threshold']:.3f}"
                lines.append(f"  {rank:<6}{clip_text(json.dumps(c.prompt), 31):<32}{c.ap:>8.3f}{c.ap50:>8.3f}"
                             f"{c.best['f1']:>8.3f}{threshold:>9}")
        confidence = "-" if self.min_confidence is None else f"{self.min_confidence:.3f}"
        lines += ["", f"best ontology: {json.dumps(self.ontology)}",
                  f"best --min-confidence over all classes: {confidence} (F1 {self.f1:.3f})"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def ontology_yaml(self) -> str:
        """The chosen ontology as a YAML file ``label --ontology`` reads, the tuning in comments."""
        header = [f"# grounded-sam2 tune-prompts on {self.images} truth images: each class's best prompt"]
        if self.min_confidence is not None:
            header.append(f"# label with --min-confidence {self.min_confidence:.4f} (F1 {self.f1:.3f} on these images)")
        return "\n".join(header + [f"{json.dumps(p)}: {json.dumps(c)}" for p, c in self.ontology.items()]) + "\n"


def read_candidates(source: Union[str, Path, Mapping[str, Sequence[str]]]) -> Dict[str, List[str]]:
    """{class: [prompt, ...]} from a YAML/JSON file or a mapping; each class at least one prompt."""
    if isinstance(source, Mapping):
        data, where = source, "candidates"
    else:
        path = Path(source)
        if not path.is_file():
            raise PromptTuningError(f"candidates file not found: {path}")
        try:
            data, where = yaml.safe_load(path.read_text()), str(path)
        except yaml.YAMLError as e:
            raise PromptTuningError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, Mapping) or not data:
        raise PromptTuningError(f"{where} must map each class to a list of prompts, e.g. dog: [dog, a dog, puppy]")
    candidates = {}
    for name, prompts in data.items():
        prompts = [prompts] if isinstance(prompts, str) else prompts
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise PromptTuningError(f"{where}: {name!r} must list non-blank prompts, got {prompts!r}")
        candidates[str(name)] = list(dict.fromkeys(p.strip() for p in prompts))
    return candidates


def tune_prompts(
    truth: Union[str, Path, LabeledDataset],
    candidates: Union[str, Path, Mapping[str, Sequence[str]]],
    options: Optional[Mapping] = None,
    pipeline: Optional[Pipeline] = None,
    batch_size: int = 4,
    progress: bool = True,
) -> TuningResult:
    """Rank each class's candidate prompts on the truth images; see the module docstring.

    Arguments:
      truth: the hand-labeled dataset (anything :func:`read_dataset` reads).
      candidates: {class: [prompts]} or a file of it; every class must be a truth class.
      options: the flat options of :meth:`PipelineConfig.from_options` (models, grounding, device,
        filters; ``min_confidence`` is ignored, see above).
      pipeline: built models to use instead (its ontology is ignored); ``options`` then unused.
      batch_size: images per grounding and SAM 2 call.
    """
    truth = truth if isinstance(truth, LabeledDataset) else read_dataset(Path(truth))
    candidates = read_candidates(candidates)
    unknown = [c for c in candidates if c not in truth.classes]
    if unknown:
        raise PromptTuningError(f"classes {unknown} are not in the truth dataset's classes {list(truth.classes)}")
    if not truth.images:
        raise PromptTuningError(f"the truth dataset {truth.path} holds no images")
    missing = [str(image.path) for image in truth.images if not image.path.is_file()]
    if missing:
        raise PromptTuningError(f"{len(missing)} images of the truth dataset are not on disk: {', '.join(missing[:3])}"
                                f"{', ...' if len(missing) > 3 else ''} (tuning runs the models on them)")
    prompts = list(dict.fromkeys(p for ps in candidates.values() for p in ps))
    if pipeline is None:
        config = PipelineConfig.from_options(Ontology.from_pairs((p, p) for p in prompts), **dict(options or {}))
        pipeline = Pipeline(config)
    filters = dataclasses.replace(pipeline.config.filters, min_confidence=0.0, class_agnostic_nms=False)
    pipeline.grounder.check_prompts(prompts)
    rounds = [prompts] if pipeline.config.grounder.prompts_independent else _rounds(candidates)

    pairs: Dict[Tuple[str, str], List[Tuple[Instances, Instances]]] = {
        (name, p): [] for name, ps in candidates.items() for p in ps}
    from tqdm.auto import tqdm

    bar = tqdm(total=len(truth.images), desc="tuning prompts", unit="image", disable=not progress)
    for start in range(0, len(truth.images), batch_size):
        images = truth.images[start : start + batch_size]
        arrays = [to_rgb_uint8(image.path) for image in images]
        truths = [truth.instances(image) for image in images]
        requests: List[List[BoxRequest]] = [[] for _ in images]
        for round_prompts in rounds:
            for i, boxes in enumerate(pipeline.grounder.ground(arrays, round_prompts)):
                kept = filter_boxes(boxes, filters, round_prompts.index)
                requests[i] += [BoxRequest(b.xyxy, round_prompts.index(b.prompt), b.prompt, b.confidence, b.prompt)
                                for b in kept]
        for array, instances, detections in zip(arrays, truths, pipeline.segmenter.segment(arrays, requests)):
            truth_of = {name: _only_class(instances, truth.classes.index(name)) for name in candidates}
            prompt_of = np.asarray(detections.data["prompt"])
            for (name, prompt), found in pairs.items():
                found.append((truth_of[name], _as_instances(detections, prompt_of == prompt, *array.shape[:2])))
        bar.update(len(images))
    bar.close()

    ranked: Dict[str, List[Candidate]] = {}
    for (name, prompt), found in pairs.items():
        evaluation = evaluate_instances(found, [name])
        ranked.setdefault(name, []).append(Candidate(name, prompt, evaluation))
    for name in ranked:  # stable: the file's order breaks full ties
        ranked[name].sort(key=lambda c: (-c.ap, -c.best["f1"]))
    chosen = {name: ranked_[0].prompt for name, ranked_ in ranked.items()}
    pooled = evaluate_instances(_pooled(pairs, chosen, truth.classes), truth.classes)
    kind = "mask" if "mask" in pooled.metrics else "box"
    curve = pooled.curves[kind]["all"]
    return TuningResult(ranked, len(truth.images), curve.best_cut, curve.best["f1"])


def _rounds(candidates: Dict[str, List[str]]) -> List[List[str]]:
    """Round r: the r-th candidate of every class, each prompt in the first round that has it."""
    asked, rounds = set(), []
    for r in range(max(map(len, candidates.values()))):
        round_prompts = [ps[r] for ps in candidates.values() if r < len(ps) and ps[r] not in asked]
        asked.update(round_prompts)
        rounds.append(list(dict.fromkeys(round_prompts)))
    return [r for r in rounds if r]


def _only_class(instances: Instances, k: int) -> Instances:
    """The objects of class k, as class 0."""
    keep = instances.class_ids == k
    return instances.select(keep, np.zeros(int(keep.sum()), int))


def _as_instances(detections, keep: np.ndarray, height: int, width: int) -> Instances:
    """The kept detections as class 0 objects scored by their grounding confidence."""
    from pycocotools import mask as mask_utils

    masks = detections.mask[keep]
    rles = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]
    n = int(keep.sum())
    return Instances(height, width, np.zeros(n, int), detections.xyxy[keep].astype(np.float32), rles,
                     np.asarray(detections.data["grounding_confidence"], np.float32)[keep], np.zeros(n, bool))


def _pooled(pairs, chosen: Dict[str, str], classes: Sequence[str]) -> List[Tuple[Instances, Instances]]:
    """Per image, every truth class's objects and the chosen candidates' detections together."""
    pooled = []
    per_class = {name: pairs[(name, prompt)] for name, prompt in chosen.items()}
    first = next(iter(per_class.values()))
    for i in range(len(first)):
        truths = [(classes.index(name), found[i][0]) for name, found in per_class.items()]
        predictions = [(classes.index(name), found[i][1]) for name, found in per_class.items()]
        pooled.append((_joined(truths), _joined(predictions)))
    return pooled


def _joined(parts: List[Tuple[int, Instances]]) -> Instances:
    first = parts[0][1]
    scores = [p.scores for _, p in parts]
    return Instances(
        first.height, first.width, np.concatenate([np.full(len(p), k, int) for k, p in parts]),
        np.concatenate([p.xyxy for _, p in parts]).reshape(-1, 4), [r for _, p in parts for r in p.rles],
        None if any(s is None for s in scores) else np.concatenate(scores),
        np.concatenate([p.iscrowd for _, p in parts]))
