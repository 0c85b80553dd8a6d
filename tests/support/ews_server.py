"""A local Exchange Web Services endpoint for tests: the SOAP operations exchangelib sends for
the EWS mailbox adapter, answered the way Exchange 2016 answers them.

- `POST /EWS/Exchange.asmx` with a SOAP envelope; every answer carries
  `<t:ServerVersionInfo>` in the SOAP header and one `<m:{Op}ResponseMessage ResponseClass=...>`
  per requested thing (`NoError`, or an error code such as `ErrorItemNotFound`,
  `ErrorAccessDenied`, `ErrorInvalidSyncStateData` with `ResponseClass="Error"`).
- Operations: GetFolder (DistinguishedFolderId with an optional `<t:Mailbox>`, or FolderId),
  FindFolder (shallow, an `IsEqualTo` restriction on `folder:DisplayName`), CreateFolder,
  SyncFolderItems (opaque SyncState, MaxChangesReturned pages, `IncludesLastItemInRange`;
  without a state every item still in the folder is a Create; an item that came and went
  between two states is not reported), GetItem (`item:MimeContent` or IncludeMimeContent as
  base64), MoveItem (the moved item gets a new ItemId, as in Exchange), CreateItem of a message
  from MimeContent into SavedItemFolderId (MessageDisposition SaveOnly; as in Exchange the
  import is a draft, PR_MESSAGE_FLAGS with mfUnsent, unless the request sets the extended
  property 0x0E07 itself), FindItem (shallow, an `IsEqualTo` restriction on
  `message:InternetMessageId` or none).
- Access: HTTP basic logins or OAuth 2.0 bearer tokens from a token endpoint (`tokens`; 401
  otherwise), or one anonymous principal for exchangelib's NOAUTH. An app-only token acts
  only through `<t:ExchangeImpersonation>`, as on Exchange (without it the fault
  `ErrorInvalidExchangeImpersonationHeaderData`), and only when the app has
  full_access_as_app (`grant_app`). A logon user opens its own mailbox, another one only
  with delegate rights (`grant_delegate`), and acts as another user (`<t:ExchangeImpersonation>`
  header) only with the ApplicationImpersonation role (`grant_impersonation`); otherwise the
  SOAP fault `ErrorImpersonateUserDenied` or the response code `ErrorAccessDenied`.
- `requests` records (operation, logon user, target mailbox), `synced` the creates and deletes
  in each SyncFolderItems answer, `bodies` the SOAP requests, `anchors` their X-AnchorMailbox
  headers, for assertions.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.utils import parseaddr
from http.server import BaseHTTPRequestHandler
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from tests.support.http_server import LocalHttpServer, QuietHandler

S = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
APP = "app:"  # the principal of an app-only bearer token
DISTINGUISHED = {"root": "Top of Information Store", "msgfolderroot": "Top of Information Store",
                 "inbox": "Inbox"}


@dataclass
class Folder:
    id: str
    name: str
    parent: str | None
    distinguished: str | None = None
    items: dict[str, Item] = field(default_factory=dict)


MSGFLAG_READ, MSGFLAG_UNSENT = 0x1, 0x8  # PidTagMessageFlags bits (MS-OXCMSG 2.2.1.6)


@dataclass
class Item:
    id: str
    mime: bytes
    received: str
    change_key: str = field(default_factory=lambda: _b64(os.urandom(16)))
    flags: int = 0  # a delivered message: unread, not a draft

    @property
    def is_draft(self) -> bool:
        return bool(self.flags & MSGFLAG_UNSENT)

    @property
    def is_read(self) -> bool:
        return bool(self.flags & MSGFLAG_READ)


@dataclass
class _Change:
    seq: int
    item: str
    created: bool


@dataclass
class _Mailbox:
    address: str
    folders: dict[str, Folder] = field(default_factory=dict)
    changes: dict[str, list[_Change]] = field(default_factory=dict)  # folder id -> log


class _Fail(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(code)
        self.code, self.text = code, text


class EwsServer(LocalHttpServer):
    """`with EwsServer() as ews:` -> `ews.url`, `add_mailbox`, `add_user`, `deliver`..."""

    def __init__(self, anonymous: str | None = None) -> None:
        self.lock = threading.RLock()
        self.anonymous = anonymous  # the principal of requests without credentials (NOAUTH)
        self.users: dict[str, tuple[str, str]] = {}  # logon name -> (password, own address)
        self.mailboxes: dict[str, _Mailbox] = {}
        self.delegates: dict[str, set[str]] = {}  # mailbox address -> logon addresses
        self.impersonators: set[str] = set()
        # OAuth 2.0: bearer tokens a token endpoint issued (token -> client id; e.g. the
        # GraphServer's `tokens`), and the apps granted full_access_as_app
        self.tokens: dict[str, str] = {}
        self.apps: set[str] = set()
        self.anchors: list[str] = []  # the X-AnchorMailbox header of each request
        self.seq = 0
        self.requests: list[tuple[str, str, str]] = []  # (operation, principal, mailbox)
        self.bodies: list[bytes] = []  # the raw SOAP requests, to check what exchangelib sends
        self.synced: list[tuple[int, int]] = []  # (creates, deletes) of each SyncFolderItems
        super().__init__(_handler(self))
        self.url = f"http://{self.host}:{self.port}/EWS/Exchange.asmx"

    # --- test setup -------------------------------------------------------------------------

    def add_mailbox(self, address: str) -> None:
        with self.lock:
            mb = _Mailbox(address)
            root = Folder(_folder_id(), DISTINGUISHED["root"], None, "root")
            top = Folder(_folder_id(), DISTINGUISHED["msgfolderroot"], root.id, "msgfolderroot")
            inbox = Folder(_folder_id(), "Inbox", top.id, "inbox")
            for f in (root, top, inbox):
                mb.folders[f.id] = f
                mb.changes[f.id] = []
            self.mailboxes[address.lower()] = mb

    def add_user(self, logon: str, password: str, address: str) -> None:
        """A logon account (DOMAIN\\user or UPN) whose own mailbox is `address`."""
        with self.lock:
            self.users[logon] = (password, address.lower())
            if address.lower() not in self.mailboxes:
                self.add_mailbox(address)

    def grant_delegate(self, mailbox: str, user_address: str) -> None:
        self.delegates.setdefault(mailbox.lower(), set()).add(user_address.lower())

    def grant_impersonation(self, user_address: str) -> None:
        self.impersonators.add(user_address.lower())

    def grant_app(self, client_id: str) -> None:
        """The app registration's `full_access_as_app` (application permission): its
        app-only tokens may impersonate any mailbox."""
        self.apps.add(APP + client_id)

    def deliver(self, address: str, mime: bytes, folder: str = "Inbox") -> str:
        with self.lock:
            mb = self.mailboxes[address.lower()]
            target = self._path(mb, folder)
            if target is None:
                raise KeyError(folder)
            item = Item(_item_id(), mime, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            self._add(mb, target, item)
            return item.id

    def delete(self, address: str, item_id: str) -> None:
        """Someone deletes a waiting message in Outlook (hard delete)."""
        with self.lock:
            mb = self.mailboxes[address.lower()]
            for f in mb.folders.values():
                if item_id in f.items:
                    self._remove(mb, f, item_id)

    def folder_messages(self, address: str, path: str) -> list[bytes]:
        """MIME of the messages in the folder at `path` ("Inbox" or "A/B"), oldest first."""
        with self.lock:
            found = self._path(self.mailboxes[address.lower()], path)
            return [] if found is None else [i.mime for i in found.items.values()]

    def folder_items(self, address: str, path: str) -> list[Item]:
        """The items in the folder at `path` (with their flags), oldest first."""
        with self.lock:
            found = self._path(self.mailboxes[address.lower()], path)
            return [] if found is None else list(found.items.values())

    def operations(self, mailbox: str | None = None) -> list[str]:
        return [op for op, _who, mb in self.requests if mailbox is None or mb == mailbox.lower()]

    # --- model ------------------------------------------------------------------------------

    def _path(self, mb: _Mailbox, path: str) -> Folder | None:
        if path.lower() == "inbox":
            return next(f for f in mb.folders.values() if f.distinguished == "inbox")
        parent = next(f for f in mb.folders.values() if f.distinguished == "msgfolderroot")
        for part in path.split("/"):
            child = next((f for f in mb.folders.values()
                          if f.parent == parent.id and f.name == part), None)
            if child is None:
                return None
            parent = child
        return parent

    def _add(self, mb: _Mailbox, folder: Folder, item: Item) -> None:
        self.seq += 1
        folder.items[item.id] = item
        mb.changes[folder.id].append(_Change(self.seq, item.id, True))

    def _remove(self, mb: _Mailbox, folder: Folder, item_id: str) -> Item:
        self.seq += 1
        mb.changes[folder.id].append(_Change(self.seq, item_id, False))
        return folder.items.pop(item_id)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _item_id() -> str:
    # Exchange ids are base64 of ~110 bytes (152 characters, '+', '/' and '=' included)
    return _b64(b"\x00\x00\x00\x00" + os.urandom(107))


def _folder_id() -> str:
    return _b64(b"\x00\x01" + os.urandom(44))


def _handler(server: EwsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_body(status, body, "text/xml; charset=utf-8", headers)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.lower() != "/ews/exchange.asmx":
                return self._send(404, b"")
            logon = self._logon()
            if logon is None:
                bearer = self.headers.get("Authorization", "").lower().startswith("bearer")
                return self._send(401, b"", {"WWW-Authenticate": 'Bearer error="invalid_token"'
                                             if bearer else 'Basic realm="127.0.0.1"'})
            with server.lock:
                server.bodies.append(body)
                server.anchors.append(self.headers.get("X-AnchorMailbox", ""))
                status, answer = _Request(server, logon, body).answer()
            self._send(status, answer.encode())

        def _logon(self) -> str | None:
            auth = self.headers.get("Authorization", "")
            if not auth:
                return server.anonymous.lower() if server.anonymous else None
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "bearer":  # app-only: acts only through impersonation
                client = server.tokens.get(value.strip())
                return APP + client if client else None
            if scheme.lower() != "basic":
                return None
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            known = server.users.get(user)
            return known[1] if known and known[0] == password else None

    return Handler


class _Request:
    """One SOAP request, answered under the server's lock."""

    def __init__(self, server: EwsServer, logon: str, body: bytes) -> None:
        self.server, self.logon, self.body = server, logon, body

    def answer(self) -> tuple[int, str]:
        try:
            env = ET.fromstring(self.body)
            op = next(iter(env.find(f"{{{S}}}Body") or []))
        except (ET.ParseError, StopIteration):
            return 500, _fault("ErrorSchemaValidation", "The request failed schema validation.")
        name = op.tag.split("}")[1]
        try:
            self.principal = self._principal(env)
        except _Fail as fail:
            self.server.requests.append((name, self.logon, ""))
            return 500, _fault(fail.code, fail.text)
        self.target = self.principal
        handler = getattr(self, f"_op_{name}", None)
        if handler is None:
            return 500, _fault("ErrorInvalidRequest", f"{name} is not served here.")
        try:
            messages = handler(op)
        except NotImplementedError as exc:  # what exchangelib sent is beyond this server
            self.server.requests.append((name, self.logon, ""))
            return 500, _fault("ErrorInvalidRequest", str(exc))
        self.server.requests.append((name, self.logon, self.target))
        return 200, _envelope(name, "".join(messages))

    def _principal(self, env: ET.Element) -> str:
        sid = env.find(f"{{{S}}}Header/{{{T}}}ExchangeImpersonation/{{{T}}}ConnectingSID")
        if sid is None:
            if self.logon.startswith(APP):
                raise _Fail("ErrorInvalidExchangeImpersonationHeaderData",
                            "ExchangeImpersonation SOAP header must be present for this type of "
                            "OAuth token.")
            return self.logon
        who = (sid.findtext(f"{{{T}}}PrimarySmtpAddress") or sid.findtext(f"{{{T}}}SmtpAddress")
               or "").lower()
        if self.logon not in self.server.impersonators | self.server.apps:
            raise _Fail("ErrorImpersonateUserDenied",
                        "The account does not have permission to impersonate the requested user.")
        if who not in self.server.mailboxes:
            raise _Fail("ErrorNonExistentMailbox", f"The SMTP address has no mailbox associated "
                                                   f"with it: {who}")
        return who

    # --- folders and access -----------------------------------------------------------------

    def _mailbox(self, address: str) -> _Mailbox:
        mb = self.server.mailboxes.get(address)
        if mb is None:
            raise _Fail("ErrorNonExistentMailbox",
                        "The SMTP address has no mailbox associated with it.")
        if address != self.principal and self.principal not in self.server.delegates.get(
                address, set()):
            raise _Fail("ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        self.target = address
        return mb

    def _folder(self, ref: ET.Element) -> tuple[_Mailbox, Folder]:
        if ref.tag == f"{{{T}}}DistinguishedFolderId":
            address = (ref.findtext(f"{{{T}}}Mailbox/{{{T}}}EmailAddress") or self.principal)
            mb = self._mailbox(address.lower())
            name = ref.get("Id", "")
            found = next((f for f in mb.folders.values() if f.distinguished == name), None)
        else:
            owner = next((a for a, mb in self.server.mailboxes.items()
                          if ref.get("Id") in mb.folders), None)
            if owner is None:
                raise _Fail("ErrorFolderNotFound", "The specified folder could not be found in "
                                                   "the store.")
            mb = self._mailbox(owner)
            found = mb.folders[ref.get("Id", "")]
        if found is None:
            raise _Fail("ErrorFolderNotFound", "The specified folder could not be found in the "
                                               "store.")
        return mb, found

    def _each(self, op: str, refs: list[ET.Element], fn: Any) -> list[str]:
        out = []
        for ref in refs:
            try:
                out.append(_message(op, fn(ref)))
            except _Fail as fail:
                out.append(_error(op, fail))
        return out

    def _op_GetFolder(self, op: ET.Element) -> list[str]:  # noqa: N802 - EWS operation name
        refs = list(op.find(f"{{{M}}}FolderIds") or [])
        return self._each("GetFolder", refs,
                          lambda r: f"<m:Folders>{_folder_xml(*self._folder(r))}</m:Folders>")

    def _op_FindFolder(self, op: ET.Element) -> list[str]:  # noqa: N802
        wanted = None
        equal = op.find(f"{{{M}}}Restriction/{{{T}}}IsEqualTo")
        if equal is not None:
            field_uri = equal.find(f"{{{T}}}FieldURI")
            if field_uri is None or field_uri.get("FieldURI") != "folder:DisplayName":
                raise NotImplementedError("only DisplayName restrictions are served")
            wanted = equal.find(f"{{{T}}}FieldURIOrConstant/{{{T}}}Constant")
        if op.get("Traversal") != "Shallow":
            raise NotImplementedError("only shallow traversal is served")

        def find(ref: ET.Element) -> str:
            mb, parent = self._folder(ref)
            found = [f for f in mb.folders.values() if f.parent == parent.id
                     and (wanted is None or f.name == wanted.get("Value"))]
            return (f'<m:RootFolder TotalItemsInView="{len(found)}" '
                    f'IncludesLastItemInRange="true"><t:Folders>'
                    + "".join(_folder_xml(mb, f) for f in found) + "</t:Folders></m:RootFolder>")

        return self._each("FindFolder", list(op.find(f"{{{M}}}ParentFolderIds") or []), find)

    def _op_CreateFolder(self, op: ET.Element) -> list[str]:  # noqa: N802
        try:
            mb, parent = self._folder(next(iter(op.find(f"{{{M}}}ParentFolderId") or [])))
        except _Fail as fail:
            return [_error("CreateFolder", fail)]

        def create(spec: ET.Element) -> str:
            name = spec.findtext(f"{{{T}}}DisplayName") or ""
            if any(f.parent == parent.id and f.name == name for f in mb.folders.values()):
                raise _Fail("ErrorFolderExists", "A folder with the specified name already "
                                                 "exists.")
            folder = Folder(_folder_id(), name, parent.id)
            mb.folders[folder.id] = folder
            mb.changes[folder.id] = []
            return (f'<m:Folders><t:Folder><t:FolderId Id={quoteattr(folder.id)} '
                    f'ChangeKey="AQAAABYAAAA="/></t:Folder></m:Folders>')

        return self._each("CreateFolder", list(op.find(f"{{{M}}}Folders") or []), create)

    # --- items ------------------------------------------------------------------------------

    def _op_SyncFolderItems(self, op: ET.Element) -> list[str]:  # noqa: N802
        fields = _fields(op.find(f"{{{M}}}ItemShape"))
        limit = int(op.findtext(f"{{{M}}}MaxChangesReturned") or 512)
        if not 1 <= limit <= 512:
            return [_error("SyncFolderItems", _Fail(
                "ErrorInvalidArgument", "MaxChangesReturned must be between 1 and 512."))]
        try:
            mb, folder = self._folder(next(iter(op.find(f"{{{M}}}SyncFolderId") or [])))
            since = _read_state(op.findtext(f"{{{M}}}SyncState"), folder.id)
        except _Fail as fail:
            return [_error("SyncFolderItems", fail)]
        log = mb.changes[folder.id]
        changes: list[str] = []
        position = since
        for change in (c for c in log if c.seq > since):
            if len(changes) == limit:
                break
            position = change.seq
            later = any(c.item == change.item and c.seq > change.seq for c in log)
            if later:
                continue  # a later entry tells the item's net change
            if change.created:
                changes.append(f"<t:Create>{_item_xml(folder, folder.items[change.item], fields)}"
                               "</t:Create>")
            elif any(c.item == change.item and c.created and c.seq <= since for c in log):
                changes.append(f'<t:Delete><t:ItemId Id={quoteattr(change.item)} '
                               'ChangeKey="AAAAAA=="/></t:Delete>')
        last = all(c.seq <= position for c in log)
        creates = sum(1 for c in changes if c.startswith("<t:Create>"))
        self.server.synced.append((creates, len(changes) - creates))
        state = _b64(json.dumps({"folder": folder.id, "seq": position}).encode())
        return [_message("SyncFolderItems",
                         f"<m:SyncState>{state}</m:SyncState>"
                         f"<m:IncludesLastItemInRange>{str(last).lower()}"
                         f"</m:IncludesLastItemInRange><m:Changes>{''.join(changes)}</m:Changes>")]

    def _item(self, ref: ET.Element) -> tuple[_Mailbox, Folder, Item]:
        item_id = ref.get("Id", "")
        for address, mb in self.server.mailboxes.items():
            for folder in mb.folders.values():
                if item_id in folder.items:
                    return self._mailbox(address), folder, folder.items[item_id]
        raise _Fail("ErrorItemNotFound", "The specified object was not found in the store.")

    def _op_GetItem(self, op: ET.Element) -> list[str]:  # noqa: N802
        shape = op.find(f"{{{M}}}ItemShape")
        fields = _fields(shape)
        if shape is not None and shape.findtext(f"{{{T}}}IncludeMimeContent") == "true":
            fields.add("item:MimeContent")

        def get(ref: ET.Element) -> str:
            _mb, folder, item = self._item(ref)
            return f"<m:Items>{_item_xml(folder, item, fields)}</m:Items>"

        return self._each("GetItem", list(op.find(f"{{{M}}}ItemIds") or []), get)

    def _op_MoveItem(self, op: ET.Element) -> list[str]:  # noqa: N802
        try:
            to_mb, to = self._folder(next(iter(op.find(f"{{{M}}}ToFolderId") or [])))
        except _Fail as fail:
            return [_error("MoveItem", fail)]
        new_ids = op.findtext(f"{{{M}}}ReturnNewItemIds") != "false"

        def move(ref: ET.Element) -> str:
            mb, folder, item = self._item(ref)
            if mb is not to_mb:
                raise _Fail("ErrorMoveCopyFailed", "Items can only be moved within a mailbox "
                                                   "here.")
            self.server._remove(mb, folder, item.id)
            moved = Item(_item_id(), item.mime, item.received)  # a new id, as in Exchange
            self.server._add(mb, to, moved)
            if not new_ids:
                return "<m:Items/>"
            return (f"<m:Items><t:Message><t:ItemId Id={quoteattr(moved.id)} "
                    f"ChangeKey={quoteattr(moved.change_key)}/></t:Message></m:Items>")

        return self._each("MoveItem", list(op.find(f"{{{M}}}ItemIds") or []), move)


    def _op_CreateItem(self, op: ET.Element) -> list[str]:  # noqa: N802
        disposition = op.get("MessageDisposition")
        if disposition is None:
            return [_error("CreateItem", _Fail(
                "ErrorMessageDispositionRequired",
                "MessageDisposition attribute is required for Message items."))]
        if disposition != "SaveOnly":
            raise NotImplementedError("only MessageDisposition SaveOnly is served")
        saved = op.find(f"{{{M}}}SavedItemFolderId")
        try:
            if saved is None:  # Exchange saves to Drafts; this server has no Drafts folder
                raise NotImplementedError("CreateItem without SavedItemFolderId")
            mb, folder = self._folder(next(iter(saved)))
        except _Fail as fail:
            return [_error("CreateItem", fail)]

        def create(spec: ET.Element) -> str:
            if spec.tag != f"{{{T}}}Message":
                raise NotImplementedError("only messages are created here")
            content = spec.findtext(f"{{{T}}}MimeContent")
            if not content:
                raise NotImplementedError("only messages from MimeContent are created here")
            flags = MSGFLAG_READ | MSGFLAG_UNSENT  # a MIME import is a draft by default
            for prop in spec.findall(f"{{{T}}}ExtendedProperty"):
                uri = prop.find(f"{{{T}}}ExtendedFieldURI")
                tag = (uri.get("PropertyTag", "") if uri is not None else "").lower()
                if tag in ("0x0e07", "0xe07", "3591"):
                    flags = int(prop.findtext(f"{{{T}}}Value") or 0)
            if (is_read := spec.findtext(f"{{{T}}}IsRead")) is not None:
                flags = flags | MSGFLAG_READ if is_read == "true" else flags & ~MSGFLAG_READ
            item = Item(_item_id(), base64.b64decode(content),
                        datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), flags=flags)
            self.server._add(mb, folder, item)
            return (f"<m:Items><t:Message><t:ItemId Id={quoteattr(item.id)} "
                    f"ChangeKey={quoteattr(item.change_key)}/></t:Message></m:Items>")

        return self._each("CreateItem", list(op.find(f"{{{M}}}Items") or []), create)

    def _op_FindItem(self, op: ET.Element) -> list[str]:  # noqa: N802
        if op.get("Traversal") != "Shallow":
            raise NotImplementedError("only shallow traversal is served")
        wanted = None
        restriction = op.find(f"{{{M}}}Restriction")
        if restriction is not None:
            equal = restriction.find(f"{{{T}}}IsEqualTo")
            uri = equal.find(f"{{{T}}}FieldURI") if equal is not None else None
            if equal is None or uri is None or uri.get("FieldURI") != "message:InternetMessageId":
                raise NotImplementedError("only IsEqualTo on message:InternetMessageId is served")
            constant = equal.find(f"{{{T}}}FieldURIOrConstant/{{{T}}}Constant")
            wanted = constant.get("Value") if constant is not None else None
        view = op.find(f"{{{M}}}IndexedPageItemView")
        limit = int(view.get("MaxEntriesReturned") or 1000) if view is not None else 1000
        fields = _fields(op.find(f"{{{M}}}ItemShape"))

        def find(ref: ET.Element) -> str:
            _mb, folder = self._folder(ref)
            found = [i for i in folder.items.values()
                     if wanted is None or _internet_id(i.mime) == wanted]
            page = found[:limit]
            return (f'<m:RootFolder IndexedPagingOffset="{len(page)}" '
                    f'TotalItemsInView="{len(found)}" '
                    f'IncludesLastItemInRange="{str(len(page) == len(found)).lower()}">'
                    "<t:Items>" + "".join(_item_xml(folder, i, fields) for i in page)
                    + "</t:Items></m:RootFolder>")

        return self._each("FindItem", list(op.find(f"{{{M}}}ParentFolderIds") or []), find)


