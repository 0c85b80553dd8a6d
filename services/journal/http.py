"""What the remote ESDH adapters share: one httpx client per adapter, and HTTP outcomes mapped
to the error hierarchy (down, slow, 5xx, 429: transient; any other refusal: permanent)."""

from __future__ import annotations

from typing import Any

import httpx

from shared.errors import PermanentError, TransientError


class NotFound(PermanentError):
    """The ESDH does not know the case or document."""


async def call(client: httpx.AsyncClient, method: str, url: str, *, what: str,
               **kwargs: Any) -> httpx.Response:
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise TransientError(f"{what}: timed out") from exc
    except httpx.TransportError as exc:
        raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 500 or response.status_code in (408, 429):
        raise TransientError(f"{what}: HTTP {response.status_code}")
    if response.status_code == 404:
        raise NotFound(f"{what}: not found ({_reason(response)})")
    if response.status_code >= 400:
        raise PermanentError(f"{what}: refused, HTTP {response.status_code} ({_reason(response)})")
    return response


def _reason(response: httpx.Response) -> str:
    # The ESDH's own message, short; it names the case or field, never document content.
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("Message") or body.get("message") or body)[:200]
    return str(body)[:200]
