"""Digital form submissions (process 49): `POST /api/v1/forms/{form_id}/submissions`.

The self-service platform posts JSON (`{"fields": {...}}`), or multipart with that JSON in a
`submission` part plus `attachments` files. Each form lists its clients in forms.yaml: an HMAC
client signs the exact body (`X-Postfordeler-Client: <id>`, `X-Postfordeler-Signature:
sha256=<hex>`), a bearer client sends `Authorization: Bearer <secret>`; secrets come from
environment variables. The fields are checked against the form's schema (`fields`).

The answer is 202 with the item id once the submission is durable: the JSON document and the
attachments are fsynced as blobs, then one transaction creates the item, records the key and
writes the event to the outbox. An `Idempotency-Key` sent again returns the first item.

The fields are structured already: their text is rendered here ("label: value" lines). A
submission without attachments goes straight to `extracted` with an ItemExtracted. One with
attachments goes to `received` (ItemReceived, channel form, raw: the stored JSON document with
the title, sender, text blob and attachment blobs); the extractor in ingest then reads the
attachments the way it reads a mail's (PDF text layer, DOCX, OCR of images and scanned pages,
ZIP members), so the classifier sees their text too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from datetime import date
from typing import Any

import structlog
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import UploadFile

from shared import metrics
from shared.blobs import BlobStore
from shared.contracts import (
    Address,
    AttachmentRef,
    Channel,
    ItemExtracted,
    ItemReceived,
    ItemState,
)
from shared.db import Item, SourceMessage, uow_factory
from shared.tenant import Form, FormClient

from .schemas import Problem

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/api/v1/forms", tags=["forms"])
PRODUCER = "forms"
MAX_JSON = 1024 * 1024
MAX_KEY = 200
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Invalid(Exception):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("invalid submission")
        self.errors = errors


def validate(form: Form, fields: object) -> dict[str, Any]:
    """The submitted fields checked and normalised against the form's schema (pure)."""
    if not isinstance(fields, dict):
        raise Invalid([{"field": "fields", "error": "must be an object"}])
    errors: list[dict[str, str]] = []
    out: dict[str, Any] = {}
    known = {f.name for f in form.fields}
    for name in fields:
        if name not in known and not form.allow_extra_fields:
            errors.append({"field": str(name), "error": "unknown field"})
    for spec in form.fields:
        value = fields.get(spec.name)
        if value is None or value == "":
            if spec.required:
                errors.append({"field": spec.name, "error": "required"})
            continue
        try:
            out[spec.name] = _check(spec.type, value, spec.max_length, spec.pattern,
                                    spec.choices)
        except ValueError as exc:
            errors.append({"field": spec.name, "error": str(exc)})
    if form.allow_extra_fields:
        for name, value in fields.items():
            if name not in known and isinstance(value, str | int | float | bool):
                out[str(name)[:100]] = value if not isinstance(value, str) else value[:10000]
    if errors:
        raise Invalid(errors)
    return out


def _check(kind: str, value: object, max_length: int, pattern: str | None,
           choices: tuple[str, ...]) -> Any:
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if len(value) > max_length:
        raise ValueError(f"longer than {max_length} characters")
    if kind == "date":
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError("must be a date (YYYY-MM-DD)") from None
    if kind == "email" and not _EMAIL.match(value):
        raise ValueError("must be an e-mail address")
    if pattern and not re.fullmatch(pattern, value):
        raise ValueError("has the wrong format")
    if choices and value not in choices:
        raise ValueError("is not one of the choices")
    return value


def authenticate(form: Form, headers: dict[str, str], body: bytes) -> FormClient:
    """The form client that sent this request; constant-time comparisons throughout."""
    client_id = headers.get("x-postfordeler-client", "")
    signature = headers.get("x-postfordeler-signature", "")
    auth = headers.get("authorization", "")
    for client in form.clients:
        if client.auth == "hmac" and client.id == client_id and signature:
            expected = "sha256=" + hmac.new(client.secret().encode(), body,
                                            hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected.encode(), signature.strip().encode()):
                return client
        if (client.auth == "bearer" and auth.lower().startswith("bearer ")
                and hmac.compare_digest(auth[7:].strip().encode(), client.secret().encode())):
            return client
    raise HTTPException(401, "unknown form client or bad signature",
                        headers={"WWW-Authenticate": "Bearer"})


def render_text(form: Form, fields: dict[str, Any]) -> str:
    lines = [form.title, ""]
    lines += [f"{name}: {value}" for name, value in fields.items()]
    return "\n".join(lines) + "\n"


@router.post("/{form_id}/submissions", status_code=202, responses={
    404: {"model": Problem, "description": "No form with this id."}})
