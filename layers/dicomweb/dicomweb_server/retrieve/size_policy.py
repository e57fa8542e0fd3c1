"""The one large-response rule: every retrieve, metadata and search answer asks ``decide`` whether
it may be sent, given its size (exact, or an upper bound known before any object is read), and is
refused with a 413 whose hint names the smaller resources that fit the request.

A buffered Lambda answer is at most 6 MB after base64 (about 4.4 MB of body), so the limit is a
setting (``Settings.max_response_bytes``): local emulators enforce none, and tests use tiny ones.

Sizes known before reading come from the index: stored object sizes for Part-10 answers, and for
decoded output Rows × Columns × SamplesPerPixel × BitsAllocated/8 × frames (an upper bound for
JPEG and other encoded output). An upper bound above the limit is no reason to refuse: the answer
is built and ``decide`` is asked again with its exact size (``Delivery.MEASURE``).

Where the deployment streams (the retrieve function behind the Lambda Web Adapter, or uvicorn),
``choose`` adds two deliveries: ``STREAMED`` for answers above the buffered limit up to
``Limits.stream``, written part by part; and ``REDIRECT`` for a single-part answer (one stored
object) when ``Limits.redirect`` allows it: a 303 to a presigned S3 URL. A multipart answer is never
redirected (the Python dicomweb-client keeps its explicit Host header across a redirect, which
breaks the presigned signature). Above every limit the answer is a 413 naming what to ask for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from ..errors import PayloadTooLarge
from ..formats import dicom_json as dj
from ..records import StoredInstance
from ..settings import Settings

#: Multipart framing per part (boundary line and part headers) when no Content-Location is sent.
PART_OVERHEAD = 200
#: Multipart framing per part besides its Content-Location URL: the boundary line (about 40 bytes),
#: Content-Type with a transfer-syntax parameter (about 90), header names and CRLFs, with room to spare.
PART_FRAMING = 256
#: Headers of a Part-10 object beyond its pixel data, in an upper bound for a transcoded instance.
HEADER_ALLOWANCE = 64 * 1024
#: An encoded frame's own headers (JPEG markers, JPEG 2000 boxes, PNG chunks) beyond its pixels.
FRAME_ALLOWANCE = 4096


class Delivery(Enum):
    #: Send it as one body.
    INLINE = "inline"
    #: Only an upper bound is known and it is above the limit: build the answer, then decide again.
    MEASURE = "measure"
    #: Too large for one buffered body, within the streaming limit: written part by part.
    STREAMED = "streamed"
    #: A single-part answer sent as a 303 to a short-lived presigned URL of the object.
    REDIRECT = "redirect"


@dataclass(frozen=True)
class Limits:
    """What this deployment can send: ``inline`` bytes in one buffered body, ``stream`` bytes as a
    stream (0: it cannot stream), and when single-part answers are redirected (never,
    above-limit, always)."""

    inline: int
    stream: int = 0
    redirect: str = "never"

    @property
    def largest(self) -> int:
        return max(self.inline, self.stream)

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_response_bytes, settings.stream_response_bytes, settings.redirect_policy)


@dataclass(frozen=True)
class Size:
    """The size of an answer before it is sent: exact, or an upper bound."""

    bytes: int
    exact: bool = True
    #: For an upper bound: what the answer takes at the least (0: not known), so that an answer
    #: certain not to fit is refused before anything is read or decoded.
    least: int = 0


@dataclass(frozen=True)
class Answer:
    """What is about to be sent, in words, and how to ask for less of it."""

    what: str
    smaller: str


def decide(size: Size, answer: Answer, limit: int) -> Delivery:
    """INLINE when ``size`` fits ``limit``; MEASURE for an upper bound that does not; else a 413."""
    if size.bytes <= limit:
        return Delivery.INLINE
    if not size.exact and size.least <= limit:
        return Delivery.MEASURE
    if not size.exact:
        raise PayloadTooLarge(
            f"the {answer.what} is at least {size.least} bytes, above this server's response limit of {limit} bytes; "
            f"{answer.smaller}"
        )
    raise PayloadTooLarge(
        f"the {answer.what} is {size.bytes} bytes, above this server's response limit of {limit} bytes; "
        f"{answer.smaller}"
    )


def check_measured(length: int, answer: Answer, limit: int) -> None:
    """The exact size of an answer already built (search results, metadata, rendered images)."""
    decide(Size(length), answer, limit)


def build_within(size: Size, answer: Answer, limit: int, build: Callable[[], tuple[bytes, str]]) -> tuple[bytes, str]:
    """Decide on ``size`` before ``build()`` reads anything, then measure what was built when only
    an upper bound was known. Returns ``build()``'s body and content type."""
    delivery = decide(size, answer, limit)
    body, content_type = build()
    if delivery is Delivery.MEASURE:
        check_measured(len(body), answer, limit)
    return body, content_type


