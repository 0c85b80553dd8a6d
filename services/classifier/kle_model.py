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

import numpy as np
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
            described: Sequence[tuple[str, str]] = ()) -> KlePredictor | None:
        """`described`: (text, topic) pairs the tenant knows, such as its case titles."""
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
        char = TfidfVectorizer(analyzer="char_wb", ngram_range=(4, 4), sublinear_tf=True,
                               min_df=2, dtype=np.float32)
        char_matrix = terms_first(char.fit_transform(texts))
        owned = {unit: [i for i, c in enumerate(codes)
                        if any(c == p or c.startswith(p + ".") for p in prefixes)]
                 for unit, prefixes in unit_prefixes.items()}
        return cls(codes, vectorizer, matrix, owned, char, char_matrix)

    def predict(self, xs: Sequence[Inputs], units: Sequence[str]) -> list[str | None]:
        own = [x.own for x in xs]
        sims = similarity(transform(self.vectorizer, own), self.matrix)
        if self.char is not None:
            sims = sims + similarity(transform(self.char, own), self.char_matrix)
        out: list[str | None] = []
        for row, unit in zip(sims, units, strict=True):
            candidates = self.owned.get(unit)
            if not candidates:
                out.append(None)
                continue
            best = candidates[int(np.argmax(row[candidates]))]
            out.append(self.codes[best] if row[best] > 0 else None)
        return out
