"""The routing model: ranks the tenant's units (plus `ikke-relevant`) for an item, and abstains.

A per-unit text classifier only knows units it has seen many items of. This model instead
learns *how* an item relates to a unit, the same way for every unit: how similar the item is to
what the organisation says the unit does (its profile: name, the KLE topics it owns with their
guidance and keywords, case titles, forms), how similar it is to labelled items of the unit,
and whether the item's entities point at the unit (it arrived in the unit's mailbox, names the
unit, cites a KLE number or form the unit owns). A binary logistic regression scores every
(item, unit) pair; a softmax over the scores ranks the units. Because the weights are shared by
all units, a unit with no labelled items is still routed by its profile.

The top probability and its margin are calibrated into the probability of being right on
held-out predictions, in random folds; the threshold is the lowest calibrated probability at which
held-out precision reaches the target (default 97%).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from .features import Inputs
from .vectors import transform

QUOTED_WEIGHT = 0.3
NOT_RELEVANT = "ikke-relevant"
_POINTERS = ("named", "addressed", "mailbox", "kle", "form", "case")
# Entity tokens that say an item may need no case work (only meaningful for ikke-relevant).
_NR_SIGNALS = ("has_newsletter", "has_commercial", "has_auto_reply", "sender_lookalike",
               "sender_foreign", "sender_authority", "sender_own", "no_text", "has_cpr",
               "has_case_candidate", "channel_scan", "channel_form", "has_disguised_attachment")
PAIR_FEATURES = (
    "profile word", "profile chars", "best profile text word", "best profile text chars",
    "profile word (rel)", "profile chars (rel)", "best text word (rel)", "best text chars (rel)",
    "examples best", "examples top-3", "examples best (rel)", "has examples",
    "foreign text word", "foreign text chars", "foreign text word (rel)",
    "foreign text chars (rel)", "addressee profile word", "addressee profile word (rel)",
    *(f"unit {how}" for how in _POINTERS), "ikke-relevant",
    *(f"ikke-relevant & {s}" for s in _NR_SIGNALS))


@dataclass(frozen=True)
class ModelPrediction:
    label: str
    probability: float  # calibrated: the probability that `label` is right
    abstain: bool
    explanation: tuple[str, ...] = ()


def _vectorizers() -> tuple[TfidfVectorizer, TfidfVectorizer]:
    # The inputs are already tokenised (lemmas, entity tokens): splitting on white space
    # skips the vectoriser's regular expression and preprocessing, a fifth of prediction time.
    word = TfidfVectorizer(analyzer=str.split, sublinear_tf=True,
                           dtype=np.float32)
    # Character 4-grams within words: Danish compounds ("parkeringsafgiften") share parts with
    # the words of a KLE title ("parkering", "afgift") that whole lemmas do not.
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(4, 4), sublinear_tf=True, min_df=2,
                           dtype=np.float32)
    return word, char


def terms_first(rows: sp.csr_matrix) -> sp.csr_matrix:
    return sp.csr_matrix(rows.T.tocsr())


def similarity(items: sp.csr_matrix, terms_first: sp.csr_matrix) -> np.ndarray:
    """Dot products of items with rows stored terms x rows: the product then touches only
    the terms an item has. (`items @ rows.T` converted the whole of `rows` to another sparse
    format on every call, most of the time of classifying one item.)"""
    return np.asarray((items @ terms_first).toarray())


def _relative(m: np.ndarray) -> np.ndarray:
    return m - m.max(axis=1, keepdims=True)


def _groups(owner: np.ndarray, n_units: int) -> np.ndarray:
    """Column indices of each unit, padded with -1: shape (units, most columns of a unit)."""
    counts = np.bincount(owner[owner >= 0], minlength=n_units)
    table = np.full((n_units, max(1, int(counts.max(initial=0)))), -1, dtype=np.int64)
    for u in range(n_units):
        cols = np.nonzero(owner == u)[0]
        table[u, :len(cols)] = cols
    return table


def _grouped(m: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The columns of `m` by unit (a `_groups` table), (items, units, columns) with padding
    as -inf, and the mask of real columns."""
    padded = np.concatenate([m, np.full((m.shape[0], 1), -np.inf, dtype=m.dtype)], axis=1)
    return padded[:, table], table >= 0


