"""``multipart/related`` (RFC 2387 / RFC 2046 §5.1) decoding and encoding for STOW-RS and WADO-RS.

The decoder works on the whole body (a Lambda event is buffered anyway) and reports errors with the
byte offset where the body stops making sense. Delimiters are CRLF by the RFC; bare LF, which
hand-made curl bodies often contain, is accepted too. The encoder returns ``(body, content_type)``
and takes an injectable boundary so tests can compare bytes exactly.

Why not python-multipart: it is built for ``multipart/form-data`` and does not report a missing
closing delimiter or a truncated body as an error, which STOW-RS must turn into a clear 400.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import BadRequest
from .media import MULTIPART_RELATED, MediaType, parse_media_type


@dataclass(frozen=True)
class Part:
    """One body part: lower-cased header names, the raw body bytes, and where it started."""

    headers: dict[str, str]
    body: bytes
    offset: int
    index: int
    content_type: MediaType | None = field(default=None)

    @property
    def content_location(self) -> str | None:
        return self.headers.get("content-location")

    @property
    def content_id(self) -> str | None:
        return self.headers.get("content-id")


class MultipartError(BadRequest):
    """A malformed multipart body; the message carries the byte offset."""


def boundary_of(content_type: MediaType) -> str:
    if content_type.type != MULTIPART_RELATED:
        raise BadRequest(f"expected a multipart/related body, got Content-Type {content_type.type}")
    boundary = content_type.param("boundary")
    if not boundary:
        raise BadRequest("Content-Type multipart/related has no boundary parameter")
    if len(boundary) > 200:
        raise BadRequest("multipart boundary is longer than 200 characters")
    return boundary


def _line_end(body: bytes, pos: int) -> int:
    """Position after the line ending at ``pos`` (CRLF or LF), or -1 if there is none."""
    if body.startswith(b"\r\n", pos):
        return pos + 2
    if body.startswith(b"\n", pos):
        return pos + 1
    return -1


def _find_delimiter(body: bytes, dash_boundary: bytes, start: int) -> tuple[int, int]:
    """Find the next delimiter line at or after ``start``: (start of its line ending, start of ``--``)."""
    pos = start
    while True:
        hit = body.find(dash_boundary, pos)
        if hit < 0:
            return -1, -1
        if hit >= 2 and body[hit - 2 : hit] == b"\r\n":
            return hit - 2, hit
        if hit >= 1 and body[hit - 1 : hit] == b"\n":
            return hit - 1, hit
        pos = hit + 1


def parse_headers(block: bytes, offset: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw in block.replace(b"\r\n", b"\n").split(b"\n"):
        if not raw.strip():
            continue
        if raw[:1] in (b" ", b"\t") and headers:  # obsolete line folding
            last = next(reversed(headers))
            headers[last] += " " + raw.strip().decode("latin-1")
            continue
        name, sep, value = raw.partition(b":")
        if not sep or not name.strip():
            shown = raw[:60].decode("latin-1")
            raise MultipartError(f"multipart: malformed part header {shown!r} at byte {offset}")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


def decode(body: bytes, content_type: MediaType) -> list[Part]:
    """Split a ``multipart/related`` body into parts, or raise ``MultipartError`` saying where it broke."""
    boundary = boundary_of(content_type)
    dash = b"--" + boundary.encode("latin-1")
    if not body:
        raise MultipartError("multipart: the request body is empty")
    # The first delimiter may open the body directly (no preceding line ending).
    if body.startswith(dash):
        first = 0
    else:
        _, first = _find_delimiter(body, dash, 0)
        if first < 0:
            raise MultipartError(
                f"multipart: the body does not contain the boundary {boundary!r} from the Content-Type"
            )
    parts: list[Part] = []
    pos = first + len(dash)
    while True:
        if body.startswith(b"--", pos):
            break  # close delimiter
        # transport padding, then the line ending that ends the delimiter line
        while pos < len(body) and body[pos] in b" \t":
            pos += 1
        nxt = _line_end(body, pos)
        if nxt < 0:
            if pos >= len(body):
                raise MultipartError(
                    f"multipart: body truncated at byte {pos}: missing closing delimiter --{boundary}--"
                )
            raise MultipartError(f"multipart: unexpected bytes after the boundary at byte {pos}")
        header_start = nxt
        crlf = body.find(b"\r\n\r\n", header_start)
        lf = body.find(b"\n\n", header_start)
        # An empty header block is allowed: the part body starts right after one line ending.
        if _line_end(body, header_start) >= 0:
            header_end, body_start = header_start, _line_end(body, header_start)
        elif crlf >= 0 and (lf < 0 or crlf <= lf):
            header_end, body_start = crlf, crlf + 4
        elif lf >= 0:
            header_end, body_start = lf, lf + 2
        else:
            raise MultipartError(f"multipart: part {len(parts) + 1} has no end of headers (byte {header_start})")
        line_start, delim = _find_delimiter(body, dash, body_start)
        if delim < 0:
            raise MultipartError(
                f"multipart: body truncated in part {len(parts) + 1} (starting at byte {header_start}): "
                f"missing closing delimiter --{boundary}--"
            )
        headers = parse_headers(body[header_start:header_end], header_start)
        ctype = headers.get("content-type")
        parts.append(
            Part(
                headers=headers,
                body=body[body_start:line_start],
                offset=header_start,
                index=len(parts),
                content_type=parse_media_type(ctype, header=f"part {len(parts) + 1} Content-Type") if ctype else None,
            )
        )
        pos = delim + len(dash)
    if not parts:
        raise MultipartError("multipart: the body has no parts")
    return parts


def new_boundary() -> str:
    return "dicomweb-" + secrets.token_hex(16)


def encode(
    parts: Iterable[tuple[bytes, Mapping[str, str]]],
    part_type: str,
    *,
    boundary: str | None = None,
    params: Mapping[str, str] | None = None,
) -> tuple[bytes, str]:
    """Encode parts as ``multipart/related``; return ``(body, content_type)``."""
    boundary = boundary or new_boundary()
    dash = b"--" + boundary.encode("ascii")
    chunks: list[bytes] = []
    for payload, headers in parts:
        chunks.append(dash + b"\r\n")
        for name, value in headers.items():
            chunks.append(f"{name}: {value}\r\n".encode("latin-1"))
        chunks.append(b"\r\n")
        chunks.append(payload)
        chunks.append(b"\r\n")
    chunks.append(dash + b"--\r\n")
    ctype = MediaType(MULTIPART_RELATED, {"type": part_type, **(params or {}), "boundary": boundary})
    return b"".join(chunks), str(ctype)
