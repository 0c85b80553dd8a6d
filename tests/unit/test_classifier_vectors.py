"""The fast TF-IDF transform computes what scikit-learn's does, for the set-ups the model uses."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from services.classifier.vectors import transform

TRAIN = ["parkeringsafgift klage bil", "affald spand tømning tømning", "byggetilladelse carport",
         "parkering licens beboer", "rotte kloak", "klage over støj fra nabo"]
NEW = ["klage klage parkeringsafgift ukendtord", "", "helt ukendte ord", "spand spand spand rotte",
       "Byggetilladelse til CARPORT og skur", "ø æ å", "a  ab\tabc\nabcd\u00a0abcde  klage"]


def test_matches_scikit_learn_for_words_and_characters() -> None:
    for vec in (TfidfVectorizer(analyzer=str.split, sublinear_tf=True, dtype=np.float32),
                TfidfVectorizer(analyzer="char_wb", ngram_range=(4, 4), sublinear_tf=True,
                                dtype=np.float32),
                TfidfVectorizer(analyzer=str.split, sublinear_tf=False),
                TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5))):
        vec.fit(TRAIN)
        ours, theirs = transform(vec, NEW), vec.transform(NEW)
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
        np.testing.assert_allclose(ours.toarray(), theirs.toarray(), rtol=1e-5, atol=1e-6)
    assert transform(vec, []).shape == (0, len(vec.vocabulary_))


def test_character_n_grams_are_scikit_learns() -> None:
    from services.classifier.vectors import _char_wb

    for low, high in ((4, 4), (3, 5), (1, 2)):
        vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(low, high))
        for doc in NEW:
            assert _char_wb(doc, low, high) == vec.build_analyzer()(doc)


def test_word_cache_keeps_results_exact_when_full_and_after_refitting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from services.classifier import vectors

    monkeypatch.setattr(vectors, "WORD_CACHE_SIZE", 3)  # cleared several times per call
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
    vec.fit(TRAIN)
    first = vectors.transform(vec, NEW)
    vectors._LAST.clear()
    again = vectors.transform(vec, NEW)  # words cached by the first call
    assert again is not first and (again != first).nnz == 0
    np.testing.assert_allclose(again.toarray(), vec.transform(NEW).toarray(), rtol=1e-6)
    vec.fit(NEW)  # the same object with another vocabulary: its cached columns are stale
    vectors._LAST.clear()
    np.testing.assert_allclose(vectors.transform(vec, TRAIN).toarray(),
                               vec.transform(TRAIN).toarray(), rtol=1e-6)


def test_a_refitted_vectoriser_never_gets_a_kept_result() -> None:
    # The same object fitted again and asked for the same documents: a result kept from
    # before the refit has the old vocabulary's columns.
    vec = TfidfVectorizer(analyzer=str.split)
    vec.fit(TRAIN)
    before = transform(vec, NEW)
    assert transform(vec, NEW) is before  # kept for the KLE predictor's second read
    vec.fit(NEW)
    after = transform(vec, NEW)
    assert after.shape == vec.transform(NEW).shape != before.shape
    np.testing.assert_allclose(after.toarray(), vec.transform(NEW).toarray(), rtol=1e-6)
