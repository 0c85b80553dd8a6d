"""Named receipt templates: the ones a routing rule can ask for (`receipt_template: <name>`).

They live in the tenant's `receipts/named/<name>.txt.j2` (required; the plain-text receipt) and
`receipts/named/<name>.html.j2` (optional; without it the receipt is plain text only). The API
and `postfordeler rules import` refuse a rule naming one that is not there; the journal, which
renders them (services/journal/receipt_text.py), falls back to the usual choice when one has
been removed since and records that on the item.
"""

from __future__ import annotations

from pathlib import Path

NAMED_DIR = "named"  # under the tenant's receipts/ directory


def named_receipt_templates(tenant_dir: Path | None) -> frozenset[str]:
    """The names of the tenant's named receipt templates."""
    folder = tenant_dir / "receipts" / NAMED_DIR if tenant_dir else None
    if folder is None or not folder.is_dir():
        return frozenset()
    return frozenset(p.name.removesuffix(".txt.j2") for p in folder.glob("*.txt.j2")
                     if p.is_file())
