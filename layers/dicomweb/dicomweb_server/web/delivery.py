"""Sending a retrieve answer the way the size policy chose: one buffered body, a stream written
part by part, or a 303 to a presigned URL of the stored object (``retrieve.size_policy.choose``)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from itertools import chain

from starlette.responses import Response, StreamingResponse

from ..errors import PayloadTooLarge
from ..retrieve import size_policy as policy
from ..retrieve.streams import Body, bytes_body
from .services import Services

#: Where single-part answers built on request (rendered images, transcoded objects) are put for a
#: redirect; the bucket's lifecycle rule removes them after a day.
ANSWERS_PREFIX = "answers/"
log = logging.getLogger("dicomweb")


def buffered(body: Body) -> Response:
    return Response(body.read(), headers={"Content-Type": body.content_type})


def streamed(body: Body, *, head: bool = False) -> Response:
    """The body written as it is produced; its first piece is produced here, before the status
    line, so that a failure to read the first object is still a clean error answer. A HEAD gets
    the headers without reading any object (Starlette would run the whole stream to drop it)."""
    headers = {"Content-Type": body.content_type}
    if body.length is not None:
        headers["Content-Length"] = str(body.length)
    if head:
        return Response(headers=headers)
    body = body.started()
    return StreamingResponse(body.chunks, headers=headers)


def redirect(url: str) -> Response:
    """303 See Other (RFC 9110 §15.4.4): GET the answer there. No body and no Content-Type, which
    some clients would read as the answer's."""
    return Response(status_code=303, headers={"Location": url, "Cache-Control": "no-store"})


def send(
    svc: Services,
    size: policy.Size,
    answer: policy.Answer,
    make_body: Callable[[], Body],
    *,
    stored_key: str | None = None,
    single_part: bool = False,
    head: bool = False,
) -> Response:
    """Answer with ``make_body()`` as the size policy says.

    ``stored_key``: the answer is exactly this stored object (one instance as stored), so a
    redirect can point at it. ``single_part``: the answer is one body (not multipart) and may be
    redirected after it is built, through a short-lived object under ``answers/``."""
    limits = policy.Limits.of(svc.settings)
    redirectable = bool(stored_key) or single_part
    delivery = policy.choose(size, answer, limits, redirectable=redirectable)
    if delivery is policy.Delivery.REDIRECT:
        body = make_body()
        if stored_key:
            url = svc.blobs.presign(stored_key, svc.settings.presign_seconds, body.content_type)
            if url:
                return redirect(url)
        else:
            data = body.read()
            if limits.redirect == "above-limit" and len(data) <= limits.inline:
                return Response(data, headers={"Content-Type": body.content_type})  # its bound did not fit; it does
            key = f"{ANSWERS_PREFIX}{uuid.uuid4().hex}"
            url = svc.blobs.presign(key, svc.settings.presign_seconds, body.content_type)
            if url:
                svc.blobs.put(key, data, body.content_type)
                return redirect(url)
            body = bytes_body(data, body.content_type)
        # The store has no presigned URLs (in memory): send it as if redirects were off.
        delivery = policy.choose(size, answer, limits)
        return _send(delivery, body, answer, limits, head, size.exact)
    return _send(delivery, make_body(), answer, limits, head, size.exact)


def _send(
    delivery: policy.Delivery,
    body: Body,
    answer: policy.Answer,
    limits: policy.Limits,
    head: bool = False,
    exact: bool = True,
) -> Response:
    if not exact and body.length is not None:  # built when it was asked for: its size is known now
        delivery, exact = policy.after_build(body.length, answer, limits), True
    if delivery is policy.Delivery.INLINE and exact:
        return buffered(body)
    if delivery is policy.Delivery.STREAMED:
        return streamed(body if exact else _capped(body, limits.stream), head=head)
    if head:  # its length is only known by producing it: a HEAD gets the type alone
        return Response(headers={"Content-Type": body.content_type})
    # An estimate (within the buffered limit, or above every limit): the bytes produced decide.
    return _measured(body, answer, limits)


def _measured(body: Body, answer: policy.Answer, limits: policy.Limits) -> Response:
    """Produce the body up to the buffered limit: all of it fits, one buffered answer; else, where
    the deployment streams, the rest is written as it comes, up to the streaming limit (a body cut
    there lacks its closing delimiter, which every client sees as incomplete); else a 413. Memory
    holds at most the buffered limit, never the whole answer."""
    taken: list[bytes] = []
    total = 0
    for chunk in body.chunks:
        taken.append(chunk)
        total += len(chunk)
        if total > limits.inline:
            break
    else:
        return Response(b"".join(taken), headers={"Content-Type": body.content_type})
    if limits.stream <= limits.inline:
        raise PayloadTooLarge(
            f"the {answer.what} is more than {limits.inline} bytes, above this server's response limit of "
            f"{limits.inline} bytes; {answer.smaller}"
        )
    rest = Body(chain(taken, body.chunks), body.content_type)
    return StreamingResponse(_capped(rest, limits.stream).chunks, headers={"Content-Type": body.content_type})


class AnswerCut(RuntimeError):
    """A streamed answer reached the streaming limit after its status line was sent: the server
    aborts the connection (no final chunk), so the client sees the answer as incomplete, never as
    a short, well-formed one."""


def _capped(body: Body, limit: int) -> Body:
    """The body, aborted (``AnswerCut``) before the piece that would take it past ``limit`` bytes."""

    def chunks() -> Iterator[bytes]:
        sent = 0
        for chunk in body.chunks:
            sent += len(chunk)
            if sent > limit:
                log.warning("answer cut at the streaming limit", extra={"limit": limit})
                raise AnswerCut(f"the answer passed the streaming limit of {limit} bytes")
            yield chunk

    return Body(chunks(), body.content_type, body.length)
