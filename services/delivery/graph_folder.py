"""Putting an item into a folder of an Exchange Online mailbox through Microsoft Graph.

Graph creates a message in a folder with `POST /users/{id}/mailFolders/{id}/messages` and a JSON
message. (A MIME upload, base64 as text/plain, is always a draft, and its flags cannot be set
in the same request.) The JSON carries the forward's subject, text and X-Postfordeler-* headers
(`internetMessageHeaders`: custom headers are only accepted when a message is created, and
only with names starting "x-"), the original as a fileAttachment, and two
singleValueExtendedProperties: PR_MESSAGE_FLAGS ("Integer 0x0E07") = 0, so it is a received,
unread message rather than a draft, and a named property holding the copy's Message-ID, which
the look-up before creating filters on (`singleValueExtendedProperties/Any(...)`): Graph
assigns its own internetMessageId.

Attachments in the create request are limited to 3 MB (above that Graph wants an upload
session); a larger original is left out and the text says it is in Postfordeler. Token,
throttling and folder look-up are the connection's (shared/graph.py, shared with ingest).
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from typing import Any

from shared.graph import GraphConnection
from shared.tenant import MailboxConfig

from .forward import Forward, decision_headers, note, subject
from .notice import compose_notice

MESSAGE_FLAGS = "Integer 0x0E07"
# A named property of Postfordeler's own (PS_PUBLIC_STRINGS would clash with others' names).
DELIVERY_PROPERTY = "String {8b9c1e2a-5f0d-4a53-9c1e-50f0de1e4e12} Name PostfordelerDelivery"
MAX_INLINE_ATTACHMENT = 3 * 1024 * 1024


def graph_message(copy: Forward) -> dict[str, Any]:
    """The create-message body for `copy` (pure). A sensitive item's copy is the notice only,
    as by SMTP."""
    attach = (copy.original is not None and not copy.sensitive
              and len(copy.original) <= MAX_INLINE_ATTACHMENT)
    if copy.sensitive:
        notice = compose_notice(copy)
        title, text = str(notice["Subject"]), str(notice.get_content())
        headers = [(n, str(v)) for n, v in notice.items() if n.lower().startswith("x-")]
    else:
        title, text = subject(copy), note(copy if attach else replace(copy, original=None))
        headers = decision_headers(copy)
    message: dict[str, Any] = {
        "subject": title,
        "body": {"contentType": "text", "content": text},
        "from": {"emailAddress": {"name": copy.from_name, "address": copy.from_address}},
        "toRecipients": [{"emailAddress": {"address": copy.to}}],
        "internetMessageHeaders": [{"name": n, "value": v} for n, v in headers],
        "singleValueExtendedProperties": [{"id": MESSAGE_FLAGS, "value": "0"},
                                          {"id": DELIVERY_PROPERTY, "value": copy.msgid}],
    }
    if copy.sender and "@" in copy.sender and not copy.sensitive:
        message["replyTo"] = [{"emailAddress": {"address": copy.sender}}]
    if attach and copy.original is not None:
        email = copy.channel == "email"
        message["attachments"] = [{
            "@odata.type": "#microsoft.graph.fileAttachment", "name": copy.original_name,
            "contentType": "message/rfc822" if email else "application/octet-stream",
            "contentBytes": base64.b64encode(copy.original).decode()}]
    return message


class GraphFolderWriter:
    def __init__(self, config: MailboxConfig, *, timeout: float = 60.0) -> None:
        self._graph = GraphConnection(config, timeout=timeout)  # refuses a missing address
        self.config = config
        self.name = config.name
        self._lock = asyncio.Lock()  # one put at a time: a copy is never created twice

    async def put(self, path: str, copy: Forward) -> bool:
        async with self._lock:
            folder = await self._graph.folder_id(path)
            value = copy.msgid.replace("'", "''")
            found = await self._graph.json(
                "GET", f"{self._graph.base}/mailFolders/{folder}/messages", params={
                    "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq "
                               f"'{DELIVERY_PROPERTY}' and ep/value eq '{value}')",
                    "$select": "id"})
            if found.get("value"):
                return False
            # A 503/504 may come after the message was stored: not retried here but raised
            # (TransientError), so the retry of the delivery looks for it first.
            await self._graph.json("POST", f"{self._graph.base}/mailFolders/{folder}/messages",
                                   json=graph_message(copy), retry_busy=False)
            return True

    async def close(self) -> None:
        await self._graph.close()