def _group_max(m: np.ndarray, table: np.ndarray) -> np.ndarray:
    values, real = _grouped(m, table)
    out = values.max(axis=2)
    some = np.asarray(real.any(axis=1))
    return np.where(some[None, :], out, 0.0).astype(np.float32)


@dataclass
class UnitRanker:
    """Unit profiles and labelled examples as vectors, and the shared pair weights.

    The vectors an item is compared with sit side by side in one matrix per vectoriser, stored
    terms x vectors (see `similarity`), so one product compares an item with all of them:
    `word_rows` holds each unit's whole profile, then each profile text (one KLE group or
    topic, a case title, a form), then each labelled item; `char_rows` the first two."""

    classes: list[str]
    word: TfidfVectorizer
    char: TfidfVectorizer
    word_rows: sp.csr_matrix
    char_rows: sp.csr_matrix
    text_owner: np.ndarray  # unit index of each profile text
    example_owner: np.ndarray  # unit index of each labelled item (-1: not a class)
    example_group: np.ndarray  # item file of each labelled item
    # Which profile texts are in another language: only foreign items are compared with them.
    text_foreign: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(len(PAIR_FEATURES)))
    bias: float = 0.0
    # Column indices of each unit's profile texts (Danish, other languages) and examples
    # (derived, see _groups).
    text_groups: np.ndarray = field(init=False, repr=False)
    foreign_groups: np.ndarray = field(init=False, repr=False)
    example_groups: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        k = len(self.classes)
        if len(self.text_foreign) == 0:
            self.text_foreign = np.zeros(len(self.text_owner), dtype=bool)
        elif len(self.text_foreign) != len(self.text_owner):
            raise ValueError("text_foreign needs one flag per profile text")
        foreign = self.text_foreign
        self.text_groups = _groups(np.where(foreign, -1, self.text_owner), k)
        self.foreign_groups = _groups(np.where(foreign, self.text_owner, -1), k)
        self.example_groups = _groups(self.example_owner, k)

    @classmethod
    def build(cls, classes: Sequence[str], profiles: Sequence[tuple[Inputs, str]],
              examples: Sequence[tuple[Inputs, str]], groups: Sequence[str]) -> UnitRanker:
        classes = list(classes)
        index = {c: i for i, c in enumerate(classes)}
        word, char = _vectorizers()
        word.fit([p.own for p, _ in profiles] + [x.own for x, _ in examples])
        char.fit([p.own for p, _ in profiles] + [x.own for x, _ in examples])
        by_unit: dict[str, list[str]] = {c: [] for c in classes}
        for p, u in profiles:
            if not p.foreign:
                by_unit[u].append(p.own)
        whole = [" ".join(by_unit[c]) for c in classes]
        texts = [p.own for p, _ in profiles]
        word_rows = sp.vstack([word.transform(whole), word.transform(texts),
                               _item_matrix(word, [x for x, _ in examples])])
        char_rows = sp.vstack([char.transform(whole), char.transform(texts)])
        return cls(classes, word, char, terms_first(word_rows), terms_first(char_rows),
                   np.array([index[u] for _, u in profiles]),
                   np.array([index.get(y, -1) for _, y in examples], dtype=np.int64),
                   np.asarray(groups),
                   np.array([p.foreign for p, _ in profiles], dtype=bool))

    def features(self, xs: Sequence[Inputs], own_groups: Sequence[str] | None = None,
                 ) -> np.ndarray:
        """Pair features, shape (items, units, features). With `own_groups` (training) an
        item's similarity to labelled items leaves out those of its own file."""
        n, k = len(xs), len(self.classes)
        w = _item_matrix(self.word, xs)
        c = transform(self.char, [x.own for x in xs])
        texts = k + len(self.text_owner)
        sw, sc = similarity(w, self.word_rows), similarity(c, self.char_rows)
        pw, pc = sw[:, :k], sc[:, :k]
        tw = _group_max(sw[:, k:texts], self.text_groups)
        tc = _group_max(sc[:, k:texts], self.text_groups)
        # Texts in other languages are read for items in another language only, as features
        # of their own: measured on the Danish texts' features, they moved Danish items too.
        fw, fc = np.zeros_like(tw), np.zeros_like(tc)
        foreign = np.nonzero([x.foreign for x in xs])[0]
        if len(foreign) and self.text_foreign.any():
            fw[foreign] = _group_max(sw[foreign, k:texts], self.foreign_groups)
            fc[foreign] = _group_max(sc[foreign, k:texts], self.foreign_groups)
        ex = sw[:, texts:]
        if own_groups is not None:
            ex[np.asarray(own_groups)[:, None] == self.example_group[None, :]] = 0.0
        values, real = _grouped(ex, self.example_groups)
        part = -np.sort(-values, axis=2)[:, :, :3]  # the three most similar, -inf padded
        taken = np.minimum(real.sum(axis=1), 3)  # how many of them are real, per unit
        some = taken > 0
        best = np.where(some[None, :], part[:, :, 0], 0.0).astype(np.float32)
        top3 = (np.where(np.isfinite(part), part, 0.0).sum(axis=2)
                / np.maximum(taken, 1)[None, :]).astype(np.float32)
        has = (best > 0).astype(np.float32)
        pointers = np.zeros((n, k, len(_POINTERS)), dtype=np.float32)
        nr = self.classes.index(NOT_RELEVANT) if NOT_RELEVANT in self.classes else -1
        signals = np.zeros((n, k, len(_NR_SIGNALS) + 1), dtype=np.float32)
        index = {cl: i for i, cl in enumerate(self.classes)}
        for i, x in enumerate(xs):
            toks = x.tokens.split()
            for t in toks:
                if t.startswith("unit_"):
                    how, _, unit = t[5:].partition("_")
                    if unit in index and how in _POINTERS:
                        pointers[i, index[unit], _POINTERS.index(how)] = 1.0
            if nr >= 0:
                signals[i, nr, 0] = 1.0
                for j, s in enumerate(_NR_SIGNALS, start=1):
                    signals[i, nr, j] = float(s in toks)
        # The addressee lines alone against each unit's whole profile: "Visitationen" and
        # "Kreditorbogholderiet" are words of a unit's vocabulary, not of its name.
        aw = np.zeros_like(pw)
        addressed = [i for i, x in enumerate(xs) if x.addressee]
        if addressed:
            lines = transform(self.word, [xs[i].addressee for i in addressed])
            aw[addressed] = similarity(lines, self.word_rows)[:, :k]
            if NOT_RELEVANT in self.classes:  # a part of the organisation, which it is not
                aw[:, self.classes.index(NOT_RELEVANT)] = 0.0
        dense = np.stack([pw, pc, tw, tc, _relative(pw), _relative(pc), _relative(tw),
                          _relative(tc), best, top3, _relative(best), has,
                          fw, fc, _relative(fw), _relative(fc), aw, _relative(aw)], axis=2)
        return np.concatenate([dense, pointers, signals], axis=2)

    def scores(self, feats: np.ndarray) -> np.ndarray:
        return np.asarray(feats @ self.weights + self.bias)

    def fit_weights(self, feats: np.ndarray, ys: Sequence[int], c: float = 1.0) -> None:
        """Binary logistic regression over (item, unit) pairs: is this the item's unit?
        Items whose label is not a class (-1, manual triage) contribute only negatives."""
        n, k, f = feats.shape
        target = np.zeros((n, k))
        for i, y in enumerate(ys):
            if y >= 0:
                target[i, y] = 1.0
        # Every item has one positive among k candidates: weight the positives up so the pair
        # model is not content to call everything "not this unit".
        weight = np.where(target.ravel() > 0, k - 1, 1.0)
        # Standardised features, so the regularisation weighs them alike (similarities are
        # fractions, pointers 0/1); the weights are mapped back onto the raw features.
        # (Held-out first choice by item file 79.6% -> 80.4%, auto-routed 65.8% -> 68.5%.)
        flat = feats.reshape(n * k, f)
        mean, scale = flat.mean(axis=0), flat.std(axis=0)
        scale[scale == 0] = 1.0
        lr = LogisticRegression(C=c, max_iter=2000)
        lr.fit((flat - mean) / scale, target.ravel(), sample_weight=weight)
        w = lr.coef_[0].astype(np.float64) / scale
        self.weights, self.bias = w, float(lr.intercept_[0] - (w * mean).sum())


