"""The JPEG frame-header reader that decides how an uploaded photo becomes DICOM."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from dicomweb_server.formats import jpeg


def _jpeg(mode: str = "RGB", size: tuple[int, int] = (64, 48), **save: object) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 128 if mode == "L" else (10, 200, 30)).save(out, format="JPEG", **save)
    return out.getvalue()


def test_baseline_color_with_default_subsampling() -> None:
    info = jpeg.read_header(_jpeg())
    assert (info.rows, info.columns, info.components, info.precision) == (48, 64, 3, 8)
    assert info.process == "baseline" and info.transfer_syntax == "1.2.840.10008.1.2.4.50"
    assert not info.full_sampling


def test_full_sampling_and_grayscale() -> None:
    assert jpeg.read_header(_jpeg(subsampling=0)).full_sampling
    gray = jpeg.read_header(_jpeg("L", (30, 20)))
    assert (gray.rows, gray.columns, gray.components) == (20, 30, 1)


def test_progressive_is_recognised_and_has_no_transfer_syntax() -> None:
    info = jpeg.read_header(_jpeg(progressive=True))
    assert info.process == "progressive" and info.transfer_syntax is None


@pytest.mark.parametrize(
    "data, words",
    [
        (b"GIF89a....", "SOI"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "cut short"),
        (b"\xff\xd8\xff\xd9", "no frame header"),
    ],
)
def test_not_a_jpeg(data: bytes, words: str) -> None:
    with pytest.raises(jpeg.NotJpeg, match=words):
        jpeg.read_header(data)


def test_store_composes_dicom_from_the_header(tmp_path) -> None:
    from dicomweb_server.formats import multipart
    from dicomweb_server.formats.media import parse_media_type
    from dicomweb_server.store import compose

    photo = _jpeg("L", (40, 30))
    body, ctype = multipart.encode(
        [
            (b'[{"7FE00010": {"vr": "OB", "BulkDataURI": "p"}}]', {"Content-Type": "application/dicom+json"}),
            (photo, {"Content-Type": "image/jpeg", "Content-Location": "p"}),
        ],
        "application/dicom+json",
    )
    parts = multipart.decode(body, parse_media_type(ctype))
    [built] = list(compose.compose(parts, "application/dicom+json", "1.2.3"))
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(built.data or b""))
    assert (ds.Rows, ds.Columns, ds.PhotometricInterpretation, ds.StudyInstanceUID) == (30, 40, "MONOCHROME2", "1.2.3")
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    progressive = _jpeg(progressive=True)
    body, ctype = multipart.encode(
        [
            (b'[{"7FE00010": {"vr": "OB", "BulkDataURI": "p"}}]', {"Content-Type": "application/dicom+json"}),
            (progressive, {"Content-Type": "image/jpeg", "Content-Location": "p"}),
        ],
        "application/dicom+json",
    )
    [failed] = list(compose.compose(multipart.decode(body, parse_media_type(ctype)), "application/dicom+json", None))
    assert failed.failure is not None and failed.failure.reason == 0xC122 and "baseline" in failed.failure.message
