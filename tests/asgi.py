"""One GET through an ASGI app, each message handed to the caller as the app sends it: what a
client sees of a streamed answer piece by piece (Starlette's TestClient collects the body first)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


def get(app: Any, path: str, accept: str, on_message: Callable[[dict[str, Any]], None]) -> None:
    async def run() -> None:
        asked = False
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"testserver"), (b"accept", accept.encode())],
            "client": ("127.0.0.1", 5000),
            "server": ("testserver", 80),
        }

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            on_message(message)

        await app(scope, receive, send)

    asyncio.run(run())
