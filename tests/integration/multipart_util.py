"""A small multipart/related reader for the tests, independent of the server's parser."""

from __future__ import annotations

import email.parser
import email.policy

import requests


def parts_of(response: requests.Response) -> list[tuple[dict[str, str], bytes]]:
    """(headers, payload) of each part of a multipart/related response, via the stdlib email parser."""
    assert response.status_code == 200, response.text[:500]
    ctype = response.headers["Content-Type"]
    assert ctype.startswith("multipart/related"), ctype
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + response.content
    )
    out = []
    for part in message.iter_parts():
        headers = {k.lower(): str(v) for k, v in part.items()}
        out.append((headers, part.get_payload(decode=True)))
    return out