def choose(size: Size, answer: Answer, limits: Limits, *, redirectable: bool = False) -> Delivery:
    """How to send an answer of ``size``: INLINE, REDIRECT (``redirectable``: one stored object,
    single-part, when the policy allows), STREAMED, MEASURE (an upper bound above the buffered
    limit and the streaming limit: build, then ``after_build``), or a 413."""
    if redirectable and limits.redirect == "always":
        return Delivery.REDIRECT
    if size.bytes <= limits.inline:
        return Delivery.INLINE
    if redirectable and limits.redirect == "above-limit":
        return Delivery.REDIRECT
    if size.bytes <= limits.stream:
        return Delivery.STREAMED
    if not size.exact and size.least <= limits.largest:
        return Delivery.MEASURE
    if not size.exact:
        raise PayloadTooLarge(_too_large(size.least, answer, limits, at_least=True))
    raise PayloadTooLarge(_too_large(size.bytes, answer, limits))


def after_build(length: int, answer: Answer, limits: Limits) -> Delivery:
    """The exact size of an answer already built: INLINE, STREAMED, or a 413."""
    if length <= limits.inline:
        return Delivery.INLINE
    if length <= limits.stream:
        return Delivery.STREAMED
    raise PayloadTooLarge(_too_large(length, answer, limits))


def _too_large(length: int, answer: Answer, limits: Limits, *, at_least: bool = False) -> str:
    limit = f"response limit of {limits.inline} bytes"
    if limits.stream > limits.inline:
        limit = f"streaming limit of {limits.stream} bytes"
    size = f"at least {length}" if at_least else str(length)
    return f"the {answer.what} is {size} bytes, above this server's {limit}; {answer.smaller}"


# -- sizes known before reading ---------------------------------------------------------------


def _int(attrs: dj.DicomJson, key: str, default: int) -> int:
    try:
        return int(dj.first(attrs, key, default) or default)
    except (TypeError, ValueError):
        return default


def decoded_frame_bytes(instance: StoredInstance, *, bits: int | None = None) -> int:
    """Rows × Columns × SamplesPerPixel × bytes per sample of one decoded frame (0 without pixels).

    ``bits`` overrides BitsAllocated (8 for rendered output)."""
    rows, cols = _int(instance.attrs, "00280010", 0), _int(instance.attrs, "00280011", 0)
    samples = _int(instance.attrs, "00280002", 1)
    allocated = bits or _int(instance.attrs, "00280100", 16)
    return rows * cols * samples * max(allocated, 8) // 8


def instances_size(instances: Sequence[StoredInstance], transfer_syntax: str | None | Sequence[str]) -> Size:
    """Part-10 answer: stored sizes (exact) unless transcoding, then an upper bound.

    ``transfer_syntax`` is one syntax for all (None = as stored) or each instance's own."""
    exact = sum(i.size + PART_OVERHEAD for i in instances)
    targets = (
        [transfer_syntax] * len(instances)
        if transfer_syntax is None or isinstance(transfer_syntax, str)
        else list(transfer_syntax)
    )
    pairs = [(i, ts) for i, ts in zip(instances, targets, strict=True) if ts and ts != i.transfer_syntax_uid]
    if not pairs:
        return Size(exact)
    changed = [i for i, _ in pairs]
    bound = exact + sum(decoded_frame_bytes(i) * i.number_of_frames + HEADER_ALLOWANCE for i in changed)
    unchanged = sum(i.size for i in instances) - sum(i.size for i in changed)
    least = unchanged + sum(least_pixels(i) for i, ts in pairs if ts in NATIVE_SYNTAXES)
    return Size(bound, exact=False, least=least)


#: Transfer syntaxes whose Pixel Data is the decoded pixels, uncompressed.
NATIVE_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")


def least_pixels(instance: StoredInstance) -> int:
    """The fewest pixel bytes an instance takes natively: every frame decoded (a 4:2:2 layout keeps
    two thirds of the samples)."""
    decoded = decoded_frame_bytes(instance) * instance.number_of_frames
    photometric = str(dj.first(instance.attrs, "00280004", "") or "").upper()
    return decoded * 2 // 3 if photometric.endswith("_422") else decoded


