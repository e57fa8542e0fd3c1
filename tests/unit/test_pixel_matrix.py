"""The pixel paths over HTTP, for a matrix of codecs: WADO-RS frames and rendered resources (PS3.18
§10.4.1.1.3, §8.3.5.1) and WADO-URI (PS3.18 §9), on the full app with the in-memory backend.

Every source is one of the files pydicom ships, given fresh UIDs and stored with STOW-RS. What comes
back is checked against pixels decoded here, independently, with pydicom and its codec plugins: the
bytes of a frame, and the luminance of a rendered image (size, correlation with the source, the
linear VOI window of PS3.3 §C.11.2.1.2, MONOCHROME1 inversion, colour kept colour). Multipart
answers are split by the small parser below, not by the server's decoder.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import apply_color_lut, pixel_array
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from tests.corpus import stow_body

OCTET = 'multipart/related; type="application/octet-stream"'
AS_STORED = OCTET + "; transfer-syntax=*"
MULTIPART_JPEG = 'multipart/related; type="image/jpeg"'
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")


# -- sources -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One pydicom test file, as stored for a test (``photometric``/``syntax`` change the copy)."""

    id: str
    file: str
    lossy: bool = False
    photometric: str | None = None
    syntax: str | None = None

    def __str__(self) -> str:
        return self.id


NATIVE_U8 = Source("native-u8-mono2", "image_dfl.dcm", syntax=ExplicitVRLittleEndian)
NATIVE_U16 = Source("native-u16-mono2", "examples_overlay.dcm")
NATIVE_S16_CT = Source("native-s16-ct-rescaled", "CT_small.dcm")
NATIVE_S16_MR = Source("native-s16-mr", "MR_small.dcm")
NATIVE_MONO1 = Source("native-s16-mono1", "MR_small.dcm", photometric="MONOCHROME1")
IMPLICIT = Source("implicit-vr-s16", "MR_small_implicit.dcm")
BIG_ENDIAN = Source("explicit-big-endian-s16", "MR_small_bigendian.dcm")
DEFLATED = Source("deflated-u8", "image_dfl.dcm")
NATIVE_U32_MULTI = Source("native-u32-15frames", "rtdose.dcm")
NATIVE_RGB = Source("native-rgb", "examples_rgb_color.dcm")
NATIVE_YBR422 = Source("native-ybr_full_422", "SC_ybr_full_422_uncompressed.dcm")
PALETTE = Source("native-palette-color", "examples_palette.dcm")
RLE_RGB_MULTI = Source("rle-rgb-2frames", "SC_rgb_rle_2frame.dcm")
RLE_RGB16_MULTI = Source("rle-rgb16-2frames", "SC_rgb_rle_16bit_2frame.dcm")
RLE_S16 = Source("rle-s16", "MR_small_RLE.dcm")
RLE_MONO1 = Source("rle-s16-mono1", "MR_small_RLE.dcm", photometric="MONOCHROME1")
JPEG_YBR = Source("jpeg-baseline-ybr_full", "SC_rgb_jpeg_dcmtk.dcm", lossy=True)
JPEG_RGB = Source("jpeg-baseline-rgb", "SC_rgb_dcmtk_+eb+cr.dcm", lossy=True)
JPEG_RGB_BARE = Source("jpeg-baseline-rgb-no-app14", "SC_jpeg_no_color_transform.dcm", lossy=True)
JPEG_YBR422 = Source("jpeg-baseline-ybr_full_422", "SC_rgb_dcmtk_+eb+cy+np.dcm", lossy=True)
JPEG_EXTENDED = Source("jpeg-extended-12bit", "JPGExtended.dcm", lossy=True)
JPEG_LOSSLESS = Source("jpeg-lossless-sv1-rgb", "SC_rgb_jpeg_gdcm.dcm")
J2K_LOSSLESS = Source("j2k-lossless-s16", "MR_small_jp2klossless.dcm")
J2K_LOSSY = Source("j2k-lossy-s16-rescaled", "693_J2KI.dcm", lossy=True)
J2K_RGB = Source("j2k-rgb", "SC_rgb_gdcm_KY.dcm", lossy=True)
J2K_YBR_RCT = Source("j2k-lossless-ybr_rct", "GDCMJ2K_TextGBR.dcm")
JPEGLS_LOSSLESS = Source("jpegls-lossless-s16", "MR_small_jpeg_ls_lossless.dcm")
JPEGLS_NEAR = Source("jpegls-near-lossless-u16", "JPEGLSNearLossless_16.dcm", lossy=True)
JPEGLS_RGB = Source("jpegls-near-lossless-rgb", "SC_rgb_jls_lossy_line.dcm", lossy=True)

