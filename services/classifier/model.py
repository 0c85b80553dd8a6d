"""The routing model: a linear classifier over units plus `ikke-relevant`, and when to abstain.

Text features are TF-IDF weighted lemma uni- and bigrams and character 3-5-grams of the
writer's own words, lemmas of quoted replies and signatures at a third of the weight, and
entity tokens. The classifier is a multinomial logistic regression. Its top probability is
calibrated into the probability that the prediction is right (a logistic fit on held-out
predictions: top probability and margin to the runner-up), and the abstain threshold is the
lowest calibrated probability at which held-out precision still reaches the target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold

from .features import Inputs

QUOTED_WEIGHT = 0.3
_TOKEN = r"\S+"  # noqa: S105 - inputs are already tokenised (lemmas, entity tokens)
PROFILE_WEIGHT = 0.5


@dataclass(frozen=True)
class ModelPrediction:
    label: str
    probability: float  # calibrated: the probability that `label` is right
    abstain: bool
    explanation: tuple[str, ...] = ()


def _vectorizers() -> dict[str, TfidfVectorizer]:
    return {
        "word": TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1,
                                token_pattern=_TOKEN, lowercase=False),
        "char": TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True,
                                min_df=2, max_features=60_000),
        "tokens": TfidfVectorizer(token_pattern=_TOKEN, lowercase=False, use_idf=False,
                                  norm=None),
    }


@dataclass
class TextClassifier:
    """Vectorisers plus a logistic regression; fit on inputs with labels and sample weights."""

    c: float = 10.0
    vectorizers: dict[str, TfidfVectorizer] = field(default_factory=_vectorizers)
    clf: LogisticRegression | None = None

    def fit(self, xs: Sequence[Inputs], ys: Sequence[str], weights: Sequence[float],
            ) -> TextClassifier:
        v = self.vectorizers
        v["word"].fit([x.own + " " + x.quoted for x in xs])
        v["char"].fit([x.own_raw for x in xs])
        v["tokens"].fit([x.tokens for x in xs])
        self.clf = LogisticRegression(C=self.c, max_iter=3000)
        self.clf.fit(self.matrix(xs), list(ys), sample_weight=np.asarray(weights))
        return self

    def matrix(self, xs: Sequence[Inputs]) -> sp.csr_matrix:
        v = self.vectorizers
        word = v["word"].transform([x.own for x in xs])
        quoted = v["word"].transform([x.quoted for x in xs]) * QUOTED_WEIGHT
        char = v["char"].transform([x.own_raw for x in xs])
        tokens = v["tokens"].transform([x.tokens for x in xs])
        return sp.hstack([word + quoted, char, tokens]).tocsr()

    @property
    def classes(self) -> list[str]:
        assert self.clf is not None, "fit first"
        return [str(c) for c in self.clf.classes_]

    def proba(self, xs: Sequence[Inputs]) -> tuple[np.ndarray, sp.csr_matrix]:
        assert self.clf is not None, "fit first"
        m = self.matrix(xs)
        return self.clf.predict_proba(m), m

    def feature_names(self) -> list[str]:
        v = self.vectorizers
        return ([f"word '{w}'" for w in v["word"].get_feature_names_out()]
                + [f"chars '{c}'" for c in v["char"].get_feature_names_out()]
                + [f"entity {t}" for t in v["tokens"].get_feature_names_out()])


def _confidence_features(proba: np.ndarray) -> np.ndarray:
    top2 = np.sort(proba, axis=1)[:, -2:]
    top, second = top2[:, 1], top2[:, 0]
    return np.column_stack([np.log(top / (1 - top + 1e-9) + 1e-9), top - second])


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
    text: TextClassifier
    calibrator: LogisticRegression | None
    threshold: float
    target_precision: float
    names: list[str] = field(default_factory=list)

    def predict(self, xs: Sequence[Inputs], explain: int = 4) -> list[ModelPrediction]:
        proba, matrix = self.text.proba(xs)
        conf = self.confidence(proba)
        classes = self.text.classes
        assert self.text.clf is not None
        coef = self.text.clf.coef_
        out = []
        for i, row in enumerate(proba):
            k = int(np.argmax(row))
            why = self._explain(matrix.getrow(i), coef[k], explain) if explain else ()
            out.append(ModelPrediction(classes[k], float(conf[i]), bool(conf[i] < self.threshold),
                                       why))
        return out

    def confidence(self, proba: np.ndarray) -> np.ndarray:
        if self.calibrator is None:
            return np.max(proba, axis=1)
        return self.calibrator.predict_proba(_confidence_features(proba))[:, 1]

    def _explain(self, row: sp.csr_matrix, weights: np.ndarray, n: int) -> tuple[str, ...]:
        contrib = row.data * weights[row.indices]
        order = np.argsort(-contrib)
        top = [self.names[row.indices[j]] for j in order if contrib[j] > 0]
        # Words and entities say more to a person than character n-grams; show those first.
        readable = [t for t in top if not t.startswith("chars")]
        return tuple((readable + [t for t in top if t.startswith("chars")])[:n])


def _folds(ys: Sequence[str], groups: Sequence[str], k: int, by_group: bool = False,
           ) -> list[tuple[np.ndarray, np.ndarray]]:
    # Random folds, not folds by file: a file of the sample data holds only some units, so
    # leaving a file out measures unseen units rather than unseen items. `groups` is kept so a
    # tenant whose files are time slices can opt in (`by_group=True`).
    idx = np.arange(len(ys))
    if by_group and len(set(groups)) >= 3:
        return list(GroupKFold(n_splits=min(k, len(set(groups)))).split(idx, groups=groups))
    return list(KFold(min(k, len(ys)), shuffle=True, random_state=0).split(idx))


def train(items: Sequence[tuple[Inputs, str]], profiles: Sequence[tuple[Inputs, str]], *,
          groups: Sequence[str], target_precision: float = 0.97, c: float = 10.0,
          abstain_labels: frozenset[str] = frozenset(), folds: int = 5,
          progress: Callable[[str], None] = lambda _: None,
          ) -> tuple[RoutingModel, dict[str, float]]:
    """Fit on labelled items plus unit profiles, calibrate and choose the threshold on held-out
    predictions. Items labelled with an `abstain_labels` label (manual triage) are not a class:
    they only teach the calibrator that some items should not be routed."""
    train_idx = [i for i, (_, y) in enumerate(items) if y not in abstain_labels]
    ys = [y for _, y in items]
    conf_parts, correct_parts = [], []
    for n, (fit_idx, held_idx) in enumerate(_folds(ys, groups, folds), start=1):
        progress(f"held-out fold {n}")
        fit = [i for i in fit_idx if i in set(train_idx)]
        model = TextClassifier(c).fit([items[i][0] for i in fit] + [p[0] for p in profiles],
                                      [ys[i] for i in fit] + [p[1] for p in profiles],
                                      [1.0] * len(fit) + [PROFILE_WEIGHT] * len(profiles))
        proba, _ = model.proba([items[i][0] for i in held_idx])
        predicted = np.asarray(model.classes)[np.argmax(proba, axis=1)]
        conf_parts.append(proba)
        correct_parts.append(predicted == np.asarray([ys[i] for i in held_idx]))
    progress("final model")
    final = TextClassifier(c).fit([items[i][0] for i in train_idx] + [p[0] for p in profiles],
                                  [ys[i] for i in train_idx] + [p[1] for p in profiles],
                                  [1.0] * len(train_idx) + [PROFILE_WEIGHT] * len(profiles))
    # Probability rows of different folds may have different class sets; only their top
    # probability and margin matter to the calibrator.
    feats = np.vstack([_confidence_features(p) for p in conf_parts])
    correct = np.concatenate(correct_parts).astype(float)
    calibrator = None
    if 0 < correct.sum() < len(correct):
        calibrator = LogisticRegression().fit(feats, correct.astype(int))
    routing = RoutingModel(final, calibrator, 1.0, target_precision, final.feature_names())
    conf = (calibrator.predict_proba(feats)[:, 1] if calibrator is not None
            else np.concatenate([np.max(p, axis=1) for p in conf_parts]))
    routing.threshold = choose_threshold(conf, correct, target_precision)
    covered = conf >= routing.threshold
    metrics = {
        "heldout_items": float(len(correct)),
        "heldout_accuracy": float(correct.mean()) if len(correct) else 0.0,
        "heldout_auto_rate": float(covered.mean()) if len(correct) else 0.0,
        "heldout_auto_precision": float(correct[covered].mean()) if covered.any() else 0.0,
        "threshold": routing.threshold,
    }
    return routing, metrics
