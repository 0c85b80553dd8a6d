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
session); a larger original is left out and the text says it is in Postfordeler.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from shared.errors import ConfigurationError, TransientError
from shared.oauth import TokenSource
from shared.tenant import MailboxConfig, OAuth2Config

from .forward import Forward, decision_headers, note, subject
from .notice import compose_notice

log = structlog.get_logger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MESSAGE_FLAGS = "Integer 0x0E07"
# A named property of Postfordeler's own (PS_PUBLIC_STRINGS would clash with others' names).
DELIVERY_PROPERTY = "String {8b9c1e2a-5f0d-4a53-9c1e-50f0de1e4e12} Name PostfordelerDelivery"
MAX_INLINE_ATTACHMENT = 3 * 1024 * 1024
MAX_RETRIES = 6
MAX_RETRY_AFTER = 120.0
WELL_KNOWN = {"inbox": "inbox", "": "msgfolderroot"}


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
        if not config.address:
            raise ConfigurationError(f"mailbox {config.name}: graph needs the address (user)")
        self.config = config
        self.name = config.name
        oauth = config.oauth()
        if oauth.scope == OAuth2Config.model_fields["scope"].default:
            oauth = oauth.model_copy(update={"scope": GRAPH_SCOPE})  # the IMAP default
        self._tokens = TokenSource(oauth)
        self._http = httpx.AsyncClient(timeout=timeout)
        self._base = f"{config.graph_url.rstrip('/')}/users/{quote(config.address)}"
        self._folders: dict[str, str] = {}
        self._lock = asyncio.Lock()  # one put at a time: a folder is never created twice

    async def _request(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        refreshed = False
        for attempt in range(MAX_RETRIES):
            token = await self._tokens.token(self._http)
            headers = {"Authorization": f"Bearer {token}", "Prefer": 'IdType="ImmutableId"'}
            try:
                response = await self._http.request(method, url, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                raise TransientError(f"graph unreachable: {type(exc).__name__}") from exc
            if response.status_code in (429, 503, 504):
                await asyncio.sleep(_retry_after(response, attempt))
                continue
            if response.status_code == 401 and not refreshed:
                self._tokens.invalidate()  # expired or revoked early: one fresh token
                refreshed = True
                continue
            if response.status_code >= 400:
                raise _error(response)
            data = response.json()
            assert isinstance(data, dict)
            return data
        raise TransientError(f"graph still throttling after {MAX_RETRIES} attempts")

    async def _folder_id(self, path: str) -> str:
        if path in self._folders:
            return self._folders[path]
        if path.lower() in WELL_KNOWN:
            data = await self._request("GET", f"{self._base}/mailFolders/"
                                              f"{WELL_KNOWN[path.lower()]}")
            self._folders[path] = str(data["id"])
            return self._folders[path]
        parent = await self._folder_id("")
        for part in path.split("/"):
            name = part.replace("'", "''")
            found = await self._request(
                "GET", f"{self._base}/mailFolders/{parent}/childFolders",
                params={"$filter": f"displayName eq '{name}'"})
            if found["value"]:
                parent = str(found["value"][0]["id"])
                continue
            created = await self._request("POST", f"{self._base}/mailFolders/{parent}/"
                                                  "childFolders", json={"displayName": part})
            log.info("created mailbox folder", mailbox=self.name, folder=path)
            parent = str(created["id"])
        self._folders[path] = parent
        return parent

    async def put(self, path: str, copy: Forward) -> bool:
        async with self._lock:
            folder = await self._folder_id(path)
            value = copy.msgid.replace("'", "''")
            found = await self._request(
                "GET", f"{self._base}/mailFolders/{folder}/messages", params={
                    "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq "
                               f"'{DELIVERY_PROPERTY}' and ep/value eq '{value}')",
                    "$select": "id"})
            if found.get("value"):
                return False
            await self._request("POST", f"{self._base}/mailFolders/{folder}/messages",
                                json=graph_message(copy))
            return True

    async def close(self) -> None:
        await self._http.aclose()


def _retry_after(response: httpx.Response, attempt: int) -> float:
    try:
        value = float(response.headers.get("Retry-After", ""))
    except ValueError:
        value = 2.0 ** attempt  # no header: back off exponentially
    return max(0.0, min(value, MAX_RETRY_AFTER))


def _error(response: httpx.Response) -> Exception:
    try:
        error = response.json().get("error", {})
        detail = f"{error.get('code')}: {str(error.get('message', ''))[:200]}"
    except ValueError:
        detail = f"HTTP {response.status_code}"
    if response.status_code >= 500:
        return TransientError(f"graph {response.status_code} {detail}")
    return RuntimeError(f"graph {response.status_code} {detail}")
