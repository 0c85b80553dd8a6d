"""Classifier speed on one core: entity extraction plus model prediction, and model load time.

    python bench/classifier.py [--model models/eksempelby] [--tenant DIR] [--n 2000]

Without --model it trains one on the sample items with KL's KLE plan from the corpus
(POSTFORDELER_CORPUS) and stores it in a temporary directory first. Items are the sample
data's items (635 bytes of text on average); the first pass warms the per-word caches (lemmas,
character n-gram columns), so every word of the timed passes is cached: a service that has
run a while misses few (16% of the sample items' words when read once in order). Timed:
extraction alone, extraction plus prediction one item at a time (a lone item in the service),
and in batches of 64 (the classifier consumer classifies the items it holds at once as one
batch, so this is its rate on a backlog); the last for the sample items of 0.75-1.5 KB too
(the issue's "typical 1 KB mail").
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from postfordeler.commands.classifier import read_items
    from services.classifier import store
    from services.classifier.pipeline import Classifier
    from shared.tenant import Tenant

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path)
    ap.add_argument("--kle", type=Path, default=Path(os.environ.get(
        "POSTFORDELER_CORPUS", ROOT.parent / "shared/corpus")) / "kle"
        / "KLE-Emneplan_Version2-0_2015-08-01.xml")
    ap.add_argument("--tenant", type=Path, default=ROOT / "deploy/examples/eksempelby")
    ap.add_argument("--items", type=Path, default=Path(os.environ.get(
        "POSTFORDELER_SAMPLE_DATA", ROOT.parent / "shared/data/eksempelby")) / "items")
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if args.model is None:
        args.model = _train(args.tenant, args.items, args.kle)
        args.tenant = args.model.parent / "tenant"  # with the KLE plan it was trained with
    t0 = time.perf_counter()
    model, _ = store.load(args.model)
    load_s = time.perf_counter() - t0
    classifier = Classifier.from_tenant(Tenant(args.tenant), model)
    docs = [i.document for i in read_items(sorted(args.items.glob("*.jsonl")))]
    size = sum(map(_size, docs))
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
    t0 = time.perf_counter()
    for start in range(0, len(batch), 64):
        classifier.classify_many(batch[start:start + 64])
    batched_s = time.perf_counter() - t0
    kb = [d for d in docs if 768 <= _size(d) <= 1536]
    kb_batch = [kb[i % len(kb)] for i in range(args.n)]
    t0 = time.perf_counter()
    for start in range(0, len(kb_batch), 64):
        classifier.classify_many(kb_batch[start:start + 64])
    kb_s = time.perf_counter() - t0
    print(json.dumps({"items": args.n, "mean_item_bytes": round(size / len(docs)),
                      "extraction_items_per_s": round(args.n / extract_s),
                      "extraction_and_prediction_items_per_s": round(args.n / total_s),
                      "batched_items_per_s": round(args.n / batched_s),
                      "batched_1kb_items_per_s": round(args.n / kb_s),
                      "items_1kb": len(kb),
                      "mean_1kb_item_bytes": round(sum(map(_size, kb)) / len(kb)),
                      "model_load_s": round(load_s, 3)}))


def _size(d: Any) -> int:
    return len(d.subject) + len(d.body) + sum(len(a) for a in d.attachments)


def _train(tenant_dir: Path, items: Path, kle: Path) -> Path:
    import shutil
    import tempfile

    from postfordeler.commands.classifier import read_items
    from services.classifier import store
    from services.classifier.kle import parse_emneplan
    from services.classifier.training import data_hash, train_model
    from shared.tenant import Tenant

    out = Path(tempfile.mkdtemp(prefix="bench-model-"))
    shutil.copytree(tenant_dir, out / "tenant")
    plan = parse_emneplan(kle.read_bytes()) if kle.exists() else None
    if plan is not None:
        (out / "tenant" / "kle.json").write_text(plan.to_json(), encoding="utf-8")
    labelled = read_items(sorted(items.glob("*.jsonl")))
    model, metrics = train_model(Tenant(out / "tenant"), labelled, plan=plan)
    store.save(model, out / "model", name="bench", data_hash=data_hash(labelled),
               metrics=metrics, tenant="bench")
    return out / "model"


if __name__ == "__main__":
    main()
