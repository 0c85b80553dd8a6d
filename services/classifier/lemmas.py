"""Danish lemmas: spaCy's blank `da` tokenizer with the lookup lemmatizer of spacy-lookups-data.

Both work offline. The lookup table is keyed on word forms; we look up the lower-cased form so
"Parkeringsafgiften" and "parkeringsafgiften" agree. Lemmas of word forms are cached, because
the same few thousand forms make up most municipal mail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import cache, lru_cache
from typing import Any

_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*", re.UNICODE)


@cache
def _lookup() -> Any:
    import spacy

    nlp = spacy.blank("da")
    lemmatizer = nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
    nlp.initialize()
    return lemmatizer.lookups.get_table("lemma_lookup")  # type: ignore[attr-defined]


@cache
def _table() -> Callable[[str], str]:
    table = _lookup()
    return lambda form: str(table.get(form, form))


@lru_cache(maxsize=200_000)
def is_danish(word: str) -> bool:
    """Whether the lemmatizer knows `word` (lower-cased) as a Danish word form."""
    return word in _lookup()


@lru_cache(maxsize=200_000)
def lemma(word: str) -> str:
    """The lemma of one word (lower-cased first)."""
    return _table()(word.lower())


def words(text: str) -> list[str]:
    """The alphabetic words of `text`, lower-cased, in order (hyphenated compounds kept whole).

    A regular expression instead of spaCy's tokenizer: for alphabetic words the two agree, and
    this runs on every item where the tokenizer's exceptions and punctuation rules cost time.
    """
    return _WORD.findall(text.lower())


def words_as_written(text: str) -> list[str]:
    """The words of `words(text)` as the text has them: for where capitals tell something
    ("IT" the unit, "it" the pronoun; a capitalised name)."""
    return _WORD.findall(text)


def word_spans(text: str) -> Iterator[tuple[int, int]]:
    """Where the words of `words(text)` stand, in order, found as they are read (a caller that
    needs the first few does not scan the rest). They are found in the lower-cased text, so the
    spans are those in `text` unless lower-casing changed a length (e.g. "İ")."""
    return map(re.Match.span, _WORD.finditer(text.lower()))


def lemmas(text: str) -> list[str]:
    """The lemmas of the words of `text`, in order."""
    return list(map(lemma, words(text)))



@lru_cache(maxsize=64)
def tokens(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The words of `text` and their lemmas. Cached for a few texts: the extractor reads the
    same subject and body for department names and phrases, and again for keywords."""
    found = tuple(words(text))
    return found, tuple(map(lemma, found))
