"""TF-IDF vectors of new items with a fitted scikit-learn vectoriser, without its per-call cost.

`TfidfVectorizer.transform` validates its input and its own fitted state, wraps its output
and counts through generic code on every call: for one item that is most of the time of a
prediction. `transform` here computes the same matrix (tested against scikit-learn) from the
fitted vocabulary and idf weights, for vectorisers set up the way this package sets them up
(L2 norm, idf, optional sublinear tf). Fitting stays with scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

_COLUMNS: dict[int, tuple[TfidfVectorizer, dict[str, int], Callable[[str], list[int]]]] = {}
# Words whose columns are kept per vectoriser. Mail repeats the same few thousand words (the
# character vectoriser reads lemmas), so a dict hit replaces generating a word's n-grams and
# looking each up; the bound keeps a stream of new words (names, typos) from growing memory
# without limit: at about 0.5 KB a word, 20,000 words are some 10 MB.
WORD_CACHE_SIZE = 20_000


def _columns(vec: TfidfVectorizer) -> Callable[[str], list[int]]:
    """doc -> the vocabulary columns of its tokens, in token order (an unknown token is -1 or
    left out).
    Built once per vectoriser (kept with it and its vocabulary, so neither a reused id of a
    freed one nor a refitted one can match)."""
    hit = _COLUMNS.get(id(vec))
    if hit is None or hit[0] is not vec or hit[1] is not vec.vocabulary_:
        plain = (vec.lowercase and vec.preprocessor is None and vec.strip_accents is None
                 and vec.input == "content")
        get = vec.vocabulary_.get
        if vec.analyzer == "char_wb" and plain:
            hit = (vec, vec.vocabulary_, _char_wb_columns(get, *vec.ngram_range))
        else:
            analyze = vec.build_analyzer()
            hit = (vec, vec.vocabulary_,  # look-ups in C (map); -1s are dropped in numpy
                   lambda doc: list(map(get, analyze(doc), repeat(-1))))
        if len(_COLUMNS) >= 8:  # a process that trains model after model keeps the last few
            _COLUMNS.pop(next(iter(_COLUMNS)))
        _COLUMNS[id(vec)] = hit
    return hit[2]


def _char_wb_columns(get: Callable[[str], int | None], low: int, high: int,
                     ) -> Callable[[str], list[int]]:
    known: dict[str, tuple[int, ...]] = {}

    def learn(word: str) -> tuple[int, ...]:
        if len(known) >= WORD_CACHE_SIZE:
            known.clear()
        grams = _padded_grams(f" {word} ", low, high)
        cols = known[word] = tuple([j for j in map(get, grams) if j is not None])
        return cols

    def columns(doc: str) -> list[int]:
        out: list[int] = []
        for word in doc.lower().split():
            cols = known.get(word)
            out += learn(word) if cols is None else cols
        return out

    return columns


def _char_wb(doc: str, low: int, high: int) -> list[str]:
    """scikit-learn's `char_wb` n-grams (lower-cased, each word padded with a space)."""
    out: list[str] = []
    for word in doc.lower().split():
        out += _padded_grams(f" {word} ", low, high)
    return out


def _padded_grams(w: str, low: int, high: int) -> list[str]:
    # A list comprehension per n instead of an append per n-gram.
    grams: list[str] = []
    for n in range(low, high + 1):
        if len(w) <= n:  # a short word counts once, as a whole
            grams.append(w)
            break
        grams += [w[i:i + n] for i in range(len(w) - n + 1)]
    return grams


_LAST: dict[tuple[int, tuple[str, ...]],
            tuple[TfidfVectorizer, dict[str, int], sp.csr_matrix]] = {}


def transform(vec: TfidfVectorizer, docs: Sequence[str]) -> sp.csr_matrix:
    # The routing model and the KLE predictor share a vectoriser and read the same batch:
    # the last few results are kept (with their vectoriser and its vocabulary, so neither a
    # reused id nor a refitted vectoriser can match).
    key = (id(vec), tuple(docs))
    hit = _LAST.get(key)
    if hit is not None and hit[0] is vec and hit[1] is vec.vocabulary_:
        return hit[2]
    result = _transform(vec, docs)
    if len(_LAST) >= 4:
        _LAST.pop(next(iter(_LAST)))
    _LAST[key] = (vec, vec.vocabulary_, result)
    return result


def _transform(vec: TfidfVectorizer, docs: Sequence[str]) -> sp.csr_matrix:
    if vec.norm != "l2" or not vec.use_idf or vec.binary:
        return sp.csr_matrix(vec.transform(docs))  # a set-up this fast path does not cover
    columns = _columns(vec)
    n, width = len(docs), len(vec.vocabulary_)
    indices: list[int] = []
    lengths: list[int] = []
    for doc in docs:
        found = columns(doc)
        indices += found
        lengths.append(len(found))
    cols = np.asarray(indices, dtype=np.int64)
    owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
    known = cols >= 0
    # One key per (row, column), sorted, with how often it occurs: each row's columns in order
    # and repeated tokens added up, as scipy's sum_duplicates would.
    keys, counts = np.unique(owner[known] * width + cols[known], return_counts=True)
    owner = keys // width
    cols = keys - owner * width
    values = counts.astype(np.float64)
    if vec.sublinear_tf:
        values = np.log(values) + 1.0
    values *= vec.idf_[cols]
    norms = np.sqrt(np.bincount(owner, weights=values * values, minlength=n))
    norms[norms == 0] = 1.0
    values /= norms[owner]
    rows = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(owner, minlength=n), out=rows[1:])
    return sp.csr_matrix((values.astype(vec.dtype), cols.astype(np.int32), rows),
                         shape=(n, width))
