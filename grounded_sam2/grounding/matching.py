"""Matching the phrases a grounding model returns back to the prompts it was asked about,
whatever the backend: robust to case, spacing, punctuation, leading articles, plurals and
accents (folded, or dropped as Florence-2's tokenizer does)."""

import re
import unicodedata
from typing import Optional, Sequence

_ARTICLES = re.compile(r"^(a|an|the)\s+")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def _singular(word: str) -> str:
    for suffix, replacement in (("ies", "y"), ("ves", "f"), ("ses", "s"), ("xes", "x"), ("ches", "ch"), ("shes", "sh")):
        if word.endswith(suffix) and len(word) > len(suffix) + 1:
            return word[: -len(suffix)] + replacement
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def normalize_phrase(text: str, drop_non_ascii: bool = False) -> str:
    """Canonical form for matching: accents folded to ASCII ("café" -> "cafe"), or non-ASCII
    characters dropped as Florence's own parser does ("café" -> "caf"); lower case, punctuation
    as spaces, leading article removed, each word singular."""
    if not drop_non_ascii:
        text = unicodedata.normalize("NFKD", text)
    text = text.encode("ascii", "ignore").decode("ascii").lower()
    text = _NON_WORD.sub(" ", text).strip()
    text = _ARTICLES.sub("", text)
    return " ".join(_singular(w) for w in text.split())


def match_prompt(phrase: str, prompts: Sequence[str]) -> Optional[str]:
    """The prompt a returned phrase stands for, or None when it matches none of them."""
    key = normalize_phrase(phrase)
    if not key:
        return None
    for prompt in prompts:
        if key in (normalize_phrase(prompt), normalize_phrase(prompt, drop_non_ascii=True)):
            return prompt
    return None
