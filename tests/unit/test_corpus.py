"""The shared test corpus (tests/corpus.py) gives fresh identities and the attributes asked for."""

from __future__ import annotations

from tests.corpus import SOURCES, make_instance, make_study, read_multipart, stow_body


def test_every_instance_gets_new_uids_and_a_consistent_file_meta():
    a, b = make_instance("ct"), make_instance("ct")
    assert len({a.study_uid, b.study_uid, a.series_uid, b.series_uid, a.sop_uid, b.sop_uid}) == 6
    ds = a.dataset()
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == a.sop_uid
    assert ds.StudyInstanceUID == a.study_uid and ds.SeriesInstanceUID == a.series_uid


def test_attributes_are_set_or_removed_by_keyword():
    ds = make_instance(
        "mr", PatientName="MÜLLER^RENÉ", PatientID="P-1", StudyDate="20240131", AccessionNumber=None
    ).dataset()
    assert (str(ds.PatientName), ds.PatientID, ds.StudyDate) == ("MÜLLER^RENÉ", "P-1", "20240131")
    assert "AccessionNumber" not in ds


def test_sources_cover_the_encodings_the_tests_rely_on():
    syntaxes = {source: make_instance(source).transfer_syntax_uid for source in SOURCES}
    assert syntaxes["ct"] == "1.2.840.10008.1.2.1"
    assert syntaxes["mr_implicit"] == "1.2.840.10008.1.2"
    assert syntaxes["jpeg"] == "1.2.840.10008.1.2.4.50"
    assert int(make_instance("multiframe").dataset().NumberOfFrames) == 2


def test_a_study_shares_its_uid_and_numbers_its_series():
    study = make_study(("ct", "mr"), instances_per_series=2, PatientID="S")
    assert len({i.study_uid for i in study}) == 1 and len({i.series_uid for i in study}) == 2
    assert [(int(i.dataset().SeriesNumber), int(i.dataset().InstanceNumber)) for i in study] == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
    ]


def test_stow_body_and_read_multipart_are_inverse():
    items = [make_instance("mr"), b"\r\n--not-a-boundary\r\n"]
    body, content_type = stow_body(items, boundary="corpus-test")
    assert content_type == 'multipart/related; type="application/dicom"; boundary=corpus-test'
    parts = read_multipart(body, content_type)
    assert [payload for _, payload in parts] == [items[0].data, items[1]]
    assert all(headers == {"content-type": "application/dicom"} for headers, _ in parts)