ALL = [
    NATIVE_U8, NATIVE_U16, NATIVE_S16_CT, NATIVE_S16_MR, NATIVE_MONO1, IMPLICIT, BIG_ENDIAN, DEFLATED,
    NATIVE_U32_MULTI, NATIVE_RGB, NATIVE_YBR422, PALETTE, RLE_RGB_MULTI, RLE_RGB16_MULTI, RLE_S16, RLE_MONO1,
    JPEG_YBR, JPEG_RGB, JPEG_RGB_BARE, JPEG_YBR422, JPEG_EXTENDED, JPEG_LOSSLESS,
    J2K_LOSSLESS, J2K_LOSSY, J2K_RGB, J2K_YBR_RCT, JPEGLS_LOSSLESS, JPEGLS_NEAR, JPEGLS_RGB,
]  # fmt: skip
MULTIFRAME = [NATIVE_U32_MULTI, RLE_RGB_MULTI, RLE_RGB16_MULTI]

# Every source goes through every test. Once known to be wrong, and checked here since: big-endian
# frames as Explicit VR Little Endian (came back byte-swapped), JPEG YBR_FULL_422 frames decoded
# (came back as full-resolution YCbCr, neither RGB nor the 4:2:2 layout the instance announces),
# deflated frames as stored (labelled with the Deflated syntax, which is no pixel encoding), 16-bit
# palette entries rendered (clipped as if 8-bit), and an RGB JPEG without an APP14 marker passed
# through as image/jpeg (read as YCbCr by JPEG decoders).
DEFAULT_OCTET = ALL
STORED_OCTET = ALL
RENDERABLE = ALL
JPEG_FRAMES = ALL


@cache
def _file_bytes(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} is not available offline"
    return Path(str(path)).read_bytes()


def part10(source: Source) -> bytes:
    """The source file with new UIDs and patient, as a Part-10 object."""
    ds = dcmread(io.BytesIO(_file_bytes(source.file)))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = "PIXEL-MATRIX"
    ds.PatientName = "MATRIX^PIXEL"
    if source.photometric:
        ds.PhotometricInterpretation = source.photometric
    if source.syntax:
        ds.file_meta.TransferSyntaxUID = source.syntax
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@dataclass
class Stored:
    ds: Dataset  # what was sent, read back here
    path: str  # the instance's WADO-RS path

    @property
    def frames(self) -> int:
        return int(self.ds.get("NumberOfFrames", 1) or 1)

    def wado_uri(self, **params: object) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        ds = self.ds
        return (
            f"/wadouri?requestType=WADO&studyUID={ds.StudyInstanceUID}&seriesUID={ds.SeriesInstanceUID}"
            f"&objectUID={ds.SOPInstanceUID}" + (f"&{query}" if query else "")
        )