def _item_matrix(vec: TfidfVectorizer, xs: Sequence[Inputs]) -> sp.csr_matrix:
    """The writer's own words plus quoted replies and signature at a lower weight."""
    own = transform(vec, [x.own for x in xs])
    if not any(x.quoted for x in xs):
        return own
    m = sp.csr_matrix(own + transform(vec, [x.quoted for x in xs]) * QUOTED_WEIGHT)
    lengths = np.diff(m.indptr)
    owner = np.repeat(np.arange(m.shape[0]), lengths)
    norms = np.sqrt(np.bincount(owner, weights=m.data * m.data, minlength=m.shape[0]))
    norms[norms == 0] = 1.0
    m.data /= norms[owner].astype(m.data.dtype)
    return m


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


_POINTER_AT = len(PAIR_FEATURES) - len(_NR_SIGNALS) - 1 - len(_POINTERS)


def _confidence_features(proba: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """What says the top unit is right beyond its probability: which of the item's own
    pointers (case, KLE number, form, mailbox, department name) name it, whether any pointer
    names another unit instead (mail to one unit about another's business), and how close the
    item comes to the unit's best profile text and labelled items (a top unit that won only
    because the others fit worse is less sure)."""
    rows = np.arange(len(proba))
    top_k = np.argmax(proba, axis=1)
    top2 = np.sort(proba, axis=1)[:, -2:]
    top, second = top2[:, 1], top2[:, 0]
    pointers = feats[:, :, _POINTER_AT:_POINTER_AT + len(_POINTERS)]
    own = pointers[rows, top_k]  # (items, pointers)
    elsewhere = pointers.max(axis=2).sum(axis=1) - own.max(axis=1)
    pair = feats[rows, top_k]  # the top unit's pair features
    similar = [PAIR_FEATURES.index(f) for f in ("best profile text word", "best profile text chars",
                                                "examples best", "has examples")]
    return np.column_stack([np.log(top / (1 - top + 1e-9) + 1e-9), top - second, own,
                            (elsewhere > 0).astype(float), pair[:, similar]])


def choose_threshold(confidence: np.ndarray, correct: np.ndarray, target: float) -> float:
    """The lowest confidence at which the items at or above it are at least `target` right;
    1.0 (always abstain) when no such point exists."""
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(correct[order])
    precision = hits / np.arange(1, len(order) + 1)
    ok = np.nonzero(precision >= target)[0]
    if len(ok) == 0:
        return 1.0
    return float(confidence[order][ok[-1]])


@dataclass
class RoutingModel:
    ranker: UnitRanker
    calibrator: LogisticRegression | None
    threshold: float
    target_precision: float

    @property
    def classes(self) -> list[str]:
        return self.ranker.classes

    def predict(self, xs: Sequence[Inputs], explain: int = 4) -> list[ModelPrediction]:
        if not xs:
            return []
        feats = self.ranker.features(xs)
        proba = softmax(self.ranker.scores(feats))
        conf = self.confidence(proba, feats)
        out = []
        for i, row in enumerate(proba):
            k = int(np.argmax(row))
            why = self._explain(feats[i, k], explain) if explain else ()
            out.append(ModelPrediction(self.classes[k], float(conf[i]),
                                       bool(conf[i] < self.threshold), why))
        return out

    def confidence(self, proba: np.ndarray, feats: np.ndarray) -> np.ndarray:
        if self.calibrator is None:
            return np.asarray(np.max(proba, axis=1))
        # The calibrator's own predict_proba, without scikit-learn's per-call input checks.
        z = _confidence_features(proba, feats) @ self.calibrator.coef_[0]
        return np.asarray(1.0 / (1.0 + np.exp(-(z + self.calibrator.intercept_[0]))))

    def _explain(self, pair: np.ndarray, n: int) -> tuple[str, ...]:
        contrib = pair * self.ranker.weights
        order = np.argsort(-contrib)
        return tuple(f"{PAIR_FEATURES[j]} {pair[j]:.2f}" for j in order[:n] if contrib[j] > 0)


def _folds(n: int, k: int) -> np.ndarray:
    """Random fold ids. Not folds by item file: a file of the sample data holds only some
    units, so leaving a file out calibrates on units the weights never saw, and the threshold
    ends far above what new items of known units need (measured: fewer items routed, at no
    better precision, in the cross-validation by file)."""
    return np.random.default_rng(0).permutation(np.arange(n) % k)


def train(items: Sequence[tuple[Inputs, str]], profiles: Sequence[tuple[Inputs, str]], *,
          groups: Sequence[str], target_precision: float = 0.97, c: float = 1.0,
          abstain_labels: frozenset[str] = frozenset(), folds: int = 5,
          progress: Callable[[str], None] = lambda _: None,
          ) -> tuple[RoutingModel, dict[str, float]]:
    """Build unit profiles and examples, fit the pair weights, then calibrate and choose the
    threshold on predictions for each item file by weights fitted on the other files. Items
    labelled with an `abstain_labels` label (manual triage) are no class: they only teach that
    some items should not be routed."""
    classes = sorted({u for _, u in profiles} | {y for _, y in items if y not in abstain_labels})
    del groups  # random folds, see _folds
    fold = _folds(len(items), folds)
    examples = [(x, y) for x, y in items]
    ranker = UnitRanker.build(classes, profiles, examples, [str(f) for f in fold])
    progress("features")
    feats = ranker.features([x for x, _ in items], [str(f) for f in fold])
    ys = np.array([classes.index(y) if y in classes else -1 for _, y in items])
    conf_rows, feat_rows, correct_rows = [], [], []
    for n, f in enumerate(sorted(set(fold.tolist())), start=1):
        progress(f"held-out fold {n}")
        fit, held = fold != f, fold == f
        if len(set(ys[fit].tolist()) - {-1}) < 2 or not held.any():
            continue
        ranker.fit_weights(feats[fit], ys[fit].tolist(), c)
        proba = softmax(ranker.scores(feats[held]))
        conf_rows.append(proba)
        feat_rows.append(feats[held])
        correct_rows.append(np.argmax(proba, axis=1) == ys[held])
    progress("final model")
    ranker.fit_weights(feats, ys.tolist(), c)
    proba_all = np.vstack(conf_rows) if conf_rows else np.zeros((0, len(classes)))
    feats_all = (np.concatenate(feat_rows) if feat_rows
                 else np.zeros((0, len(classes), len(PAIR_FEATURES))))
    correct = np.concatenate(correct_rows).astype(float) if correct_rows else np.zeros(0)
    calibrator = None
    if 0 < correct.sum() < len(correct):
        calibrator = LogisticRegression().fit(_confidence_features(proba_all, feats_all),
                                              correct.astype(int))
    routing = RoutingModel(ranker, calibrator, 1.0, target_precision)
    conf = routing.confidence(proba_all, feats_all) if len(correct) else np.zeros(0)
    routing.threshold = choose_threshold(conf, correct, target_precision) if len(correct) else 1.0
    covered = conf >= routing.threshold
    metrics = {
        "heldout_items": float(len(correct)),
        "heldout_accuracy": float(correct.mean()) if len(correct) else 0.0,
        "heldout_auto_rate": float(covered.mean()) if len(correct) else 0.0,
        "heldout_auto_precision": float(correct[covered].mean()) if covered.any() else 0.0,
        "threshold": routing.threshold,
    }
    return routing, metrics