async def submit(form_id: str, request: Request) -> JSONResponse:
    form = request.app.state.tenant.forms.get(form_id)
    if form is None:
        raise HTTPException(404, f"no form {form_id!r}")
    body = await request.body()  # the signature covers exactly these bytes
    client = authenticate(form, {k.lower(): v for k, v in request.headers.items()}, body)
    key = request.headers.get("idempotency-key", "").strip()
    if len(key) > MAX_KEY:
        raise HTTPException(400, f"Idempotency-Key longer than {MAX_KEY} characters")
    document, files = await _read(request, form, body)
    try:
        fields = validate(form, document.get("fields"))
    except Invalid as exc:
        return JSONResponse({"detail": exc.errors}, status_code=422)

    mailbox = f"form:{form_id}"
    ref = f"{client.id}:{key}" if key else f"{client.id}:{uuid.uuid4()}"
    sessions = request.app.state.sessions
    if key and (first := await _existing(sessions, mailbox, ref)) is not None:
        return JSONResponse({"item_id": str(first), "duplicate": True}, status_code=202)

    blobs: BlobStore = request.app.state.blobs
    attachments = [AttachmentRef(filename=name, content_type=ctype,
                                 blob=await blobs.put(data, ctype))
                   for name, ctype, data in files]
    text_ref = await blobs.put(render_text(form, fields).encode(), "text/plain; charset=utf-8")
    sender = next((str(fields[f.name]) for f in form.fields
                   if f.type == "email" and f.name in fields), "")
    raw = json.dumps({"form_id": form_id, "client": client.id, "fields": fields,
                      "title": form.title, "sender": sender,
                      "text": text_ref.model_dump(mode="json"),
                      "attachments": [a.model_dump(mode="json") for a in attachments]},
                     ensure_ascii=False, sort_keys=True).encode()
    raw_ref = await blobs.put(raw, "application/json")
    item = Item(id=uuid.uuid4(), correlation_id=uuid.uuid4(), channel=Channel.FORM.value,
                mailbox=mailbox, source_ref=ref, raw_sha256=raw_ref.sha256, subject=form.title,
                sender=sender or None)
    received = ItemReceived(correlation_id=item.correlation_id, producer=PRODUCER,
                            item_id=item.id, channel=Channel.FORM, mailbox=mailbox,
                            source_ref=ref, raw=raw_ref)
    extracted = received.follow(ItemExtracted, PRODUCER, channel=Channel.FORM, mailbox=mailbox,
                                subject=form.title, sender=Address(address=sender),
                                text=text_ref, attachments=tuple(attachments))
    try:
        async with uow_factory(sessions)() as uow:
            uow.session.add(item)
            uow.session.add(SourceMessage(mailbox=mailbox, source_ref=ref, item_id=item.id))
            uow.transition(item, ItemState.RECEIVED, event=received)
            if attachments:  # their text is read by the extractor (ingest), like a mail's
                uow.emit(received)
            else:  # nothing to parse: extracted here and now
                uow.transition(item, ItemState.EXTRACTED, event=extracted)
                uow.emit(extracted)
            await uow.commit()
    except IntegrityError:
        # the same key was submitted concurrently and won: answer with its item
        first = await _existing(sessions, mailbox, ref)
        if first is None:
            raise
        return JSONResponse({"item_id": str(first), "duplicate": True}, status_code=202)
    await request.app.state.publish(uow.emitted)
    metrics.ITEMS_RECEIVED.labels(Channel.FORM.value).inc()
    log.info("form submission received", form_id=form_id, client=client.id,
             item_id=str(item.id), attachments=len(attachments))
    return JSONResponse({"item_id": str(item.id), "duplicate": False}, status_code=202)


async def _existing(sessions: Any, mailbox: str, ref: str) -> uuid.UUID | None:
    async with sessions() as s:
        found = (await s.execute(select(SourceMessage.item_id).where(
            SourceMessage.mailbox == mailbox, SourceMessage.source_ref == ref))).scalar()
    return found if isinstance(found, uuid.UUID) else None


async def _read(request: Request, form: Form,
                body: bytes) -> tuple[dict[str, Any], list[tuple[str, str, bytes]]]:
    """The submission document and the attached files (name, type, bytes), within limits."""
    ctype = request.headers.get("content-type", "")
    files: list[tuple[str, str, bytes]] = []
    if ctype.startswith("multipart/form-data"):
        async with request.form(max_files=form.max_attachments + 1,
                                max_part_size=MAX_JSON) as data:
            raw = data.get("submission")
            if raw is None or isinstance(raw, UploadFile):
                raise HTTPException(422, "multipart needs a 'submission' field with the JSON")
            for upload in data.getlist("attachments"):
                if not isinstance(upload, UploadFile):
                    raise HTTPException(422, "'attachments' must be files")
                files.append(await _file(form, upload))
            text = raw
    elif ctype.startswith("application/json"):
        if len(body) > MAX_JSON:
            raise HTTPException(413, "submission too large")
        text = body.decode("utf-8", errors="replace")  # bad bytes fail as JSON below
    else:
        raise HTTPException(415, "send application/json or multipart/form-data")
    if len(files) > form.max_attachments:
        raise HTTPException(413, f"at most {form.max_attachments} attachments")
    try:
        document = json.loads(text)
    except ValueError:
        raise HTTPException(422, "the submission is not valid JSON") from None
    if not isinstance(document, dict):
        raise HTTPException(422, "the submission must be a JSON object")
    return document, files


async def _file(form: Form, upload: UploadFile) -> tuple[str, str, bytes]:
    ctype = (upload.content_type or "application/octet-stream").split(";")[0].strip().lower()
    if ctype not in form.attachment_types:
        raise HTTPException(415, f"attachment type {ctype} is not accepted")
    data = await upload.read(form.max_attachment_bytes + 1)
    if len(data) > form.max_attachment_bytes:
        raise HTTPException(413, f"an attachment is larger than {form.max_attachment_bytes} B")
    name = (upload.filename or "bilag").replace("/", "_").replace("\\", "_")[:200]
    return name, ctype, data