def jpeg_frames_size(instances: Sequence[StoredInstance]) -> Size:
    """Every frame as JPEG: at most the 8-bit decoded size of each frame (stored JPEG passes through)."""
    total = 0
    for i in instances:
        per_frame = max(decoded_frame_bytes(i, bits=8), i.size // max(i.number_of_frames, 1))
        total += (per_frame + PART_OVERHEAD) * i.number_of_frames
    return Size(total, exact=False)


def part_overhead(location: str = "") -> int:
    """Bytes a multipart part adds around its payload when it carries ``Content-Location: location``."""
    return PART_FRAMING + len(location.encode()) if location else PART_OVERHEAD


def frames_size(
    instance: StoredInstance, count: int, *, native_exact: bool, location: str = "", stored_frame: int | None = None
) -> Size:
    """``count`` frames of one instance: exact for native pixel data, else an estimate of at most
    the larger of a decoded frame and a stored one (``stored_frame``, the largest of those asked
    for, from the frame table; else the whole object) per frame. An estimate is checked against
    the bytes actually produced before they pass a limit (``web.delivery``).

    ``location`` is the instance URL each part's Content-Location starts with."""
    decoded = decoded_frame_bytes(instance)
    overhead = part_overhead(f"{location}/frames/{instance.number_of_frames}" if location else "") * count
    if native_exact:
        return Size(decoded * count + overhead)
    per_frame = max(decoded, instance.size) if stored_frame is None else max(decoded, stored_frame) + FRAME_ALLOWANCE
    return Size(per_frame * count + overhead, exact=False)


def rendered_size(instance: StoredInstance) -> Size:
    """One rendered frame: at most its 8-bit decoded size, plus the image format's own headers."""
    return Size(decoded_frame_bytes(instance, bits=8) * 3 + 4096, exact=False)


# -- what to ask for instead --------------------------------------------------------------------


def instances_answer(instances: Sequence[StoredInstance], level: str, base_url: str, as_jpeg: bool = False) -> Answer:
    """A study, series or instance retrieve: name its series, instances or frames."""
    first = instances[0]
    study_url = f"{base_url}/studies/{first.study_uid}"
    series = sorted({i.series_uid for i in instances})
    what = f"{level} as JPEG" if as_jpeg else level
    if len(series) > 1:
        return Answer(what, f"retrieve its series one by one (for example {study_url}/series/{series[0]})")
    instance_url = f"{study_url}/series/{first.series_uid}/instances/{first.sop_uid}"
    if len(instances) > 1:
        return Answer(what, f"retrieve its instances one by one (for example {instance_url})")
    return Answer(what, f"retrieve its frames in smaller groups (for example {instance_url}/frames/1)")


def metadata_answer(instances: Sequence[StoredInstance], level: str, base_url: str, *, gzipped: bool = True) -> Answer:
    """Study, series or instance metadata: name the metadata of the level below (and gzip when the
    answer was not compressed)."""
    first = instances[0]
    series_url = f"{base_url}/studies/{first.study_uid}/series/{first.series_uid}"
    instance_url = f"{series_url}/instances/{first.sop_uid}"
    if level == "study" and len({i.series_uid for i in instances}) > 1:
        hint = f"ask for the metadata of each series instead (for example {series_url}/metadata)"
    elif len(instances) > 1:
        hint = f"ask for the metadata of each instance instead (for example {instance_url}/metadata)"
    else:
        hint = f"retrieve the instance itself instead ({instance_url})"
    if not gzipped:
        hint = "send Accept-Encoding: gzip (it is much smaller compressed), or " + hint
    return Answer(f"metadata of the {level}", hint)


def series_metadata_answer(study_uid: str, series_uid: str, base_url: str, *, gzipped: bool) -> Answer:
    """Series metadata (possibly sent from its cached document, without a listing of instances)."""
    series_url = f"{base_url}/studies/{study_uid}/series/{series_uid}"
    hint = f"ask for the metadata of each instance instead ({series_url}/instances lists them)"
    if not gzipped:
        hint = "send Accept-Encoding: gzip (it is much smaller compressed), or " + hint
    return Answer("metadata of the series", hint)


def bulkdata_answer() -> Answer:
    return Answer("bulk data value", "ask for a part of it with a Range header (for example Range: bytes=0-999999)")


def converted_pixels_answer(instance_url: str) -> Answer:
    """Pixel Data decoded or re-encoded (no Range applies to it)."""
    return Answer(
        "pixel data",
        f"ask for its frames in smaller groups (for example {instance_url}/frames/1), or for the value as stored "
        "(transfer-syntax=*) a part at a time with a Range header",
    )


def frames_answer(
    size: Size | None = None, count: int = 0, limits: Limits | None = None, instance_url: str = ""
) -> Answer:
    """A frames retrieve: how many frames of about this size fit the largest answer ``limits``
    allow, and the first frame's URL as an example (without them: fewer frames)."""
    if size is None or not count or limits is None or not instance_url:
        return Answer("frames answer", "ask for fewer frames per request")
    fits = limits.largest // max(size.bytes // count, 1)
    if fits < 1 or count == 1:
        return Answer("frames answer", "ask for fewer frames per request")
    return Answer(
        "frames answer",
        f"ask for fewer frames per request: about {fits} fit (for example {instance_url}/frames/1)",
    )


def rendered_answer() -> Answer:
    return Answer("rendered image", "ask for a smaller viewport or a lower quality")


def search_answer() -> Answer:
    return Answer("search result", "ask for fewer results with limit and offset")