def _internet_id(mime: bytes) -> str:
    return str(message_from_bytes(mime).get("Message-ID", "")).strip()


def _read_state(state: str | None, folder_id: str) -> int:
    if not state:
        return 0  # a full sync: every item still in the folder
    try:
        data = json.loads(base64.b64decode(state, validate=True))
        if data["folder"] == folder_id:
            return int(data["seq"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise _Fail("ErrorInvalidSyncStateData", "Synchronization state data is corrupt or "
                                             "otherwise invalid.")


def _fields(shape: ET.Element | None) -> set[str]:
    if shape is None:
        return set()
    return {f.get("FieldURI", "") for f in shape.iter(f"{{{T}}}FieldURI")}


def _folder_xml(mb: _Mailbox, f: Folder) -> str:
    children = sum(1 for c in mb.folders.values() if c.parent == f.id)
    parent = (f"<t:ParentFolderId Id={quoteattr(f.parent)} ChangeKey=\"AQAAAA==\"/>"
              if f.parent else "")
    kind = "" if f.distinguished in ("root", "msgfolderroot") else "<t:FolderClass>IPF.Note" \
                                                                   "</t:FolderClass>"
    return (f'<t:Folder><t:FolderId Id={quoteattr(f.id)} ChangeKey="AQAAABYAAAA="/>{parent}'
            f"{kind}<t:DisplayName>{escape(f.name)}</t:DisplayName>"
            f"<t:TotalCount>{len(f.items)}</t:TotalCount>"
            f"<t:ChildFolderCount>{children}</t:ChildFolderCount>"
            "<t:EffectiveRights><t:CreateAssociated>true</t:CreateAssociated>"
            "<t:CreateContents>true</t:CreateContents><t:CreateHierarchy>true</t:CreateHierarchy>"
            "<t:Delete>true</t:Delete><t:Modify>true</t:Modify><t:Read>true</t:Read>"
            "<t:ViewPrivateItems>true</t:ViewPrivateItems></t:EffectiveRights>"
            "<t:UnreadCount>0</t:UnreadCount></t:Folder>")


def _item_xml(folder: Folder, item: Item, fields: set[str]) -> str:
    """A t:Message with the requested properties, in the schema's element order."""
    msg = message_from_bytes(item.mime)
    parts = []
    if "item:MimeContent" in fields:
        parts.append(f'<t:MimeContent CharacterSet="UTF-8">{_b64(item.mime)}</t:MimeContent>')
    parts.append(f"<t:ItemId Id={quoteattr(item.id)} ChangeKey={quoteattr(item.change_key)}/>")
    if "item:ParentFolderId" in fields:
        parts.append(f'<t:ParentFolderId Id={quoteattr(folder.id)} ChangeKey="AQAAAA=="/>')
    if "item:Subject" in fields:
        parts.append(f"<t:Subject>{escape(str(msg.get('Subject', '')))}</t:Subject>")
    if "item:DateTimeReceived" in fields:
        parts.append(f"<t:DateTimeReceived>{item.received}</t:DateTimeReceived>")
    if "item:Size" in fields:
        parts.append(f"<t:Size>{len(item.mime)}</t:Size>")
    if "message:InternetMessageId" in fields and msg.get("Message-ID"):
        parts.append(f"<t:InternetMessageId>{escape(str(msg['Message-ID']))}"
                     "</t:InternetMessageId>")
    if "message:Sender" in fields and msg.get("From"):
        name, address = parseaddr(str(msg["From"]))
        parts.append(f"<t:Sender><t:Mailbox><t:Name>{escape(name)}</t:Name><t:EmailAddress>"
                     f"{escape(address)}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType>"
                     "</t:Mailbox></t:Sender>")
    return f"<t:Message>{''.join(parts)}</t:Message>"


def _message(op: str, content: str) -> str:
    return (f'<m:{op}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
            f"</m:ResponseCode>{content}</m:{op}ResponseMessage>")


def _error(op: str, fail: _Fail) -> str:
    return (f'<m:{op}ResponseMessage ResponseClass="Error"><m:MessageText>{escape(fail.text)}'
            f"</m:MessageText><m:ResponseCode>{fail.code}</m:ResponseCode>"
            f"<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey></m:{op}ResponseMessage>")


def _envelope(op: str, messages: str) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>'
            f'<s:Envelope xmlns:s="{S}"><s:Header>'
            '<h:ServerVersionInfo MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" '
            f'MinorBuildNumber="6" Version="V2017_07_11" xmlns:h="{T}" xmlns="{T}" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/></s:Header>'
            '<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
            f'<m:{op}Response xmlns:m="{M}" xmlns:t="{T}"><m:ResponseMessages>{messages}'
            f"</m:ResponseMessages></m:{op}Response></s:Body></s:Envelope>")


def _fault(code: str, text: str) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>'
            f'<s:Envelope xmlns:s="{S}"><s:Body><s:Fault>'
            f'<faultcode xmlns:a="{T}">a:{code}</faultcode>'
            f'<faultstring xml:lang="en-US">{escape(text)}</faultstring><detail>'
            '<e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">'
            f"{code}</e:ResponseCode>"
            '<e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">'
            f"{escape(text)}</e:Message></detail></s:Fault></s:Body></s:Envelope>")
