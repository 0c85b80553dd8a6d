"""Classifier speed on one core: entity extraction plus model prediction, and model load time.

    python bench/classifier.py --model models/eksempelby [--tenant DIR] [--n 2000]

Items are the sample data's mails (about 1 KB each), classified one at a time as the service
does; the first pass warms the lemma cache, the timed pass is the second.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from postfordeler.commands.classifier import read_items
    from services.classifier import store
    from services.classifier.pipeline import Classifier
    from shared.tenant import Tenant

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--tenant", type=Path, default=ROOT / "deploy/examples/eksempelby")
    ap.add_argument("--items", type=Path, default=Path(os.environ.get(
        "POSTFORDELER_SAMPLE_DATA", ROOT.parent / "shared/data/eksempelby")) / "items")
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    t0 = time.perf_counter()
    model, _ = store.load(args.model)
    load_s = time.perf_counter() - t0
    classifier = Classifier.from_tenant(Tenant(args.tenant), model)
    docs = [i.document for i in read_items(sorted(args.items.glob("*.jsonl")))]
    size = sum(len(d.subject) + len(d.body) + sum(map(len, d.attachments)) for d in docs)
    for d in docs:
        classifier.classify(d)
    batch = [docs[i % len(docs)] for i in range(args.n)]
    t0 = time.perf_counter()
    for d in batch:
        classifier.entities(d)
    extract_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for d in batch:
        classifier.classify(d)
    total_s = time.perf_counter() - t0
    print(json.dumps({"items": args.n, "mean_item_bytes": round(size / len(docs)),
                      "extraction_items_per_s": round(args.n / extract_s),
                      "extraction_and_prediction_items_per_s": round(args.n / total_s),
                      "model_load_s": round(load_s, 3)}))


if __name__ == "__main__":
    main()
