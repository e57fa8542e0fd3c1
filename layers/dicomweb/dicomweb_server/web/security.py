"""API key check and CORS, wrapped around every route of the app.

The key is accepted in the ``apikey`` header (as the SIIM hackathon servers use) or ``x-api-key``
(as API Gateway does). A missing key is a 401, a wrong one a 403, each with a JSON error and
nothing else. CORS preflights (OPTIONS) never need the key: browsers do not send it there.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

ALLOWED_HEADERS = [
    "accept",
    "authorization",
    "apikey",
    "x-api-key",
    "content-type",
    "cache-control",
    "x-requested-with",
    "if-none-match",
]
EXPOSED_HEADERS = [
    "Content-Location",
    "Content-Type",
    "Content-Length",
    "Warning",
    "Location",
    "ETag",
    "Content-Range",
    "Accept-Ranges",
    "Retry-After",
]
KeyProvider = Callable[[], str | None]


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, key: KeyProvider) -> None:
        self.app = app
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        expected = self.key()
        if not expected:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        presented = headers.get("apikey") or headers.get("x-api-key")
        if presented is None:
            await _deny(send, 401, "an API key is required: send it in the apikey (or x-api-key) header")
        elif not hmac.compare_digest(presented.encode(), expected.encode()):
            await _deny(send, 403, "the API key is not valid")
        else:
            await self.app(scope, receive, send)


async def _deny(send: Send, status: int, message: str) -> None:
    body = json.dumps(
        {"status": status, "error": "Unauthorized" if status == 401 else "Forbidden", "message": message}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'ApiKey header="apikey"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def secure(app: ASGIApp, *, key: KeyProvider, allowed_origins: list[str]) -> ASGIApp:
    """The app behind the API key check, behind CORS (so even a 401 carries CORS headers)."""
    guarded = ApiKeyMiddleware(app, key)
    return CORSMiddleware(
        guarded,
        allow_origins=allowed_origins or ["*"],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )
