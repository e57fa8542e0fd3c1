"""Reading Part-10 objects for ingest: what is accepted, and truncation reported as 0xC000."""

from __future__ import annotations

import io

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomweb_server.store.ingest import _JSON_PER_HEADER_BYTE, InvalidInstance, Reason, build_record, parse_part10
from dicomweb_server.store.scan import scan
from tests.corpus import SOURCES, make_instance


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_corpus_source_is_accepted_with_its_identity(source):
    inst = make_instance(source)
    record = build_record(parse_part10(inst.data), inst.data)
    assert (record.study_uid, record.series_uid, record.sop_uid) == (inst.study_uid, inst.series_uid, inst.sop_uid)
    assert record.transfer_syntax_uid == inst.transfer_syntax_uid
    assert record.size == len(inst.data)


def test_a_deflated_dataset_is_accepted():
    with open(get_testdata_file("image_dfl.dcm", download=False), "rb") as fh:
        data = fh.read()
    assert parse_part10(data).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99"


def cut_inside_the_header_of(data: bytes, keyword: str, keep: int) -> bytes:
    """The object ending ``keep`` bytes into the header of element ``keyword``."""
    ds = dcmread(io.BytesIO(data))
    raw = ds.get_item(keyword)
    header = 12 if raw.VR in ("OB", "OW", "SQ", "UN", "UT", "OF", "OD", "OL", "OV", "UC", "UR") else 8
    return data[: raw.value_tell - header + keep]


@pytest.mark.parametrize(
    "source, cut",
    [
        ("ct", lambda d: d[:-1]),
        ("ct", lambda d: d[: len(d) // 2]),
        ("ct", lambda d: cut_inside_the_header_of(d, "PixelData", 5)),
        ("mr_implicit", lambda d: cut_inside_the_header_of(d, "PixelData", 3)),
        ("jpeg", lambda d: d[:-1]),  # the 4-byte length of the closing delimiter item is cut
        ("jpeg", lambda d: d[:-6]),  # the delimiter tag itself is cut
        ("multiframe", lambda d: d[:-4]),
        ("multiframe", lambda d: cut_inside_the_header_of(d, "PixelData", 10)),
    ],
)
def test_truncated_objects_are_cannot_understand(source, cut):
    data = cut(make_instance(source).data)
    with pytest.raises(InvalidInstance) as err:
        parse_part10(data)
    assert err.value.reason is Reason.CANNOT_UNDERSTAND
    assert "truncated" in err.value.message or "unreadable DICOM data" in err.value.message


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not a DICOM Part-10 file (0 bytes)"),
        (b"\x00" * 128 + b"NOPE" + b"\x00" * 64, "no 'DICM' prefix"),
        (b"x" * 131, "not a DICOM Part-10 file (131 bytes)"),
    ],
)
def test_non_dicom_is_cannot_understand(data, message):
    with pytest.raises(InvalidInstance) as err:
        parse_part10(data)
    assert err.value.reason is Reason.CANNOT_UNDERSTAND
    assert message in err.value.message


def test_a_file_written_without_its_preamble_is_stored_as_a_complete_part10_file(backend):
    """pydicom's dcmwrite of a dataset built in memory (what dicomweb-client's store_instances
    sends) writes the file meta group with no preamble and no DICM prefix: it is stored with them,
    byte for byte otherwise, and retrieving it gives a complete Part-10 file."""
    import io

    import pydicom
    from pydicom.dataset import Dataset

    from dicomweb_server.store.ingest import Stored, ingest

    source = pydicom.dcmread(io.BytesIO(make_instance("ct").data))
    ds = Dataset()
    ds.update(source)
    ds.file_meta = source.file_meta
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds)
    sent = out.getvalue()
    assert sent[:4] == b"\x02\x00\x00\x00" and sent[128:132] != b"DICM"
    result = ingest(sent, index=backend.index, blobs=backend.blobs)
    assert result.outcome is Stored.NEW
    stored = backend.blobs.get(result.key)
    assert stored == bytes(128) + b"DICM" + sent
    assert pydicom.dcmread(io.BytesIO(stored)).SOPInstanceUID == ds.SOPInstanceUID
    assert ingest(sent, index=backend.index, blobs=backend.blobs).outcome is Stored.IDENTICAL_DUPLICATE


def test_a_file_without_preamble_or_file_meta_group_length_gets_a_complete_file_meta(backend):
    """A dataset built in memory with a FileMetaDataset of its own (no group length) is written by
    pydicom with neither: it is stored as a complete Part-10 file whose data set is the same."""
    import io

    import pydicom

    from dicomweb_server.store.ingest import Stored, ingest

    source = pydicom.dcmread(io.BytesIO(make_instance("ct").data))
    ds = Dataset()
    ds.update(source)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = source.file_meta.TransferSyntaxUID
    ds.file_meta.MediaStorageSOPClassUID = source.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds)
    sent = out.getvalue()
    assert sent[:4] == b"\x02\x00\x02\x00"
    result = ingest(sent, index=backend.index, blobs=backend.blobs)
    assert result.outcome is Stored.NEW
    stored = pydicom.dcmread(io.BytesIO(backend.blobs.get(result.key)))
    assert stored.preamble is not None and "FileMetaInformationGroupLength" in stored.file_meta
    assert stored.PixelData == source.PixelData and stored.SOPInstanceUID == source.SOPInstanceUID
    assert ingest(sent, index=backend.index, blobs=backend.blobs).outcome is Stored.IDENTICAL_DUPLICATE


def _header_of(build) -> bytes:  # noqa: ANN001 - a function filling a dataset
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    build(ds)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _many_empty(ds) -> None:  # noqa: ANN001
    for element in range(0x1000, 0x1400):
        ds.add_new(0x00190000 | element, "LO", "")  # private, but no creator: kept as LO


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda ds: setattr(ds, "PatientName", ["X"] * 2000), id="person name of one-letter values"),
        pytest.param(lambda ds: setattr(ds, "OtherPatientNames", ["X=Y"] * 1000), id="names in two groups"),
        pytest.param(lambda ds: setattr(ds, "PatientName", ["==X"] * 1500), id="names in the third group"),
        pytest.param(lambda ds: setattr(ds, "PatientName", ["=X"] * 1500), id="names in the second group"),
        pytest.param(lambda ds: ds.add_new(0x00189219, "FL", [-1.2345678e-05] * 1000), id="FL values"),
        pytest.param(lambda ds: ds.add_new(0x00280106, "SS", [-32768] * 2000), id="SS values"),
        pytest.param(lambda ds: setattr(ds, "ImageType", ["A"] * 2000), id="one-letter code strings"),
        pytest.param(lambda ds: setattr(ds, "StudyDescription", "\x01" * 60), id="control characters"),
        pytest.param(_many_empty, id="empty elements"),
    ],
)
def test_the_metadata_size_bound_holds_for_the_worst_headers(build) -> None:  # noqa: ANN001
    """Ingest keeps an instance's metadata in the index when its header alone shows that it fits;
    that shortcut must never keep a document larger than the limit."""
    data = _header_of(build)
    scanned = scan(data)
    record = build_record(scanned.dataset, size=scanned.size, md5=scanned.md5, max_metadata_bytes=10**9)
    assert record.metadata is not None
    assert len(repr(record.metadata)) <= _JSON_PER_HEADER_BYTE * len(data)
