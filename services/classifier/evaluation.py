"""Evaluation metrics for routing decisions on labelled items (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .document import Label
from .knowledge import NOT_RELEVANT


@dataclass(frozen=True)
class Outcome:
    """What the system did with one item: `unit` is the unit routed to, `ikke-relevant`, or
    None for manual triage."""

    unit: str | None
    clerk: str | None = None
    receipt: bool = False
    kle: str | None = None


def _ratio(a: int, b: int) -> float:
    return round(a / b, 4) if b else 0.0


def evaluate(labels: Sequence[Label], outcomes: Sequence[Outcome], *,
             triage_label: str = "hovedpost") -> dict[str, Any]:
    n = len(labels)
    auto = [(lab, out) for lab, out in zip(labels, outcomes, strict=True) if out.unit is not None]
    right = sum(lab.unit == out.unit for lab, out in auto)
    cased = [(lab, out) for lab, out in zip(labels, outcomes, strict=True) if lab.case_number]
    clerk_ok = sum(out.unit == lab.unit and out.clerk == lab.clerk for lab, out in cased)
    nr_pred = [lab for lab, out in zip(labels, outcomes, strict=True) if out.unit == NOT_RELEVANT]
    nr_true = [out for lab, out in zip(labels, outcomes, strict=True) if lab.unit == NOT_RELEVANT]
    kle_items = [(lab, out) for lab, out in zip(labels, outcomes, strict=True) if lab.kle]
    kle_ok = sum(bool(out.kle) and out.kle[:5] == lab.kle[:5] for lab, out in kle_items)  # type: ignore[index]
    units = sorted({lab.unit for lab in labels} | {o.unit or triage_label for o in outcomes})
    confusion: dict[str, dict[str, int]] = {}
    for lab, out in zip(labels, outcomes, strict=True):
        row = confusion.setdefault(lab.unit, {})
        got = out.unit or triage_label
        row[got] = row.get(got, 0) + 1
    predicted = Counter(out.unit for _, out in auto)
    per_unit = {}
    for u in units:
        if u == triage_label:
            continue
        tp = sum(lab.unit == u and out.unit == u for lab, out in auto)
        support = sum(lab.unit == u for lab in labels)
        per_unit[u] = {"precision": _ratio(tp, predicted[u]), "recall": _ratio(tp, support),
                       "support": support, "routed": predicted[u]}
    return {
        "n": n,
        "auto_rate": _ratio(len(auto), n),
        "auto_precision": _ratio(right, len(auto)),
        "clerk_accuracy": _ratio(clerk_ok, len(cased)),
        "not_relevant_precision": _ratio(sum(lab.unit == NOT_RELEVANT for lab in nr_pred),
                                         len(nr_pred)),
        "not_relevant_recall": _ratio(sum(out.unit == NOT_RELEVANT for out in nr_true),
                                      len(nr_true)),
        "not_relevant_receipts": sum(out.receipt for out in nr_true),
        "kle_group_accuracy": _ratio(kle_ok, len(kle_items)),
        "per_unit": per_unit,
        "confusion": confusion,
    }


def confusion_text(confusion: dict[str, dict[str, int]]) -> str:
    labels = sorted(set(confusion) | {c for row in confusion.values() for c in row})
    short = [lab[:6] for lab in labels]
    lines = ["true \\ routed".ljust(16) + " ".join(s.rjust(6) for s in short)]
    for lab in labels:
        row = confusion.get(lab, {})
        lines.append(lab[:15].ljust(16) + " ".join(str(row.get(c, 0) or ".").rjust(6)
                                                  for c in labels))
    return "\n".join(lines)
