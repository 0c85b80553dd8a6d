"""Prometheus metrics shared by all services (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ITEMS_RECEIVED = Counter("postfordeler_items_received_total", "Items taken in", ["channel"])
ITEMS_ROUTED = Counter("postfordeler_items_routed_total", "Routing outcomes", ["outcome"])
ITEMS_FAILED = Counter("postfordeler_items_failed_total", "Items that failed", ["stage"])
STAGE_PROCESSED = Counter("postfordeler_stage_messages_total", "Messages handled",
                          ["stage", "result"])
STAGE_SECONDS = Histogram("postfordeler_stage_seconds", "Time to handle one message", ["stage"])
LOOPS_STOPPED = Counter("postfordeler_loops_stopped_total",
                        "Auto-replies, bounces and our own mail ended at ingest", ["kind"])
MAILBOX_UP = Gauge("postfordeler_mailbox_up", "1 when the last poll succeeded", ["mailbox"])
RECEIPTS_SENT = Counter("postfordeler_receipts_sent_total", "Receipts sent")
REPUBLISHED = Counter("postfordeler_reconciler_republished_total", "Items re-published")
