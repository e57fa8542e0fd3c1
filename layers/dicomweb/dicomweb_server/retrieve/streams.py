"""Multipart retrieve bodies written part by part (PS3.18 §8.6.1.2 multipart/related), with the
objects of a study or series read concurrently and written in order as they arrive.

Memory stays bounded: at most ``workers`` objects are read ahead (each whole, up to
``WHOLE_READ_MAX``); a larger object is copied chunk by chunk when its turn comes. The bytes are
exactly those of ``formats.multipart.encode`` for the same parts and boundary, and when nothing is
transcoded the length is known from the index before anything is read (``Body.length``).

An error while reading a part after the first (an object gone, a transcode that fails) cannot become
a clean 4xx once the status line is out: the body stops without its closing delimiter, so every
client sees an incomplete multipart body rather than a short, well-formed one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice

from ..blobs.keys import stored_key
from ..errors import NotAcceptable, NotFound, StorageError
from ..formats import multipart
from ..formats.media import DICOM, MULTIPART_RELATED, MediaType
from ..ports import BlobStore
from ..records import StoredInstance

#: Pieces in which a large object is copied into the answer.
CHUNK = 1024 * 1024
#: Objects up to this size are read whole, ahead of their turn; larger ones stream when they come up.
WHOLE_READ_MAX = 8 * 1024 * 1024


@dataclass
class Body:
    """An answer's bytes as an iterator, its Content-Type, and its length when known beforehand."""

    chunks: Iterator[bytes]
    content_type: str
    length: int | None = None

    def read(self) -> bytes:
        return b"".join(self.chunks)

    def started(self) -> Body:
        """The same body with its first piece already produced, so that an error reading the first
        object is raised here (a clean error answer) and not after the status line is sent."""
        first = next(self.chunks, b"")
        return Body(chain((first,), self.chunks), self.content_type, self.length)


def ordered[T, R](items: Sequence[T], fetch: Callable[[T], R], workers: int) -> Iterator[R]:
    """``fetch(item)`` for each item, run on up to ``workers`` threads, yielded in ``items`` order.

    At most ``workers`` results wait ahead of the consumer; closing the iterator cancels what has
    not started."""
    if workers <= 1 or len(items) <= 1:
        yield from (fetch(item) for item in items)
        return
    source = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="retrieve") as pool:
        pending: deque[Future[R]] = deque(pool.submit(fetch, item) for item in islice(source, workers))
        try:
            while pending:
                result = pending.popleft().result()
                for item in islice(source, 1):
                    pending.append(pool.submit(fetch, item))
                yield result
        finally:
            for future in pending:
                future.cancel()


def part_header(boundary: str, headers: dict[str, str]) -> bytes:
    lines = [f"--{boundary}\r\n"] + [f"{name}: {value}\r\n" for name, value in headers.items()] + ["\r\n"]
    return "".join(lines).encode("latin-1")


