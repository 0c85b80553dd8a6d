"""KL's KLE-online REST service as a source of the KLE plan (a thin httpx adapter).

What the clients that call it show (OS2 projects, KITOS, OS2mo's KLE import): the plan is one
GET of `{base}/emneplan` under `https://api.kle-online.dk/resources/kle`, answered with the
whole plan as XML whose root is `<KLE-Emneplan>` (KL's "REST fuld" schema: the XML file's
format plus `UUID` and `*Stikord` keywords); `?udgaaede=true` adds the numbers no longer in
use. The adapter always asks for them and leaves them out itself, exactly as for KL's file,
so both sources give the same kle.json whatever the service counts as "udgået" (expired and
moved numbers both carry `Historisk`). It is not paged, so progress is the download's bytes.
None of those clients sends credentials; a municipality given a token (KL's subscription
terms speak of access "by agreement") passes it with `--token-env`, sent as a bearer token —
a scheme no public client confirms — and only over https (or to a loopback test server).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from shared.errors import ConfigurationError, InvalidInput, TransientError

from .kle import KlePlan, parse_emneplan

DEFAULT_URL = "https://api.kle-online.dk/resources/kle"
MAX_BYTES = 64 * 1024 * 1024  # the full plan is about 3-4 MB; anything far larger is not it
Progress = Callable[[int, int | None], None]  # bytes received so far, total when announced


class KleSource(Protocol):
    def emneplan(self) -> bytes:
        """The whole plan as KLE-Emneplan XML, numbers no longer in use included."""
        ...


def emneplan_url(url: str) -> str:
    """The plan's address from the service's base (`.../resources/kle`) or the full one."""
    url = url.rstrip("/")
    return url if url.endswith("/emneplan") else url + "/emneplan"


class KleOnline:
    def __init__(self, url: str = DEFAULT_URL, *, token: str | None = None,
                 timeout: float = 30.0, progress: Progress = lambda _n, _t: None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = emneplan_url(url)
        self._headers = {"Accept": "application/xml, text/xml"}
        if token:
            if not _safe_for_token(self.url):
                # A bearer token over plain http can be read on the way (and by a redirect's
                # target): only https, or a local http server in tests.
                raise ConfigurationError("the KLE-online token is only sent over https "
                                         f"(not to {urlsplit(self.url).scheme}://"
                                         f"{urlsplit(self.url).hostname})")
            if not token.isascii() or not token.isprintable():
                raise ConfigurationError("the KLE-online token has characters a header cannot "
                                         "carry")
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = httpx.Timeout(timeout)
        self._progress = progress
        self._transport = transport

    def emneplan(self) -> bytes:
        params = {"udgaaede": "true"}
        try:
            with httpx.Client(timeout=self._timeout, transport=self._transport,
                              follow_redirects=True) as client, client.stream(
                    "GET", self.url, params=params, headers=self._headers) as response:
                self._check(response)
                return self._read(response)
        except httpx.TimeoutException as exc:
            raise TransientError(f"KLE-online at {self.url} did not answer in time "
                                 f"({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"KLE-online at {self.url} is unreachable: {exc}") from exc

    def _check(self, response: httpx.Response) -> None:
        status = response.status_code
        if status in (401, 403):
            raise ConfigurationError(
                f"KLE-online refused access (HTTP {status}): the municipality's access or the "
                "token (--token-env) is missing or wrong")
        if status == 404:
            raise ConfigurationError(f"KLE-online has no plan at {self.url} (HTTP 404)")
        if status >= 500 or status == 429:
            raise TransientError(f"KLE-online answered HTTP {status}; try again later")
        if status != 200:
            raise InvalidInput(f"KLE-online answered HTTP {status}")
        kind = response.headers.get("content-type", "")
        if kind and "xml" not in kind:
            raise InvalidInput(f"KLE-online answered {kind.split(';')[0]}, not XML")

    def _read(self, response: httpx.Response) -> bytes:
        announced = response.headers.get("content-length")
        total = int(announced) if announced and announced.isdigit() else None
        if total is not None and total > MAX_BYTES:
            raise InvalidInput(f"KLE-online answered {total} bytes, more than a plan can be")
        chunks, received = [], 0
        for chunk in response.iter_bytes():
            received += len(chunk)
            if received > MAX_BYTES:
                raise InvalidInput("KLE-online's answer is larger than a plan can be")
            chunks.append(chunk)
            self._progress(received, total)
        return b"".join(chunks)


def _safe_for_token(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http"
                                       and parts.hostname in ("127.0.0.1", "::1", "localhost"))


def fetch_plan(source: KleSource, *, include_expired: bool = False) -> KlePlan:
    """The plan from KLE-online; InvalidInput when the answer is not a KLE-Emneplan."""
    data = source.emneplan()
    try:
        return parse_emneplan(data, include_expired=include_expired)
    except InvalidInput as exc:
        raise InvalidInput(f"KLE-online's answer: {exc}") from exc
