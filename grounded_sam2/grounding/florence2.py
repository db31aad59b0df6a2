"""The Florence-2 grounding backend (``florence2``): transformers' native classes, no remote
code, find a box for every object matching the ontology's prompts.

Two strategies:
- ``"phrase_grounding"`` (default): ``<CAPTION_TO_PHRASE_GROUNDING>`` with all prompts in one
  caption per image, split into chunks so that image tokens plus prompt stay within the text
  encoder's positions (1024 in the released models); returned phrases are mapped back to prompts
  (case, spacing, articles, plurals, accents) and phrases matching no prompt are dropped.
- ``"open_vocabulary"``: ``<OPEN_VOCABULARY_DETECTION>`` once per prompt.

Each image's vision features are computed once and shared by all its chunks or prompts; many
(image, prompt) rows are decoded per ``generate`` call, right-padded. Generation is explicit:
greedy by default (``num_beams``), ``no_repeat_ngram_size`` off, ``max_new_tokens`` set. Box
confidences: see :mod:`grounded_sam2.grounding.florence2_tokens`.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from segmenter.device import resolve_device

from ..errors import SettingsError
from .base import GroundedBox, GrounderConfig, GroundingModelError
from .florence2_tokens import bins_to_xyxy, parse_grounding
from .loading import load_model_and_processor
from .matching import match_prompt

DEFAULT_FLORENCE = "florence-community/Florence-2-large"
TASKS = {
    "phrase_grounding": ("<CAPTION_TO_PHRASE_GROUNDING>", "Locate the phrases in the caption: {}"),
    "open_vocabulary": ("<OPEN_VOCABULARY_DETECTION>", "Locate {} in the image."),
}
CAPTION_SEPARATOR = ". "


@dataclass(frozen=True)
class Florence2Config(GrounderConfig):
    """Which Florence-2 and how it is asked and decoded."""

    backend = "florence2"
    display_name = "Florence-2"
    model_type = "florence2"
    model_class = "Florence2ForConditionalGeneration"
    checkpoint_help = (
        " Native checkpoints are florence-community/Florence-2-large and florence-community/Florence-2-base "
        "(the remote-code microsoft/* repositories do not load with transformers 5)."
    )
    checkpoint: str = DEFAULT_FLORENCE  # hub id or local directory of a native checkpoint
    strategy: str = "phrase_grounding"  # or "open_vocabulary"
    num_beams: int = 1  # 1: greedy
    max_new_tokens: int = 512
    no_repeat_ngram_size: int = 0
    batch_size: int = 8  # (image, prompt) rows per generate call

    @property
    def prompts_independent(self) -> bool:
        return self.strategy == "open_vocabulary"  # one request per prompt; a caption joins them

    def __post_init__(self) -> None:
        if self.strategy not in TASKS:
            raise SettingsError(f"strategy must be one of {sorted(TASKS)}, got {self.strategy!r}")
        for name in ("num_beams", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.no_repeat_ngram_size < 0:
            raise SettingsError(f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}")


class Florence2Grounder:
    """Finds boxes for text prompts with Florence-2 (a :class:`~grounded_sam2.grounding.Grounder`)."""

    def __init__(
        self, config: Florence2Config = Florence2Config(), device=None, bf16: bool = True, logits_processor=None
    ) -> None:
        """
        Arguments:
          config: checkpoint, strategy and generation settings.
          device: torch device; None picks CUDA, then MPS, then CPU.
          bf16: bfloat16 weights on CUDA.
          logits_processor: extra transformers LogitsProcessorList applied during decoding
            (constrained decoding; the tests script known answers with it).
        """
        self.config = config
        self.device = resolve_device(device)
        self.processor, self.model = load_model_and_processor(config, self.device, bf16)
        self.logits_processor = logits_processor
        self.generation_options: Dict[str, Any] = {}  # more generate() arguments: speed switches (speed.py)
        tokenizer = self.processor.tokenizer
        self._image_token_id = self.model.config.image_token_id
        self._num_image_tokens = self.processor.image_processor.image_seq_length
        self._max_positions = self.model.config.text_config.max_position_embeddings
        self._location_ids = {tokenizer.convert_tokens_to_ids(f"<loc_{i}>"): i for i in range(1000)}
        self._stop_ids = (tokenizer.eos_token_id, tokenizer.pad_token_id)
        self._skip_ids = (tokenizer.bos_token_id,)  # answers start with a forced <s>

    def describe(self) -> Dict[str, Any]:
        """The settings that decide the boxes, for a dataset's manifest."""
        return self.config.to_dict()

    def check_prompts(self, prompts: Sequence[str]) -> None:
        """Raises :class:`GroundingModelError` for a prompt too long for the text encoder."""
        self.prompt_groups(prompts)

    # --- prompts -------------------------------------------------------------------------------

    def row_text(self, prompt_text: str) -> str:
        """The encoder input for one request, exactly as Florence2Processor lays it out."""
        tokenizer = self.processor.tokenizer
        template = TASKS[self.config.strategy][1]
        image_tokens = tokenizer.image_token * self._num_image_tokens
        return image_tokens + tokenizer.bos_token + template.format(prompt_text) + tokenizer.eos_token

    def _length(self, prompt_text: str) -> int:
        return len(self.processor.tokenizer(self.row_text(prompt_text), add_special_tokens=False)["input_ids"])

    def prompt_groups(self, prompts: Sequence[str]) -> List[List[str]]:
        """The prompts of one request each: per prompt, or captions chunked to fit the encoder."""
        for prompt in prompts:
            if self._length(prompt) > self._max_positions:
                raise GroundingModelError(
                    f"prompt {prompt[:60]!r}... is too long for Florence-2 ({self._max_positions} positions "
                    f"including {self._num_image_tokens} image tokens)"
                )
        if self.config.strategy == "open_vocabulary":
            return [[p] for p in prompts]
        groups: List[List[str]] = [[]]
        for prompt in prompts:
            candidate = groups[-1] + [prompt]
            if groups[-1] and self._length(CAPTION_SEPARATOR.join(candidate)) > self._max_positions:
                groups.append([prompt])
            else:
                groups[-1] = candidate
        return groups

    # --- decoding ------------------------------------------------------------------------------

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """The image processor's pixels of one RGB HxWx3 uint8 image: 1x3xSxS float32 on the
        CPU (S = 768 for the published models). Resizing and normalizing take 50-80 ms an image
        on one CPU core, so labeling makes them in its loader threads."""
        return self._pixel_values([image])

    def _pixel_values(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        from PIL import Image

        return self.processor.image_processor(images=[Image.fromarray(img) for img in images],
                                              return_tensors="pt")["pixel_values"]

    @torch.no_grad()
    def ground(self, images: Sequence[np.ndarray], prompts: Sequence[str],
               prepared: Optional[Sequence[torch.Tensor]] = None) -> List[List[GroundedBox]]:
        """Boxes for ``prompts`` in each RGB HxWx3 uint8 image: one list per image.
        ``prepared``: :meth:`prepare` of each image (the same pixels, made ahead)."""
        groups = self.prompt_groups(prompts)
        pixels = torch.cat(list(prepared)) if prepared is not None else self._pixel_values(images)
        pixel_values = pixels.to(self.device, self.model.dtype)
        features = self.model.get_image_features(pixel_values).pooler_output  # I x T x D
        rows = [(i, group) for i in range(len(images)) for group in groups]
        results: List[List[GroundedBox]] = [[] for _ in images]
        size = self.config.batch_size
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            for (i, group), parsed in zip(batch, self._generate(features, batch)):
                h, w = images[i].shape[:2]
                for box in parsed:
                    # a per-prompt request answers for its prompt; a caption's phrases are matched back
                    per_prompt = self.config.strategy == "open_vocabulary"
                    prompt = group[0] if per_prompt else match_prompt(box.phrase, group)
                    if prompt is not None:
                        results[i].append(GroundedBox(prompt, box.phrase, bins_to_xyxy(box.bins, w, h), box.confidence))
        return results

    def _generate(self, features: torch.Tensor, rows: List[Tuple[int, List[str]]]):
        tokenizer = self.processor.tokenizer
        texts = [self.row_text(CAPTION_SEPARATOR.join(group)) for _, group in rows]
        encoded = tokenizer(texts, add_special_tokens=False, padding="longest", return_tensors="pt")
        input_ids = encoded["input_ids"].to(self.device)
        attention_mask = encoded["attention_mask"].to(self.device)
        embeds = self.model.get_input_embeddings()(input_ids)
        row_features = features[[i for i, _ in rows]].to(embeds.dtype)
        is_image = (input_ids == self._image_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(is_image, row_features)
        encoder = self.model.get_encoder()
        encoder_outputs = encoder(inputs_embeds=embeds, attention_mask=attention_mask, return_dict=True)
        s = self.config
        beam_settings = dict(num_beams=s.num_beams, early_stopping=True) if s.num_beams > 1 else dict(num_beams=1)
        out = self.model.generate(
            encoder_outputs=encoder_outputs,
            attention_mask=attention_mask,
            max_new_tokens=s.max_new_tokens,
            do_sample=False,
            no_repeat_ngram_size=s.no_repeat_ngram_size,
            output_logits=True,
            return_dict_in_generate=True,
            logits_processor=self.logits_processor,
            **beam_settings,
            **self.generation_options,
        )
        log_probs = self.model.compute_transition_scores(
            out.sequences, out.logits, beam_indices=getattr(out, "beam_indices", None), normalize_logits=True
        )
        sequences = out.sequences[:, 1:].tolist()  # drop the decoder start token
        for seq, lps in zip(sequences, log_probs.float().tolist()):
            yield parse_grounding(seq, lps, self._location_ids, self._stop_ids, tokenizer.decode, self._skip_ids)
