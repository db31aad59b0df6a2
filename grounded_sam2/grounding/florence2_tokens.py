"""Pure functions that turn Florence-2's generated tokens into scored boxes (the phrases are
matched to prompts by :mod:`grounded_sam2.grounding.matching`).

Florence-2 answers a grounding request as ``phrase<loc_x0><loc_y0><loc_x1><loc_y1>...``: each
phrase is followed by one or more groups of four location tokens, each ``<loc_N>`` (N in
0..999) being a bin of 1/1000 of the image width or height.

Confidence of a box: the geometric mean of the probabilities the model gave to the tokens that
produced it, i.e. ``exp(mean(log p))`` over the phrase's text tokens and the box's four location
tokens (log-probabilities from the raw logits, before any logits processing).
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

LOCATION_BINS = 1000


@dataclass(frozen=True)
class ParsedBox:
    """One box read from the generated tokens."""

    phrase: str
    bins: Tuple[int, int, int, int]  # x0, y0, x1, y1 location bins
    confidence: float


def parse_grounding(
    token_ids: Sequence[int],
    log_probs: Sequence[float],
    location_ids: Dict[int, int],
    stop_ids: Sequence[int],
    decode,
    skip_ids: Sequence[int] = (),
) -> List[ParsedBox]:
    """Boxes from generated token ids (decoder start token excluded).

    Arguments:
      token_ids: generated ids, aligned with ``log_probs`` (one log-probability per token).
      location_ids: token id -> location bin for the ``<loc_N>`` tokens.
      stop_ids: ids that end the answer (``</s>``, ``<pad>``).
      decode: function turning a list of text token ids into a string.
      skip_ids: ids that are neither text nor location (the ``<s>`` Florence-2 starts with).
    """
    boxes: List[ParsedBox] = []
    text_ids: List[int] = []
    text_lp: List[float] = []
    locations: List[Tuple[int, float]] = []
    after_box = False
    for token, lp in zip(token_ids, log_probs):
        token = int(token)
        if token in stop_ids:
            break
        if token in skip_ids:
            continue
        if token in location_ids:
            locations.append((location_ids[token], float(lp)))
            if len(locations) == 4:
                phrase = decode(text_ids).strip()
                if phrase:
                    scores = text_lp + [p for _, p in locations]
                    bins = tuple(b for b, _ in locations)
                    boxes.append(ParsedBox(phrase, bins, math.exp(sum(scores) / len(scores))))
                locations = []
                after_box = True
            continue
        if after_box or locations:  # text after location tokens starts a new phrase
            text_ids, text_lp, after_box = [], [], False
            locations = []  # an incomplete location group is dropped
        text_ids.append(token)
        text_lp.append(float(lp))
    return boxes


def bins_to_xyxy(bins: Sequence[int], width: int, height: int) -> Tuple[float, float, float, float]:
    """Location bins to pixel XYXY (bin centres), clipped to the image, with x0 <= x1, y0 <= y1."""
    x0, y0, x1, y1 = ((b + 0.5) * size / LOCATION_BINS for b, size in zip(bins, (width, height, width, height)))
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)
