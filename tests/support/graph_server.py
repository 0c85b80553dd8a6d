"""A local Microsoft Graph (mail) and Entra ID token endpoint for tests, following the
documented requests and responses:

- `POST /{tenant}/oauth2/v2.0/token` (client credentials): `{"token_type": "Bearer",
  "expires_in": ..., "access_token": ...}`, or 401 `{"error": "invalid_client", ...}`;
- `POST /introspect` (RFC 7662, for dovecot's oauth2 passdb): `{"active": true, "username"}`;
- `/v1.0/users/{user}/mailFolders/{id}` (ids or well-known names `inbox`, `msgfolderroot`),
  `.../childFolders` (GET with `$filter=displayName eq '...'`, POST to create),
  `.../messages/delta` (pages of 10 or `Prefer: odata.maxpagesize`, `@odata.nextLink` then
  `@odata.deltaLink`, removals as `@removed` rows, 410 for an unknown token),
  `/messages/{id}/$value` (MIME) and `/messages/{id}/move` (201 with the moved message; a new
  id unless the request prefers `IdType="ImmutableId"`);
- `POST .../mailFolders/{id}/messages`: a JSON message is created in the folder, a draft
  (`isDraft`) unless `singleValueExtendedProperties` sets PR_MESSAGE_FLAGS ("Integer 0x0E07")
  without mfUnsent; `internetMessageHeaders` only with names starting "x-" (else 400
  InvalidInternetMessageHeader); fileAttachments inline (a request over 4 MB is 413); Exchange
  assigns the internetMessageId. MIME as base64 `text/plain` is created as a draft.
  `GET .../mailFolders/{id}/messages` with `$filter=singleValueExtendedProperties/Any(ep: ep/id
  eq '...' and ep/value eq '...')` or none;
- errors as `{"error": {"code", "message"}}`; 401 without a valid bearer token;
  `throttle(n, retry_after)` answers the next n Graph requests with 429 and Retry-After;
  `lose_answers(n)` stores the next n created messages but answers 504 GatewayTimeout (the
  gateway gave up waiting while Exchange completed the request).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.http_server import LocalHttpServer, QuietHandler

WELL_KNOWN = ("msgfolderroot", "inbox")


@dataclass
class Folder:
    id: str
    name: str
    parent: str | None


@dataclass
class Message:
    immutable_id: str
    rest_id: str
    folder: str
    mime: bytes
    received: str
    internet_id: str
    is_draft: bool = False
    is_read: bool = False
    extended: dict[str, str] = field(default_factory=dict)  # property id (lower) -> value
    headers: list[tuple[str, str]] = field(default_factory=list)  # internetMessageHeaders


MSGFLAG_READ, MSGFLAG_UNSENT = 0x1, 0x8
MAX_REQUEST = 4 * 1024 * 1024


@dataclass
class _Change:
    seq: int
    folder: str
    message: str  # immutable id
    added: bool


@dataclass
class _User:
    folders: dict[str, Folder] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)


class GraphServer(LocalHttpServer):
    """`with GraphServer() as graph:` -> `graph.url`, `add_client`, `add_user`, `deliver`..."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clients: dict[str, tuple[str, str]] = {}  # client id -> (secret, subject)
        self.tokens: dict[str, str] = {}  # access token -> client id or user name
        self.users: dict[str, _User] = {}
        self.changes: list[_Change] = []
        self.seq = 0
        self.pages: dict[str, tuple[list[dict[str, Any]], int, str]] = {}
        self.throttled = 0
        self.retry_after = 1
        self.lost_answers = 0
        self.requests: list[tuple[str, str]] = []  # (method, path), for assertions
        self.token_requests = 0
        super().__init__(_handler(self))
        self.url = f"http://{self.host}:{self.port}"

    # --- test setup -------------------------------------------------------------------------

    def add_client(self, client_id: str, secret: str, subject: str | None = None) -> None:
        """Register an app; its tokens introspect as `subject` (default: the client id)."""
        self.clients[client_id] = (secret, subject or client_id)

    def issue_token(self, subject: str) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = subject
        return token

    def add_user(self, user: str) -> None:
        with self.lock:
            u = self.users.setdefault(user.lower(), _User())
            root = Folder(_id(), "Top of Information Store", None)
            u.folders[root.id] = root
            inbox = Folder(_id(), "Inbox", root.id)
            u.folders[inbox.id] = inbox
            u.folders["msgfolderroot"], u.folders["inbox"] = root, inbox

    def deliver(self, user: str, mime: bytes, folder: str = "inbox") -> str:
        """A message arrives in `folder`; returns its immutable id."""
        with self.lock:
            u = self.users[user.lower()]
            target = u.folders[folder].id
            m = Message(_id(), _id(), target, mime, _now(), _internet_id(mime))
            u.messages[m.immutable_id] = m
            self._change(target, m.immutable_id, True)
            return m.immutable_id

    def folder_messages(self, user: str, path: str) -> list[bytes]:
        """MIME of the messages in the folder at `path` ("inbox" or "A/B" under the root)."""
        with self.lock:
            u = self.users[user.lower()]
            folder = self._resolve(u, path)
            if folder is None:
                return []
            return [m.mime for m in u.messages.values() if m.folder == folder.id]

    def messages_in(self, user: str, path: str) -> list[Message]:
        """The messages (with flags and extended properties) in the folder at `path`."""
        with self.lock:
            u = self.users[user.lower()]
            folder = self._resolve(u, path)
            return [] if folder is None else [m for m in u.messages.values()
                                              if m.folder == folder.id]

    def throttle(self, requests: int, retry_after: int = 1) -> None:
        self.throttled, self.retry_after = requests, retry_after

    def lose_answers(self, creates: int) -> None:
        self.lost_answers = creates

    def _resolve(self, u: _User, path: str) -> Folder | None:
        if path in u.folders:
            return u.folders[path]
        parent = u.folders["msgfolderroot"]
        for part in path.split("/"):
            found = [f for f in u.folders.values() if f.parent == parent.id and f.name == part]
            if not found:
                return None
            parent = found[0]
        return parent

    def _change(self, folder: str, message: str, added: bool) -> None:
        self.seq += 1
        self.changes.append(_Change(self.seq, folder, message, added))


