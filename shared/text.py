"""Text normalisation shared by the classifier (which extracts keywords) and the router (which
matches rule keywords against them), so both sides agree on what a keyword is."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[a-zæøåäöüé]+", re.IGNORECASE)
# Danish inflection endings, longest first: "parkeringsafgifterne" -> "parkeringsafgift".
_SUFFIXES = ("erne", "ene", "ens", "ers", "en", "et", "er", "es", "e", "s")


def normalise_keyword(word: str) -> str:
    """A crude Danish stem of `word` (lower-cased, inflection endings removed)."""
    w = unicodedata.normalize("NFC", word.strip().lower())
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 4:
            return w[: -len(suffix)]
    return w


def keywords(text: str, *, min_length: int = 3) -> set[str]:
    """The distinct keyword stems of `text`."""
    return {normalise_keyword(m.group()) for m in _WORD.finditer(text)
            if len(m.group()) >= min_length}