def store(client, source: Source) -> Stored:
    data = part10(source)
    body, content_type = stow_body([data])
    response = client.post("/studies", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    ds = dcmread(io.BytesIO(data))
    return Stored(ds, f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}")


# -- HTTP answers --------------------------------------------------------------------------------------


def media_params(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype; a=1; b="x"`` → ("type/subtype", {"a": "1", "b": "x"})."""
    head, *rest = value.split(";")
    params = {}
    for item in rest:
        name, _, val = item.strip().partition("=")
        params[name.strip().lower()] = val.strip().strip('"')
    return head.strip().lower(), params


@dataclass
class Part:
    headers: dict[str, str]
    payload: bytes


def multipart(response) -> list[Part]:
    """The body parts of a multipart/related answer (RFC 2046 §5.1.1)."""
    kind, params = media_params(response.headers["content-type"])
    assert kind == "multipart/related", response.headers["content-type"]
    delimiter = b"\r\n--" + params["boundary"].encode()
    pieces = (b"\r\n" + response.content).split(delimiter)
    assert pieces[-1].startswith(b"--"), "no close delimiter"
    parts = []
    for piece in pieces[1:-1]:
        head, sep, payload = piece.partition(b"\r\n\r\n")
        assert sep, "a part without a blank line after its headers"
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            if line.strip():
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        parts.append(Part(headers, payload))
    return parts


def get_frames(client, stored: Stored, numbers: str, accept: str) -> list[Part]:
    response = client.get(f"{stored.path}/frames/{numbers}", headers={"Accept": accept})
    assert response.status_code == 200, response.text
    return multipart(response)


def image(response, media_type: str) -> np.ndarray:
    """A rendered answer, decoded: HxW for grayscale, HxWx3 for colour."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == media_type
    img = Image.open(io.BytesIO(response.content))
    assert img.format == {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF"}[media_type]
    if img.mode == "P":
        img = img.convert("RGB")
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB" if len(img.getbands()) >= 3 else "L")
    return np.asarray(img)


def rendered(client, stored: Stored, media_type: str = "image/png", frame: int | None = None, **params) -> np.ndarray:
    path = f"{stored.path}/frames/{frame}/rendered" if frame else f"{stored.path}/rendered"
    return image(client.get(path, params=params, headers={"Accept": media_type}), media_type)


def error(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status
    return body["message"]


# -- pixels decoded here ----------------------------------------------------------------------------


def decoded(ds: Dataset, number: int, **kwargs) -> np.ndarray:
    """Frame ``number`` (1-based) as pydicom decodes it."""
    return pixel_array(ds, index=number - 1, **kwargs)


def explicit_le_frame(ds: Dataset, number: int) -> bytes:
    """The frame's pixels as Explicit VR Little Endian bytes, in the stored colour space."""
    ts = UID(ds.file_meta.TransferSyntaxUID)
    if ds.PhotometricInterpretation == "YBR_FULL_422" and not ts.is_encapsulated:
        return stored_frame(ds, number)  # native 4:2:2 keeps its subsampled layout
    arr = decoded(ds, number, as_rgb=False)
    if ds.PhotometricInterpretation == "YBR_FULL_422":
        # the native layout the attributes announce (PS3.3 C.7.6.3.1.2): Y Y Cb Cr per pixel pair
        ycc = arr.astype(np.int64)
        pairs = ycc.reshape(ycc.shape[0], -1, 2, 3)
        chroma = np.rint(pairs[:, :, :, 1:].mean(axis=2) + 1e-9)
        packed = np.concatenate([pairs[:, :, :, 0], chroma], axis=-1)
        return packed.astype(np.uint8).tobytes()
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def stored_frame(ds: Dataset, number: int) -> bytes:
    """The frame exactly as it sits in Pixel Data: an encapsulated frame, or a native slice."""
    ts = UID(ds.file_meta.TransferSyntaxUID)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if ts.is_encapsulated:
        return list(generate_frames(ds.PixelData, number_of_frames=count))[number - 1]
    samples = 2 if ds.PhotometricInterpretation == "YBR_FULL_422" else int(ds.SamplesPerPixel)
    size = int(ds.Rows) * int(ds.Columns) * samples * int(ds.BitsAllocated) // 8
    return bytes(ds.PixelData[(number - 1) * size : number * size])


def is_colour(ds: Dataset) -> bool:
    return int(ds.SamplesPerPixel) == 3 or ds.PhotometricInterpretation == "PALETTE COLOR"


def display_values(ds: Dataset, number: int) -> np.ndarray:
    """What the frame shows, before any VOI window: RGB for colour, modality values for grayscale
    (negated for MONOCHROME1, so that brighter on screen is always larger)."""
    arr = decoded(ds, number)
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        return apply_color_lut(arr, ds).astype(np.float64)
    if arr.ndim == 3:
        return arr.astype(np.float64)
    values = arr.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    return -values if ds.PhotometricInterpretation == "MONOCHROME1" else values


def luminance(arr: np.ndarray) -> np.ndarray:
    arr = arr.astype(np.float64)
    return arr @ np.array([0.299, 0.587, 0.114]) if arr.ndim == 3 else arr


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64))[0, 1])


def first_value(value) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def dataset_window(ds: Dataset) -> tuple[float, float] | None:
    center, width = first_value(ds.get("WindowCenter")), first_value(ds.get("WindowWidth"))
    return (center, width) if center is not None and width is not None else None


def linear_voi(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 §C.11.2.1.2.1, the linear function, to 0..255."""
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    out = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255
    return np.where(values <= low, 0.0, np.where(values > high, 255.0, out))


def expected_luminance(ds: Dataset, number: int) -> np.ndarray:
    """The source luminance that a default rendering should follow: grayscale clipped to the
    dataset's own window when it has one (what is outside saturates)."""
    values = display_values(ds, number)
    if is_colour(ds):
        return luminance(values)
    window = dataset_window(ds)
    if window is not None:
        center, width = window
        sign = -1 if ds.PhotometricInterpretation == "MONOCHROME1" else 1
        values = np.clip(sign * values, center - width / 2, center + width / 2) * sign
    return values


def full_range_window(ds: Dataset, number: int) -> tuple[float, float]:
    """A window exactly spanning the frame's modality values."""
    arr = decoded(ds, number).astype(np.float64)
    values = arr * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    low, high = float(values.min()), float(values.max())
    return (low + high + 1) / 2, high - low + 1


# -- WADO-RS frames ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source", DEFAULT_OCTET, ids=str)
def test_octet_frames_default_to_explicit_vr_little_endian_pixels(memory_client, source):
    stored = store(memory_client, source)
    response = memory_client.get(f"{stored.path}/frames/1", headers={"Accept": OCTET})
    kind, params = media_params(response.headers["content-type"])
    assert (kind, params["type"], params["transfer-syntax"]) == (
        "multipart/related",
        "application/octet-stream",
        ExplicitVRLittleEndian,
    )
    for number in range(1, stored.frames + 1):
        (part,) = get_frames(memory_client, stored, str(number), OCTET)
        kind, params = media_params(part.headers["content-type"])
        assert (kind, params["transfer-syntax"]) == ("application/octet-stream", ExplicitVRLittleEndian)
        assert part.headers["content-location"].endswith(f"{stored.path}/frames/{number}")
        expected = explicit_le_frame(stored.ds, number)
        if source.lossy:
            # lossy: the decode must agree with pydicom's to within rounding
            dtype = decoded(stored.ds, number).dtype.newbyteorder("<")
            got, want = np.frombuffer(part.payload, dtype), np.frombuffer(expected, dtype)
            assert got.shape == want.shape
            assert np.abs(got.astype(np.int64) - want.astype(np.int64)).max() <= 1
        else:
            assert part.payload == expected, f"frame {number}"


def test_octet_frames_of_a_single_frame_can_come_without_multipart(memory_client):
    stored = store(memory_client, NATIVE_S16_CT)
    response = memory_client.get(f"{stored.path}/frames/1", headers={"Accept": "application/octet-stream"})
    assert response.status_code == 200
    kind, params = media_params(response.headers["content-type"])
    assert (kind, params["transfer-syntax"]) == ("application/octet-stream", ExplicitVRLittleEndian)
    assert response.content == decoded(stored.ds, 1).astype("<i2").tobytes()


@pytest.mark.parametrize("source", STORED_OCTET, ids=str)
def test_frames_as_stored_are_the_stored_bytes(memory_client, source):
    stored = store(memory_client, source)
    ts = str(stored.ds.file_meta.TransferSyntaxUID)
    if ts == "1.2.840.10008.1.2.1.99":
        ts = ExplicitVRLittleEndian  # deflate is no pixel encoding: the frame is native
    for number in range(1, stored.frames + 1):
        (part,) = get_frames(memory_client, stored, str(number), AS_STORED)
        kind, params = media_params(part.headers["content-type"])
        assert (kind, params["transfer-syntax"]) == ("application/octet-stream", ts)
        expected = stored_frame(stored.ds, number)
        # An encapsulated frame is its fragments joined; the 0x00 that pads a codestream ending in an
        # EOI/EOC marker (FFD9) to even length (PS3.5 §A.4) is item padding, not part of the stream.
        assert part.payload == expected or (expected == part.payload + b"\x00" and part.payload.endswith(b"\xff\xd9"))


@pytest.mark.parametrize("source", MULTIFRAME, ids=str)
def test_a_frame_list_returns_the_frames_in_the_order_asked(memory_client, source):
    stored = store(memory_client, source)
    for accept, expected in ((OCTET, explicit_le_frame), (AS_STORED, stored_frame)):
        parts = get_frames(memory_client, stored, "2,1", accept)
        assert [p.headers["content-location"].rsplit("/", 1)[1] for p in parts] == ["2", "1"]
        assert [p.payload for p in parts] == [expected(stored.ds, 2), expected(stored.ds, 1)]
        assert parts[0].payload != parts[1].payload


@pytest.mark.parametrize("source", JPEG_FRAMES, ids=str)
def test_jpeg_frames_show_the_source(memory_client, source):
    stored = store(memory_client, source)
    ds = stored.ds
    for number in range(1, min(stored.frames, 2) + 1):
        (part,) = get_frames(memory_client, stored, str(number), MULTIPART_JPEG)
        kind, params = media_params(part.headers["content-type"])
        assert (kind, params["transfer-syntax"]) == ("image/jpeg", JPEGBaseline8Bit)
        expected = stored_frame(ds, number)
        passed_through = part.payload == expected or expected == part.payload + b"\x00"
        if source is JPEG_RGB_BARE:
            assert not passed_through  # re-encoded: decoders would read its RGB as YCbCr
        elif ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit:
            assert passed_through  # passed through, not re-encoded
        img = Image.open(io.BytesIO(part.payload))
        assert img.format == "JPEG"
        assert img.size == (ds.Columns, ds.Rows)
        got = np.asarray(img.convert("RGB") if is_colour(ds) else img.convert("L"))
        assert correlation(luminance(got), expected_luminance(ds, number)) > 0.9
        if is_colour(ds):
            source_rgb = display_values(ds, number)
            for channel in range(3):
                assert correlation(got[..., channel], source_rgb[..., channel]) > 0.9, f"channel {channel}"


# -- rendered ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("media_type", IMAGE_TYPES)
@pytest.mark.parametrize("source", RENDERABLE, ids=str)
def test_rendered_image_shows_the_source(memory_client, source, media_type):
    stored = store(memory_client, source)
    ds = stored.ds
    got = rendered(memory_client, stored, media_type)
    assert got.shape[:2] == (ds.Rows, ds.Columns)
    if is_colour(ds):
        assert got.ndim == 3, "a colour source must render in colour"
        assert not (np.array_equal(got[..., 0], got[..., 1]) and np.array_equal(got[..., 1], got[..., 2]))
        source_rgb = display_values(ds, 1)
        for channel in range(3):
            assert correlation(got[..., channel], source_rgb[..., channel]) > 0.9, f"channel {channel}"
    else:
        assert got.ndim == 2 or (np.array_equal(got[..., 0], got[..., 1]) and np.array_equal(got[..., 1], got[..., 2]))
    assert correlation(luminance(got), expected_luminance(ds, 1)) > 0.9


@pytest.mark.parametrize("source", MULTIFRAME, ids=str)
def test_each_frame_of_a_multiframe_renders_itself(memory_client, source):
    stored = store(memory_client, source)
    first, second = (rendered(memory_client, stored, frame=n) for n in (1, 2))
    assert not np.array_equal(first, second)
    assert np.array_equal(rendered(memory_client, stored), first)  # /rendered is frame 1
    for number, got in ((1, first), (2, second)):
        assert correlation(luminance(got), expected_luminance(stored.ds, number)) > 0.9


WINDOWED = [NATIVE_U8, NATIVE_U16, NATIVE_S16_CT, NATIVE_S16_MR, NATIVE_MONO1, IMPLICIT, NATIVE_U32_MULTI,
            RLE_S16, RLE_MONO1, JPEG_EXTENDED, J2K_LOSSLESS, J2K_LOSSY, JPEGLS_LOSSLESS, JPEGLS_NEAR]  # fmt: skip


@pytest.mark.parametrize("source", WINDOWED, ids=str)
def test_an_explicit_window_is_the_linear_voi_function(memory_client, source):
    stored = store(memory_client, source)
    ds = stored.ds
    number = stored.frames  # the last frame, for the multi-frame source
    center, width = full_range_window(ds, number)
    got = rendered(memory_client, stored, frame=number, window=f"{center},{width}").astype(np.int64)
    values = display_values(ds, number)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        want = 255 - linear_voi(-values, center, width)
    else:
        want = linear_voi(values, center, width)
    assert np.abs(got - want).max() <= 1


@pytest.mark.parametrize("source", WINDOWED, ids=str)
def test_a_narrow_window_saturates_above_and_below(memory_client, source):
    stored = store(memory_client, source)
    ds = stored.ds
    values = display_values(ds, 1)
    mono1 = ds.PhotometricInterpretation == "MONOCHROME1"
    modality = -values if mono1 else values
    center = float(np.median(modality)) + 0.5
    got = rendered(memory_client, stored, window=f"{center},2")
    above, below = modality > center + 1, modality < center - 1
    assert above.any() and below.any()
    bright, dark = (0, 255) if mono1 else (255, 0)
    assert (got[above] == bright).all() and (got[below] == dark).all()
    # and the same window through the 'linear' function name
    assert np.array_equal(rendered(memory_client, stored, window=f"{center},2,linear"), got)


@pytest.mark.parametrize(
    ("mono1", "mono2"), [(NATIVE_MONO1, NATIVE_S16_MR), (RLE_MONO1, RLE_S16)], ids=["native", "rle"]
)
@pytest.mark.parametrize("window", [None, "1000,1200", "600,2"], ids=["dataset-window", "wide", "narrow"])
def test_monochrome1_renders_as_the_inverse_of_monochrome2(memory_client, mono1, mono2, window):
    params = {"window": window} if window else {}
    inverted = rendered(memory_client, store(memory_client, mono1), **params).astype(np.int64)
    plain = rendered(memory_client, store(memory_client, mono2), **params).astype(np.int64)
    assert np.abs(inverted - (255 - plain)).max() <= 1
    assert plain.std() > 0


@pytest.mark.parametrize(
    ("source", "viewport"),
    [
        (NATIVE_U16, "242,150"),  # 484x300 to half size
        (NATIVE_U16, "100,100"),  # wide image, bounded by the width
        (JPEG_EXTENDED, "100,100"),  # tall image (256x1024), bounded by the height
        (RLE_RGB_MULTI, "50,80"),
        (J2K_YBR_RCT, "64,48"),
    ],
    ids=lambda v: v if isinstance(v, str) else str(v),
)
def test_viewport_bounds_the_rendered_size(memory_client, source, viewport):
    stored = store(memory_client, source)
    ds = stored.ds
    vw, vh = (int(v) for v in viewport.split(","))
    got = rendered(memory_client, stored, viewport=viewport)
    h, w = got.shape[:2]
    assert w <= vw and h <= vh
    assert w >= vw - 1 or h >= vh - 1, "the image should fill the viewport in one dimension"
    assert abs(w / h - ds.Columns / ds.Rows) < 0.05 * ds.Columns / ds.Rows + 1 / min(w, h)
    assert (got.ndim == 3) == is_colour(ds)
    full = rendered(memory_client, stored)
    reference = np.asarray(Image.fromarray(full).resize((w, h), Image.Resampling.BOX))
    assert correlation(luminance(got), luminance(reference)) > 0.95


def test_rendered_jpeg_quality_changes_the_encoding_not_the_picture(memory_client):
    stored = store(memory_client, NATIVE_U16)
    low = memory_client.get(f"{stored.path}/rendered", params={"quality": 10}, headers={"Accept": "image/jpeg"})
    high = memory_client.get(f"{stored.path}/rendered", params={"quality": 95}, headers={"Accept": "image/jpeg"})
    assert len(low.content) < len(high.content)
    a, b = image(low, "image/jpeg"), image(high, "image/jpeg")
    assert correlation(a, b) > 0.9


# -- WADO-URI --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "frame", "window"),
    [
        (NATIVE_S16_CT, None, None),
        (NATIVE_S16_CT, None, (40, 400)),
        (NATIVE_MONO1, None, (1000, 1200)),
        (J2K_LOSSY, None, (0, 2000)),
        (RLE_RGB_MULTI, 2, None),
        (NATIVE_U32_MULTI, 7, (1000000, 300000)),
        (JPEG_YBR, None, None),
        (J2K_YBR_RCT, None, None),
    ],
    ids=[
        "ct",
        "ct-windowed",
        "mono1-windowed",
        "j2k-windowed",
        "rle-frame2",
        "rtdose-frame7-windowed",
        "jpeg-ybr",
        "j2k-ybr_rct",
    ],  # fmt: skip
)
def test_wado_uri_png_is_the_wado_rs_rendered_png(memory_client, source, frame, window):
    stored = store(memory_client, source)
    uri: dict[str, object] = {"contentType": "image/png"}
    rs: dict[str, object] = {}
    if frame:
        uri["frameNumber"] = frame
    if window:
        uri["windowCenter"], uri["windowWidth"] = window
        rs["window"] = f"{window[0]},{window[1]}"
    got = image(memory_client.get(stored.wado_uri(**uri)), "image/png")
    want = rendered(memory_client, stored, frame=frame, **rs)
    assert np.array_equal(got, want)
    assert got.shape[:2] == (stored.ds.Rows, stored.ds.Columns)
    assert correlation(luminance(got), expected_luminance(stored.ds, frame or 1)) > (0.9 if not window else 0.5)
    # JPEG, asked for by name and by default, shows the same picture
    jpeg = image(memory_client.get(stored.wado_uri(**{**uri, "contentType": "image/jpeg"})), "image/jpeg")
    assert np.array_equal(jpeg, rendered(memory_client, stored, "image/jpeg", frame=frame, **rs))
    assert correlation(luminance(jpeg), luminance(got)) > 0.95
    del uri["contentType"]
    assert np.array_equal(image(memory_client.get(stored.wado_uri(**uri)), "image/jpeg"), jpeg)


@pytest.mark.parametrize(
    ("rows", "columns"), [(150, None), (None, 121), (150, 121), (1000, 1000)], ids=["rows", "columns", "both", "larger"]
)
def test_wado_uri_rows_and_columns_bound_the_size(memory_client, rows, columns):
    stored = store(memory_client, NATIVE_U16)  # 484 columns x 300 rows
    params: dict[str, object] = {"contentType": "image/png"}
    if rows:
        params["rows"] = rows
    if columns:
        params["columns"] = columns
    got = image(memory_client.get(stored.wado_uri(**params)), "image/png")
    h, w = got.shape
    assert h <= (rows or h) and w <= (columns or w)
    assert h <= stored.ds.Rows and w <= stored.ds.Columns
    assert abs(w / h - 484 / 300) < 0.05
    if rows and columns and rows < 300:
        assert w == columns or h == rows
        viewport = rendered(memory_client, stored, viewport=f"{columns},{rows}")
        assert np.array_equal(got, viewport)
    full = rendered(memory_client, stored)
    reference = np.asarray(Image.fromarray(full).resize((w, h), Image.Resampling.BOX))
    assert correlation(got, reference) > 0.95


def test_wado_uri_application_dicom_is_the_stored_object(memory_client):
    stored = store(memory_client, JPEG_YBR)
    response = memory_client.get(stored.wado_uri(contentType="application/dicom"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom")
    back = dcmread(io.BytesIO(response.content))
    assert back.SOPInstanceUID == stored.ds.SOPInstanceUID
    assert back.PixelData == stored.ds.PixelData


# -- bad input on the pixel paths -----------------------------------------------------------------------


@pytest.fixture
def two_frames(memory_client) -> Stored:
    return store(memory_client, RLE_RGB_MULTI)


BAD_WADO_RS = [
    ("/frames/0", OCTET, 400, "'0' is not a frame number"),
    ("/frames/x", OCTET, 400, "'x' is not a frame number"),
    ("/frames/1,0", OCTET, 400, "'0' is not a frame number"),
    ("/frames/3", OCTET, 404, "frame 3 does not exist; the instance has 2 frames"),
    ("/frames/1,3", AS_STORED, 404, "frame 3 does not exist"),
    ("/frames/1", "text/html", 406, "cannot satisfy Accept: text/html"),
    ("/frames/1,2", "application/octet-stream", 406, "cannot satisfy Accept"),
    ("/frames/1", OCTET + "; transfer-syntax=1.2.840.10008.1.2.4.50", 406, "not 1.2.840.10008.1.2.4.50"),
    ("/frames/0/rendered", "image/png", 400, "'0' is not a frame number"),
    ("/frames/3/rendered", "image/png", 404, "frame 3 does not exist"),
    ("/rendered", "text/html", 406, "rendered images are available as image/jpeg, image/png, image/gif"),
    ("/rendered?window=40,0", "image/png", 400, "window width must be at least 1"),
    ("/rendered?window=abc", "image/png", 400, "window='abc': expected center,width"),
    ("/rendered?window=40", "image/png", 400, "window='40': expected center,width"),
    ("/rendered?window=40,400,cubic", "image/png", 400, "window function 'cubic' is not supported"),
    ("/rendered?viewport=abc", "image/png", 400, "viewport='abc': expected width,height"),
    ("/rendered?viewport=64", "image/png", 400, "viewport='64': expected width,height"),
    ("/rendered?viewport=a,b", "image/png", 400, "viewport='a,b': expected width,height"),
    ("/rendered?viewport=0,0", "image/png", 400, "width and height must be between 1 and"),
    ("/rendered?viewport=-5,10", "image/png", 400, "width and height must be between 1 and"),
    ("/rendered?viewport=100000,100000", "image/png", 400, "width and height must be between 1 and"),
    ("/rendered?quality=0", "image/jpeg", 400, "quality='0' must be a whole number from 1 to 100"),
]


def _accept_label(accept: str) -> str:
    return {OCTET: "octet", AS_STORED: "as-stored"}.get(accept, accept.replace('"', ""))


@pytest.mark.parametrize(
    ("suffix", "accept", "status", "message"),
    BAD_WADO_RS,
    ids=[f"{suffix} ({_accept_label(accept)})" for suffix, accept, *_ in BAD_WADO_RS],
)
def test_bad_wado_rs_pixel_requests_say_what_was_wrong(memory_client, two_frames, suffix, accept, status, message):
    response = memory_client.get(two_frames.path + suffix, headers={"Accept": accept})
    assert message in error(response, status)


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"contentType": "text/plain"}, 406, "contentType 'text/plain' is not available"),
        ({"contentType": "image/tiff"}, 406, "contentType 'image/tiff' is not available"),
        ({"contentType": "garbage"}, 400, "'garbage' is not a media type"),
        ({"contentType": "image/png", "frameNumber": 0}, 400, "frameNumber='0' must be a positive whole number"),
        ({"contentType": "image/png", "frameNumber": 3}, 404, "frame 3 does not exist; the instance has 2 frames"),
        ({"contentType": "image/png", "windowCenter": 40, "windowWidth": 0}, 400, "window width must be at least 1"),
        ({"contentType": "image/png", "windowCenter": 40}, 400, "expected center,width"),
        ({"contentType": "image/png", "rows": 0}, 400, "rows='0' must be a positive whole number"),
        ({"contentType": "image/png", "columns": "abc"}, 400, "columns='abc' must be a positive whole number"),
        ({"contentType": "image/png", "region": "0,0,1,1"}, 400, "parameter(s) region are not supported"),
    ],
    ids=[
        "text-plain",
        "tiff",
        "not-a-media-type",
        "frame-0",
        "frame-past-end",
        "width-0",
        "center-only",
        "rows-0",
        "columns-abc",
        "region",
    ],  # fmt: skip
)
def test_bad_wado_uri_pixel_requests_say_what_was_wrong(memory_client, two_frames, params, status, message):
    assert message in error(memory_client.get(two_frames.wado_uri(**params)), status)