def closing(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode("ascii")


def _content_type(part_type: str, boundary: str, params: dict[str, str] | None = None) -> str:
    return str(MediaType(MULTIPART_RELATED, {"type": part_type, **(params or {}), "boundary": boundary}))


def _dicom_part_type(ts: str) -> str:
    return str(MediaType(DICOM, {"transfer-syntax": ts}))


def instances_body(
    instances: Sequence[StoredInstance],
    blobs: BlobStore,
    syntaxes: Sequence[str],
    load: Callable[[StoredInstance, bytes], tuple[bytes, str]],
    *,
    multipart_body: bool,
    workers: int,
    locations: Sequence[str] = (),
    boundary: str | None = None,
) -> Body:
    """A retrieve of ``instances`` as Part-10 objects: multipart, or the one object when
    ``multipart_body`` is false. ``syntaxes`` are the transfer syntaxes negotiated for each from the
    index; an instance whose syntax is not its stored one goes through ``load(instance, data)``
    (which returns the bytes and the syntax it could give them in), the others are copied as stored.
    ``locations`` are the parts' Content-Location URLs."""
    if not instances:
        raise NotFound("no instances")
    changed = [ts != inst.transfer_syntax_uid for inst, ts in zip(instances, syntaxes, strict=True)]
    position = {id(inst): n for n, inst in enumerate(instances)}

    def fetch(inst: StoredInstance) -> tuple[bytes | None, str]:
        if changed[position[id(inst)]]:
            return load(inst, blobs.get(stored_key(inst)))
        if inst.size > WHOLE_READ_MAX:
            return None, inst.transfer_syntax_uid  # streamed when its turn comes
        return blobs.get(stored_key(inst)), inst.transfer_syntax_uid

    def payload(inst: StoredInstance, data: bytes | None) -> Iterable[bytes]:
        return (data,) if data is not None else blobs.chunks(stored_key(inst), CHUNK)

    exact = not any(changed)
    if not multipart_body:
        inst = instances[0]
        if changed[0]:
            # Built whole: ``load`` may find that the object rules the negotiated syntax out and fall
            # back to a later choice, and the Content-Type must say which it got.
            data, ts = load(inst, blobs.get(stored_key(inst)))
            return Body(iter((data,)), _dicom_part_type(ts), len(data))

        def as_stored() -> Iterator[bytes]:
            yield from blobs.chunks(stored_key(inst), CHUNK)

        return Body(as_stored(), _dicom_part_type(inst.transfer_syntax_uid), inst.size)

    boundary = boundary or multipart.new_boundary()

    def headers(index: int, ts: str) -> dict[str, str]:
        out = {"Content-Type": _dicom_part_type(ts)}
        if locations:
            out["Content-Location"] = locations[index]
        return out

    length = None
    if exact:
        length = sum(
            len(part_header(boundary, headers(n, i.transfer_syntax_uid))) + i.size + 2 for n, i in enumerate(instances)
        )
        length += len(closing(boundary))

    def chunks() -> Iterator[bytes]:
        for index, (data, ts) in enumerate(ordered(instances, fetch, workers)):
            inst = instances[index]
            if exact and data is not None and len(data) != inst.size:  # the Content-Length would lie
                raise StorageError(f"an object is {len(data)} bytes where the index says {inst.size}")
            yield part_header(boundary, headers(index, ts))
            yield from payload(inst, data)
            yield b"\r\n"
        yield closing(boundary)

    return Body(chunks(), _content_type(DICOM, boundary), length)


def jpeg_frames_body(
    instances: Sequence[StoredInstance],
    blobs: BlobStore,
    base_url: str,
    render_instance: Callable[[bytes], list[bytes]],
    *,
    workers: int,
    boundary: str | None = None,
) -> Body:
    """Every frame of every image instance as a JPEG part, instances rendered concurrently
    (``render_instance(data)`` returns one JPEG per frame, none for an instance without pixels)."""
    from pydicom.uid import JPEGBaseline8Bit

    boundary = boundary or multipart.new_boundary()

    def fetch(inst: StoredInstance) -> list[bytes]:
        return render_instance(blobs.get(stored_key(inst)))

    def chunks() -> Iterator[bytes]:
        sent = 0
        for index, jpegs in enumerate(ordered(instances, fetch, workers)):
            inst = instances[index]
            location = f"{base_url}/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}"
            for number, jpeg in enumerate(jpegs, start=1):
                headers = {
                    "Content-Type": f"image/jpeg; transfer-syntax={JPEGBaseline8Bit}",
                    "Content-Location": f"{location}/frames/{number}",
                }
                yield part_header(boundary, headers)
                yield jpeg
                yield b"\r\n"
                sent += 1
        if not sent:
            raise NotAcceptable("none of the requested instances has pixel data to return as image/jpeg")
        yield closing(boundary)

    return Body(chunks(), _content_type("image/jpeg", boundary))


def bytes_body(data: bytes, content_type: str) -> Body:
    """An answer already built, sent in pieces (its length known)."""
    view = memoryview(data)
    return Body((bytes(view[i : i + CHUNK]) for i in range(0, len(data), CHUNK)), content_type, len(data))
