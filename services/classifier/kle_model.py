"""The KLE predictor: suggests the KLE topic an item would be journalised under.

Each KLE topic gets a document: its title, guidance text and keywords from the plan, the titles
of the tenant's cases with that topic, and the lemmas of its labelled items with that topic. An
item's suggestion is the most similar topic (TF-IDF cosine of lemmas plus that of character
4-grams, which match Danish compounds to their parts) among those the predicted unit owns, so
the topic and the unit agree. (Character n-grams and case titles: 54% -> 60% of held-out items
given their unit get the right KLE group in the cross-validation by item file.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from .features import Inputs
from .kle import KlePlan
from .lemmas import lemmas
from .model import similarity, terms_first
from .vectors import transform


@dataclass
class KlePredictor:
    codes: list[str]
    vectorizer: TfidfVectorizer
    matrix: object  # sparse, terms x topics (see model.similarity), L2-normalised topics
    owned: dict[str, list[int]]  # unit -> indices of the topics it owns
    char: TfidfVectorizer | None = None
    char_matrix: object = None

    @classmethod
    def fit(cls, plan: KlePlan | None, labelled: Sequence[tuple[Inputs, str]],
            unit_prefixes: Mapping[str, Sequence[str]],
            described: Sequence[tuple[str, str]] = (),
            char: TfidfVectorizer | None = None) -> KlePredictor | None:
        """`described`: (text, topic) pairs the tenant knows, such as its case titles. `char`:
        a fitted character vectoriser to share (the routing model's, whose vocabulary
        includes the plan's texts), so an item's character n-grams are counted once."""
        docs: dict[str, list[str]] = {}
        if plan is not None:
            for code, e in plan.entries.items():
                if len(code) == 8:  # topics (NN.NN.NN), the level items are journalised at
                    docs.setdefault(code, []).append(
                        " ".join(lemmas(f"{e.title} {e.guidance} {' '.join(e.keywords)}")))
        for x, code in labelled:
            if code:
                docs.setdefault(code, []).append(x.own)
        for text, code in described:
            if len(code) == 8:
                docs.setdefault(code, []).append(" ".join(lemmas(text)))
        if not docs:
            return None
        codes = sorted(docs)
        vectorizer = TfidfVectorizer(analyzer=str.split, sublinear_tf=True)
        texts = [" ".join(docs[c]) for c in codes]
        matrix = terms_first(vectorizer.fit_transform(texts))
        if char is None:
            char = TfidfVectorizer(analyzer="char_wb", ngram_range=(4, 4), sublinear_tf=True,
                                   min_df=2, dtype=np.float32).fit(texts)
        char_matrix = terms_first(transform(char, texts))
        owned = {unit: [i for i, c in enumerate(codes)
                        if any(c == p or c.startswith(p + ".") for p in prefixes)]
                 for unit, prefixes in unit_prefixes.items()}
        return cls(codes, vectorizer, matrix, owned, char, char_matrix)

    def predict(self, xs: Sequence[Inputs], units: Sequence[str]) -> list[str | None]:
        own = [x.own for x in xs]
        words = transform(self.vectorizer, own)
        chars = transform(self.char, own) if self.char is not None else None
        out: list[str | None] = [None] * len(xs)
        by_unit: dict[str, list[int]] = {}
        for i, unit in enumerate(units):
            by_unit.setdefault(unit, []).append(i)
        for unit, rows in by_unit.items():
            candidates = self.owned.get(unit)
            if not candidates:
                continue
            word_m, char_m = self._columns(unit)
            sims = similarity(words[rows], word_m)
            if chars is not None and char_m is not None:
                sims = sims + similarity(chars[rows], char_m)
            for i, row in zip(rows, sims, strict=True):
                best = int(np.argmax(row))
                out[i] = self.codes[candidates[best]] if row[best] > 0 else None
        return out

    def _columns(self, unit: str) -> tuple[Any, Any]:
        """The matrices' columns of the topics `unit` owns: comparing an item with those alone
        is a fraction of the work of comparing it with the whole plan. Built on first use."""
        cache: dict[str, tuple[Any, Any]] = self.__dict__.setdefault("_by_unit", {})
        if unit not in cache:
            cols = self.owned[unit]
            word_m = sp.csr_matrix(sp.csc_matrix(self.matrix)[:, cols])
            char_m = (sp.csr_matrix(sp.csc_matrix(self.char_matrix)[:, cols])
                      if self.char_matrix is not None else None)
            cache[unit] = (word_m, char_m)
        return cache[unit]

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_by_unit"}
