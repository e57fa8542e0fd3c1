"""S3 drop (drop.py): a Part-10 file put under incoming/ is indexed, moved to its canonical key, and
redelivered events change nothing. Run on the in-memory ports and on S3/DynamoDB (moto)."""

from __future__ import annotations

import pytest

from dicomweb_server.search.query import Level, parse_query
from dicomweb_server.store.drop import DropOutcome, index_dropped
from dicomweb_server.store.ingest import StorageFailed
from tests.corpus import make_instance
from tests.unit.doubles import pair

from .doubles import FailingIndex


def drop(backend, key, data):
    backend.blobs.put(key, data)
    return index_dropped(key, index=backend.index, blobs=backend.blobs)


def find_study(backend, study_uid):
    found, _ = pair(backend.index.search_studies(parse_query([("StudyInstanceUID", study_uid)], Level.STUDY)))
    return found


def test_a_dropped_instance_is_indexed_and_moved_to_its_canonical_key(backend):
    inst = make_instance("ct", PatientID="DROP-1")
    assert drop(backend, "incoming/batch 1/ct.dcm", inst.data) == (DropOutcome.INDEXED, None)
    assert backend.objects() == [inst.stored_key(backend.index)]
    assert backend.blobs.get(inst.stored_key(backend.index)) == inst.data
    (study,) = find_study(backend, inst.study_uid)
    assert study.instance_count == 1
    by_patient, _ = pair(backend.index.search_studies(parse_query([("PatientID", "DROP-1")], Level.STUDY)))
    assert [s.study_uid for s in by_patient] == [inst.study_uid]


def test_a_redelivered_event_finds_the_file_gone_and_changes_nothing(backend):
    inst = make_instance("mr")
    drop(backend, "incoming/mr.dcm", inst.data)
    keys, study = backend.objects(), find_study(backend, inst.study_uid)
    assert index_dropped("incoming/mr.dcm", index=backend.index, blobs=backend.blobs) == (DropOutcome.GONE, None)
    assert backend.objects() == keys
    assert find_study(backend, inst.study_uid) == study


def test_garbage_is_rejected_and_moved_to_rejected(backend):
    outcome = drop(backend, "incoming/scans/notes.txt", b"these are not the images you are looking for" * 5)
    assert outcome == (DropOutcome.REJECTED, 0xC000)
    assert backend.objects() == ["rejected/scans/notes.txt"]


def test_a_truncated_file_is_rejected_and_not_indexed(backend):
    inst = make_instance("jpeg")
    assert drop(backend, "incoming/cut.dcm", inst.data[:-3]) == (DropOutcome.REJECTED, 0xC000)
    assert backend.objects() == ["rejected/cut.dcm"]
    assert find_study(backend, inst.study_uid) == []


def test_the_same_file_dropped_again_is_a_duplicate(backend):
    inst = make_instance("ct")
    drop(backend, "incoming/first.dcm", inst.data)
    assert drop(backend, "incoming/again.dcm", inst.data) == (DropOutcome.DUPLICATE, None)
    assert backend.objects() == [inst.stored_key(backend.index)]
    assert find_study(backend, inst.study_uid)[0].instance_count == 1


def test_a_different_file_with_a_stored_sop_instance_uid_is_rejected(backend):
    original = make_instance("ct", PatientName="FIRST")
    impostor = make_instance(
        "ct",
        study_uid=original.study_uid,
        series_uid=original.series_uid,
        sop_uid=original.sop_uid,
        PatientName="SECOND",
    )
    drop(backend, "incoming/original.dcm", original.data)
    assert drop(backend, "incoming/impostor.dcm", impostor.data) == (DropOutcome.REJECTED, 0x0111)
    assert backend.objects() == ["rejected/impostor.dcm", original.stored_key(backend.index)]
    assert backend.blobs.get(original.stored_key(backend.index)) == original.data


@pytest.mark.parametrize("key", ["studies/1/series/2/instances/3.dcm", "rejected/x.dcm", "incoming/folder/"])
def test_keys_outside_incoming_and_folder_markers_are_ignored(backend, key):
    data = make_instance("mr").data
    assert drop(backend, key, data) == (DropOutcome.IGNORED, None)
    assert backend.objects() == [key]


def test_when_indexing_fails_the_incoming_file_stays_for_the_retry(backend):
    inst = make_instance("mr")
    backend.blobs.put("incoming/retry.dcm", inst.data)
    with pytest.raises(StorageFailed, match="the index is unavailable"):
        index_dropped("incoming/retry.dcm", index=FailingIndex(backend.index), blobs=backend.blobs)
    assert backend.objects() == ["incoming/retry.dcm"]  # no canonical copy without an index entry
    assert index_dropped("incoming/retry.dcm", index=backend.index, blobs=backend.blobs) == (DropOutcome.INDEXED, None)
    assert backend.objects() == [inst.stored_key(backend.index)]


def test_a_newer_upload_under_the_same_name_is_not_lost_or_mixed_up(aws):
    """A second file uploaded to the same incoming/ key while the first is being indexed: the first
    is stored with the bytes its index entry describes, and only its version leaves incoming/, so
    the second stays for its own event."""
    from dicomweb_server.blobs.s3 import S3BlobStore
    from dicomweb_server.index.dynamodb import DynamoDbIndex

    first, second = make_instance("ct", PatientID="FIRST"), make_instance("mr", PatientID="SECOND")
    blobs, index = S3BlobStore(aws.s3, aws.bucket), DynamoDbIndex(aws.dynamodb, aws.table)

    class Racing:
        def __getattr__(self, name):
            return getattr(blobs, name)

        def open(self, key, **kwargs):
            got = blobs.open(key, **kwargs)
            blobs.put(key, second.data)  # the newer upload lands right after the read began
            return got

    blobs.put("incoming/same.dcm", first.data)
    assert index_dropped("incoming/same.dcm", index=index, blobs=Racing()) == (DropOutcome.INDEXED, None)
    key = first.stored_key(index)
    assert blobs.get(key) == first.data
    assert blobs.get("incoming/same.dcm") == second.data
    assert index_dropped("incoming/same.dcm", index=index, blobs=blobs) == (DropOutcome.INDEXED, None)
    assert blobs.get(second.stored_key(index)) == second.data
