"""WADO-RS routes (PS3.18 §10.4): studies, series and instances, their metadata and bulk data."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..blobs.keys import stored_key
from ..errors import NotAcceptable, NotFound
from ..formats.media import MULTIPART_RELATED, OCTET_STREAM, parse_accept
from ..records import StoredInstance
from ..retrieve import bulkdata, negotiation, streams
from ..retrieve import instances as wado
from ..retrieve import metadata as wado_metadata
from ..retrieve import size_policy as policy
from . import delivery
from .http import base_url, encoded_response, not_modified, not_modified_response, path_uid
from .services import Services


def _target(request: Request) -> tuple[str, str | None, str | None, str]:
    study = path_uid(request, "study")
    series = path_uid(request, "series") if "series" in request.path_params else None
    sop = path_uid(request, "instance") if "instance" in request.path_params else None
    what = "instance" if sop else "series" if series else "study"
    return study, series, sop, what


def routes(svc: Services) -> list[Route]:
    workers = svc.settings.retrieve_concurrency
    #: Metadata is built whole; where the deployment streams it may be as large as a stream.
    limits = policy.Limits.of(svc.settings)

    def _instances(target: tuple[str, str | None, str | None, str], with_metadata: bool) -> list[StoredInstance]:
        study, series, sop, what = target
        found = svc.index.list_instances(study, series, sop, with_metadata=with_metadata)
        if not found:
            raise NotFound(f"{what} {sop or series or study} is not stored here")
        return found

    def retrieve(request: Request) -> Response:
        target = _target(request)
        _, _, sop, what = target
        fmt = negotiation.negotiate_instances(request.headers.get("accept"), single_allowed=sop is not None)
        found = _instances(target, with_metadata=False)
        base = base_url(request, svc.settings)
        answer = policy.instances_answer(found, what, base, as_jpeg=fmt.jpeg_frames)
        head = request.method == "HEAD"
        if fmt.jpeg_frames:
            size = policy.jpeg_frames_size(found)
            return delivery.send(
                svc,
                size,
                answer,
                lambda: streams.jpeg_frames_body(found, svc.blobs, base, wado.jpeg_frames_of, workers=workers),
                head=head,
            )
        sent = found if fmt.multipart else found[:1]
        syntaxes = [wado.chosen_syntax(i, fmt) for i in sent]  # every 406 the index foresees, before a read
        size = policy.instances_size(sent, syntaxes)
        as_stored = not fmt.multipart and syntaxes[0] == sent[0].transfer_syntax_uid

        def body() -> streams.Body:
            return streams.instances_body(
                sent,
                svc.blobs,
                syntaxes,
                lambda inst, data: wado.load_instance(inst, data, fmt),
                multipart_body=fmt.multipart,
                workers=workers,
                locations=[wado.instance_url(base, i) for i in sent],
            )

        return delivery.send(
            svc,
            size,
            answer,
            body,
            stored_key=stored_key(sent[0]) if as_stored else None,
            single_part=not fmt.multipart,
            head=head,
        )

    threshold = svc.settings.bulk_data_threshold

    def metadata(request: Request) -> Response:
        target = _target(request)
        study, series, sop, what = target
        media = negotiation.negotiate_metadata(request.headers.get("accept"))
        base = base_url(request, svc.settings)
        if what == "series":
            assert series is not None
            return _series_metadata(request, study, series, media, base)
        found = _instances(target, with_metadata=True)
        body, content_type = wado_metadata.encode(wado_metadata.metadata(found, svc.blobs, base, threshold), media)

        def check(length: int, gzipped: bool) -> None:
            policy.after_build(length, policy.metadata_answer(found, what, base, gzipped=gzipped), limits)

        return encoded_response(
            request,
            identity=lambda: body,
            gzipped=lambda: wado_metadata.compress(body),
            content_type=content_type,
            etag=wado_metadata.body_etag(body),
            check=check,
        )

    def _series_metadata(request: Request, study: str, series: str, media: str, base: str) -> Response:
        version = wado_metadata.series_version(svc.index, study, series, media, base)
        if not_modified(request, version.etag):  # one read of the series item, nothing else
            return not_modified_response(request, version.etag)
        document, listed = wado_metadata.series_document(version, index=svc.index, blobs=svc.blobs, threshold=threshold)

        def check(length: int, gzipped: bool) -> None:
            answer = (
                policy.metadata_answer(listed, "series", base, gzipped=gzipped)
                if listed
                else policy.series_metadata_answer(study, series, base, gzipped=gzipped)
            )
            policy.after_build(length, answer, limits)

        return encoded_response(
            request,
            identity=document.identity,
            gzipped=document.gzipped,
            content_type=document.content_type,
            etag=document.etag,
            check=check,
        )

    def bulk(request: Request) -> Response:
        target = _target(request)
        path = str(request.path_params["tagpath"])
        (inst,) = _instances(target, with_metadata=False)
        accept = request.headers.get("accept")
        if path.upper() == bulkdata.PIXEL_DATA and (fmt := bulkdata.pixel_format(accept, inst)) is not None:
            return _converted_pixels(request, inst, path, fmt)
        multipart_answer = _negotiate_bulkdata(accept)
        where = bulkdata.locate(inst, path, svc.blobs, threshold)
        tag = bulkdata.etag(inst, path)
        headers = {"ETag": tag, "Accept-Ranges": "bytes"}
        if path.upper() == bulkdata.PIXEL_DATA:
            headers["Vary"] = "Accept"
        if not_modified(request, tag):
            return Response(status_code=304, headers=headers)
        if_range = request.headers.get("if-range")
        # RFC 9110 §13.1.5: a range meant for another version is ignored, and the whole value sent.
        stale = if_range is not None and if_range.strip() != tag
        wanted = None if stale else bulkdata.parse_range(request.headers.get("range"), where.length)
        length = wanted.size if wanted else where.length
        # Buffered, streamed or refused as the size policy says (never redirected: the value is a
        # slice of the stored object, which a presigned URL cannot name).
        response = delivery.send(
            svc,
            policy.Size(length + policy.PART_OVERHEAD),
            policy.bulkdata_answer(),
            lambda: bulkdata.stored_body(inst, where, svc.blobs, wanted, multipart_answer=multipart_answer),
        )
        if wanted:
            response.status_code = 206
            headers["Content-Range"] = wanted.content_range
        response.headers.update(headers)
        return response

    def _converted_pixels(request: Request, inst: StoredInstance, path: str, fmt: negotiation.FrameFormat) -> Response:
        """Pixel Data decoded or re-encoded (``bulkdata.pixel_format``). Range applies to stored bytes
        only: here it is ignored and the whole value sent (RFC 9110 §14.2), and no Accept-Ranges is
        offered; the ETag names the representation."""
        tag = bulkdata.etag(inst, f"{path}|{fmt.kind}|{fmt.transfer_syntax}|{fmt.multipart}")
        headers = {"ETag": tag, "Vary": "Accept"}
        if not_modified(request, tag):
            return Response(status_code=304, headers=headers)
        location = wado.instance_url(base_url(request, svc.settings), inst)
        response = delivery.send(
            svc,
            bulkdata.pixel_size(inst, fmt),
            policy.converted_pixels_answer(location),
            # Not redirected: a redirect would build the decoded value whole (of any size) to store it.
            lambda: bulkdata.pixel_body(inst, svc.blobs, fmt, location, workers=workers),
        )
        response.headers.update(headers)
        return response

    return [
        Route("/studies/{study}", retrieve, methods=["GET"]),
        Route("/studies/{study}/metadata", metadata, methods=["GET"]),
        Route("/studies/{study}/series/{series}", retrieve, methods=["GET"]),
        Route("/studies/{study}/series/{series}/metadata", metadata, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances/{instance}", retrieve, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances/{instance}/metadata", metadata, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tagpath}", bulk, methods=["GET"]),
    ]


def _negotiate_bulkdata(accept: str | None) -> bool:
    """True for ``multipart/related; type="application/octet-stream"`` (the default), False for a
    single ``application/octet-stream`` body (PS3.18 Table 8.7.3-3)."""
    for r in parse_accept(accept):
        if r.type == MULTIPART_RELATED and (r.param("type") or OCTET_STREAM).lower() in (OCTET_STREAM, "*/*"):
            return True
        if r.type == OCTET_STREAM:
            return False
        if r.type in ("*/*", "application/*", "multipart/*"):
            return True
    raise NotAcceptable(
        f"cannot satisfy Accept: {accept}; bulk data is available as "
        'multipart/related; type="application/octet-stream" and application/octet-stream'
    )
