"""Parsing Florence-2 token sequences into scored boxes."""

import math

import pytest

from grounded_sam2.grounding.florence2_tokens import bins_to_xyxy, parse_grounding

# A toy vocabulary: letters are text tokens, 1000+N is <loc_N>, 2 is </s>, 1 is <pad>.
LOC = {1000 + n: n for n in range(1000)}
STOP = (2, 1)


def encode(text_and_boxes):
    ids = []
    for item in text_and_boxes:
        ids += [ord(c) for c in item] if isinstance(item, str) else [1000 + b for b in item]
    return ids


def decode(ids):
    return "".join(chr(i) for i in ids)


PARSE_CASES = {
    "one phrase, one box": ([" dog", (1, 2, 3, 4)], [("dog", (1, 2, 3, 4))]),
    "one phrase, two boxes": (["dog", (1, 2, 3, 4), (5, 6, 7, 8)], [("dog", (1, 2, 3, 4)), ("dog", (5, 6, 7, 8))]),
    "two phrases": (["dog", (1, 2, 3, 4), "red car", (9, 9, 10, 10)],
                    [("dog", (1, 2, 3, 4)), ("red car", (9, 9, 10, 10))]),
    "repeated label and box pattern": (["dog", (1, 2, 3, 4), "dog", (1, 2, 3, 4)], [("dog", (1, 2, 3, 4))] * 2),
    "incomplete location group dropped": (["dog", (1, 2), "cat", (1, 2, 3, 4)], [("cat", (1, 2, 3, 4))]),
    "box without phrase dropped": ([(1, 2, 3, 4), "cat", (5, 6, 7, 8)], [("cat", (5, 6, 7, 8))]),
    "text after the last box ignored": (["dog", (1, 2, 3, 4), "trailing"], [("dog", (1, 2, 3, 4))]),
    "nothing": ([], []),
}


@pytest.mark.parametrize("case", list(PARSE_CASES), ids=str)
def test_parse_grounding(case):
    tokens, expected = PARSE_CASES[case]
    ids = encode(tokens) + [2, 1, 1]
    boxes = parse_grounding(ids, [-0.1] * len(ids), LOC, STOP, decode)
    assert [(b.phrase, b.bins) for b in boxes] == expected


def test_stop_token_ends_the_answer():
    ids = encode(["dog", (1, 2, 3, 4)]) + [2] + encode(["cat", (1, 2, 3, 4)])
    assert [b.phrase for b in parse_grounding(ids, [0.0] * len(ids), LOC, STOP, decode)] == ["dog"]


def test_confidence_is_geometric_mean_over_phrase_and_its_box_tokens():
    ids = encode(["ab", (1, 2, 3, 4), (5, 6, 7, 8)])
    log_probs = [-1.0, -2.0, -0.1, -0.1, -0.1, -0.1, -0.5, -0.5, -0.5, -0.5]
    first, second = parse_grounding(ids, log_probs, LOC, STOP, decode)
    assert first.confidence == pytest.approx(math.exp((-3.0 - 0.4) / 6))
    assert second.confidence == pytest.approx(math.exp((-3.0 - 2.0) / 6))
    assert 0 < second.confidence < first.confidence < 1


@pytest.mark.parametrize("bins, size, expected", [
    ((0, 0, 999, 999), (1000, 500), (0.5, 0.25, 999.5, 499.75)),
    ((500, 100, 250, 50), (100, 100), (25.05, 5.05, 50.05, 10.05)),  # swapped corners are ordered
])
def test_bins_to_xyxy(bins, size, expected):
    assert bins_to_xyxy(bins, *size) == pytest.approx(expected)


def test_leading_bos_is_skipped_not_part_of_the_phrase():
    """Florence-2 answers start with a forced <s>; it must not join the first phrase or its score."""
    ids = [0] + encode(["dog", (1, 2, 3, 4)])
    log_probs = [-50.0] + [-0.1] * (len(ids) - 1)
    [parsed] = parse_grounding(ids, log_probs, LOC, STOP, decode, skip_ids=(0,))
    assert parsed.phrase == "dog" and parsed.confidence == pytest.approx(math.exp(-0.1))