def _id() -> str:
    # Graph ids are long base64 strings; their form does not matter to clients
    return "AAMk" + uuid.uuid4().hex + uuid.uuid4().hex[:8]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _internet_id(mime: bytes) -> str:
    match = re.search(rb"(?im)^message-id:\s*(<[^>]+>)", mime)
    return match.group(1).decode(errors="replace") if match else ""


class _Error(Exception):
    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def _handler(server: GraphServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: bytes, ctype: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
            self.send_body(status, body, ctype, headers)

        def _json(self, status: int, data: Any) -> None:
            self._send(status, json.dumps(data).encode())

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            body = self._body() if method == "POST" else b""
            server.requests.append((method, path))
            try:
                if path.endswith("/oauth2/v2.0/token") and method == "POST":
                    return self._token(body)
                if path == "/introspect" and method == "POST":
                    return self._introspect(body)
                if not path.startswith("/v1.0/"):
                    raise _Error(404, "NotFound", "no such endpoint")
                self._graph(method, path, query, body)
            except _Error as err:
                self._send(err.status, json.dumps({"error": {
                    "code": err.code, "message": err.message,
                    "innerError": {"request-id": str(uuid.uuid4()), "date": _now()}}}).encode(),
                    headers=err.headers)

        def _token(self, body: bytes) -> None:
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            server.token_requests += 1
            client = form.get("client_id", "")
            if form.get("grant_type") != "client_credentials":
                return self._json(400, {"error": "unsupported_grant_type"})
            secret, subject = server.clients.get(client, ("", ""))
            if not client or secret != form.get("client_secret"):
                return self._json(401, {"error": "invalid_client", "error_description":
                                        "AADSTS7000215: Invalid client secret provided."})
            if not form.get("scope", "").endswith("/.default"):
                return self._json(400, {"error": "invalid_scope", "error_description":
                                        "AADSTS1002012: The provided value for scope is "
                                        "not valid."})
            self._json(200, {"token_type": "Bearer", "expires_in": 3599,
                             "ext_expires_in": 3599,
                             "access_token": server.issue_token(subject)})

        def _introspect(self, body: bytes) -> None:
            token = parse_qs(body.decode()).get("token", [""])[0]
            subject = server.tokens.get(token)
            self._json(200, {"active": True, "username": subject} if subject
                       else {"active": False})

        def _graph(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in server.tokens:
                raise _Error(401, "InvalidAuthenticationToken", "Access token is empty.")
            with server.lock:
                if server.throttled > 0:
                    server.throttled -= 1
                    raise _Error(429, "ApplicationThrottled",
                                 "Application is over its MailboxConcurrency limit.",
                                 {"Retry-After": str(server.retry_after)})
                m = re.fullmatch(r"/v1\.0/users/([^/]+)/(.*)", path)
                if not m or m.group(1).lower() not in server.users:
                    raise _Error(404, "ErrorInvalidUser", "The requested user is invalid.")
                user = server.users[m.group(1).lower()]
                immutable = 'IdType="ImmutableId"' in self.headers.get("Prefer", "")
                self._route(user, method, m.group(2), query, body, immutable)

        def _route(self, u: _User, method: str, rest: str, query: dict[str, str],
                   body: bytes, immutable: bool) -> None:
            if m := re.fullmatch(r"mailFolders/([^/]+)/messages", rest):
                folder = self._folder(u, m.group(1))
                if method == "POST":
                    return self._create(u, folder, body, immutable)
                return self._list(u, folder, query, immutable)
            if m := re.fullmatch(r"mailFolders/([^/]+)/messages/delta", rest):
                return self._delta(u, m.group(1), query, immutable)
            if m := re.fullmatch(r"mailFolders/([^/]+)/childFolders", rest):
                parent = self._folder(u, m.group(1))
                if method == "POST":
                    name = json.loads(body)["displayName"]
                    if any(f.parent == parent.id and f.name == name
                           for f in u.folders.values()):
                        raise _Error(409, "ErrorFolderExists",
                                     "A folder with the specified name already exists.")
                    folder = Folder(_id(), name, parent.id)
                    u.folders[folder.id] = folder
                    return self._json(201, _folder_json(folder))
                # folders are also keyed by well-known name: list each one once
                children = [f for k, f in u.folders.items() if f.parent == parent.id
                            and k == f.id]
                if flt := query.get("$filter"):
                    fm = re.fullmatch(r"displayName eq '((?:[^']|'')*)'", flt)
                    if not fm:
                        raise _Error(400, "ErrorInvalidUrlQueryFilter", "unsupported filter")
                    name = fm.group(1).replace("''", "'")
                    children = [f for f in children if f.name == name]
                return self._json(200, {"value": [_folder_json(f) for f in children]})
            if m := re.fullmatch(r"mailFolders/([^/]+)", rest):
                return self._json(200, _folder_json(self._folder(u, m.group(1))))
            if m := re.fullmatch(r"messages/([^/]+)/\$value", rest):
                msg = self._message(u, m.group(1))
                return self._send(200, msg.mime, "text/plain")
            if (m := re.fullmatch(r"messages/([^/]+)/move", rest)) and method == "POST":
                msg = self._message(u, m.group(1))
                target = self._folder(u, json.loads(body)["destinationId"])
                server._change(msg.folder, msg.immutable_id, False)
                msg.folder, msg.rest_id = target.id, _id()  # moving changes the REST id
                server._change(target.id, msg.immutable_id, True)
                return self._json(201, _message_json(msg, immutable))
            raise _Error(400, "BadRequest", f"Resource not found for the segment '{rest}'.")

        def _create(self, u: _User, folder: Folder, body: bytes, immutable: bool) -> None:
            if len(body) > MAX_REQUEST:
                raise _Error(413, "RequestEntityTooLarge", "The request is too large.")
            if self.headers.get("Content-Type", "").startswith("text/plain"):
                try:  # MIME, base64: always a draft
                    mime = base64.b64decode(body, validate=True)
                except binascii.Error:
                    raise _Error(400, "ErrorMimeContentInvalidBase64String",
                                 "Invalid base64 string for MIME content.") from None
                msg = Message(_id(), _id(), folder.id, mime, _now(), _internet_id(mime),
                              is_draft=True, is_read=True)
            else:
                msg = self._from_json(folder, json.loads(body))
            u.messages[msg.immutable_id] = msg
            server._change(folder.id, msg.immutable_id, True)
            if server.lost_answers > 0:
                server.lost_answers -= 1
                raise _Error(504, "GatewayTimeout", "The gateway did not receive a timely "
                             "response from the upstream server.")
            return self._json(201, _message_json(msg, immutable))

        def _from_json(self, folder: Folder, data: dict[str, Any]) -> Message:
            headers = [(h["name"], h["value"]) for h in data.get("internetMessageHeaders", [])]
            for name, _ in headers:
                if not name.lower().startswith("x-"):
                    raise _Error(400, "InvalidInternetMessageHeader",
                                 f"The internet message header name '{name}' should start "
                                 "with 'x-' or 'X-'.")
            extended = {p["id"].lower(): str(p["value"])
                        for p in data.get("singleValueExtendedProperties", [])}
            flags = MSGFLAG_READ | MSGFLAG_UNSENT  # a new message is a draft
            if (value := extended.get("integer 0x0e07")) is not None:
                flags = int(value)
            internet_id = f"<{uuid.uuid4().hex}@graph.local>"  # assigned by Exchange
            mime = _mime(data, headers, internet_id)
            return Message(_id(), _id(), folder.id, mime, _now(), internet_id,
                           is_draft=bool(flags & MSGFLAG_UNSENT),
                           is_read=bool(flags & MSGFLAG_READ), extended=extended,
                           headers=headers)

        def _list(self, u: _User, folder: Folder, query: dict[str, str],
                  immutable: bool) -> None:
            found = [m for m in u.messages.values() if m.folder == folder.id]
            if flt := query.get("$filter"):
                fm = re.fullmatch(r"singleValueExtendedProperties/Any\(ep: ep/id eq "
                                  r"'((?:[^']|'')*)' and ep/value eq '((?:[^']|'')*)'\)", flt)
                if not fm:
                    raise _Error(400, "ErrorInvalidUrlQueryFilter", "unsupported filter")
                prop, value = (g.replace("''", "'") for g in fm.groups())
                found = [m for m in found if m.extended.get(prop.lower()) == value]
            self._json(200, {"value": [_message_json(m, immutable) for m in found]})

        def _folder(self, u: _User, ref: str) -> Folder:
            if ref in u.folders:
                return u.folders[ref]
            raise _Error(404, "ErrorItemNotFound",
                         "The specified object was not found in the store.")

        def _message(self, u: _User, ref: str) -> Message:
            for msg in u.messages.values():
                if ref in (msg.immutable_id, msg.rest_id):
                    return msg
            raise _Error(404, "ErrorItemNotFound",
                         "The specified object was not found in the store.")

        def _delta(self, u: _User, folder_ref: str, query: dict[str, str],
                   immutable: bool) -> None:
            folder = self._folder(u, folder_ref)
            base = f"{server.url}{urlsplit(self.path).path}"
            if skip := query.get("$skiptoken"):
                if skip not in server.pages:
                    raise _Error(410, "SyncStateNotFound", "The sync state was not found.")
                rows, offset, delta = server.pages.pop(skip)
            else:
                if "$deltatoken" in query:
                    try:
                        since = int(query["$deltatoken"])
                    except ValueError:
                        raise _Error(410, "SyncStateInvalid",
                                     "The sync state is invalid.") from None
                    rows = self._changes_since(u, folder.id, since, immutable)
                else:
                    rows = [_message_json(msg, immutable) for msg in u.messages.values()
                            if msg.folder == folder.id]
                offset, delta = 0, str(server.seq)
            size = 10
            if pm := re.search(r"odata\.maxpagesize=(\d+)", self.headers.get("Prefer", "")):
                size = max(1, int(pm.group(1)))
            page = rows[offset:offset + size]
            out: dict[str, Any] = {
                "@odata.context": f"{server.url}/v1.0/$metadata#Collection(message)",
                "value": page}
            if offset + size < len(rows):
                token = secrets.token_urlsafe(12)
                server.pages[token] = (rows, offset + size, delta)
                out["@odata.nextLink"] = f"{base}?$skiptoken={token}"
            else:
                out["@odata.deltaLink"] = f"{base}?$deltatoken={delta}"
            self._json(200, out)

        def _changes_since(self, u: _User, folder: str, since: int,
                           immutable: bool) -> list[dict[str, Any]]:
            last: dict[str, bool] = {}
            for change in server.changes:
                if change.seq > since and change.folder == folder:
                    last[change.message] = change.added
            rows = []
            for mid, added in last.items():
                msg = u.messages.get(mid)
                if msg is None:
                    continue
                if added and msg.folder == folder:
                    rows.append(_message_json(msg, immutable))
                elif not added:
                    rows.append({"@odata.type": "#microsoft.graph.message",
                                 "id": msg.immutable_id if immutable else msg.rest_id,
                                 "@removed": {"reason": "deleted"}})
            return rows

    return Handler


def _mime(data: dict[str, Any], headers: list[tuple[str, str]], internet_id: str) -> bytes:
    """The MIME form Exchange would give a JSON-created message (what `$value` returns)."""
    from email.message import EmailMessage

    msg = EmailMessage()
    sender = data.get("from", {}).get("emailAddress", {})
    if sender:
        msg["From"] = f'{sender.get("name", "")} <{sender.get("address", "")}>'
    msg["To"] = ", ".join(r["emailAddress"]["address"] for r in data.get("toRecipients", []))
    msg["Subject"] = data.get("subject", "")
    msg["Message-ID"] = internet_id
    for reply in data.get("replyTo", []):
        msg["Reply-To"] = reply["emailAddress"]["address"]
    for name, value in headers:
        msg[name] = value
    msg.set_content(data.get("body", {}).get("content", ""))
    for att in data.get("attachments", []):
        if att.get("@odata.type") != "#microsoft.graph.fileAttachment":
            raise _Error(400, "ErrorInvalidRequest", "only fileAttachments are served here")
        maintype, _, subtype = att.get("contentType", "application/octet-stream").partition("/")
        content = base64.b64decode(att["contentBytes"])
        if (maintype, subtype) == ("message", "rfc822"):
            from email import message_from_bytes, policy

            msg.add_attachment(message_from_bytes(content, policy=policy.default),
                               filename=att["name"])
        else:
            msg.add_attachment(content, maintype=maintype, subtype=subtype,
                               filename=att["name"])
    return msg.as_bytes()


def _folder_json(f: Folder) -> dict[str, Any]:
    return {"id": f.id, "displayName": f.name, "parentFolderId": f.parent or "",
            "childFolderCount": 0, "unreadItemCount": 0, "totalItemCount": 0,
            "isHidden": False}


def _message_json(m: Message, immutable: bool) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.message", "@odata.etag": 'W/"CQAAABYAAAA"',
            "id": m.immutable_id if immutable else m.rest_id, "receivedDateTime": m.received,
            "internetMessageId": m.internet_id, "parentFolderId": m.folder,
            "isDraft": m.is_draft, "isRead": m.is_read}
