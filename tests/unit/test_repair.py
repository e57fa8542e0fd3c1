"""The repair command: the index is reconciled with what the bucket holds (S3 is the truth)."""

from __future__ import annotations

import time

from dicomweb_server.blobs.keys import instance_key, object_key
from dicomweb_server.search.query import Level, parse_query
from dicomweb_server.store.ingest import ingest
from dicomweb_server.store.repair import repair
from tests.corpus import make_instance

LATER = lambda: time.time() + 3600  # noqa: E731 - an hour after the writes: past the grace period


def found(backend, patient_id):  # type: ignore[no-untyped-def]
    page = backend.index.search_studies(parse_query([("PatientID", patient_id)], Level.STUDY))
    return [s.study_uid for s in page.items]


def test_objects_without_an_index_entry_are_indexed_once(backend) -> None:
    lost = make_instance("ct", PatientID="LOST-1")  # stored, then the index lost its entry
    legacy = make_instance("mr", PatientID="LOST-2")  # stored under the UID key of earlier versions
    backend.blobs.put(object_key(lost.study_uid, lost.series_uid, lost.sop_uid, lost.md5), lost.data)
    backend.blobs.put(instance_key(legacy.study_uid, legacy.series_uid, legacy.sop_uid), legacy.data)
    kept = make_instance("ct", PatientID="LOST-3")
    ingest(kept.data, index=backend.index, blobs=backend.blobs)
    young = repair(backend.index, backend.blobs)  # just written: a write may be in progress
    assert len(young.pending) == 2 and young.indexed == [] and found(backend, "LOST-1") == []
    report = repair(backend.index, backend.blobs, now=LATER)
    assert report.objects == 3 and len(report.indexed) == 2
    assert found(backend, "LOST-1") == [lost.study_uid] and found(backend, "LOST-2") == [legacy.study_uid]
    assert lost.stored_key(backend.index) in backend.objects()
    (inst,) = backend.index.list_instances(legacy.study_uid)
    assert backend.blobs.get(instance_key(legacy.study_uid, legacy.series_uid, legacy.sop_uid)) == legacy.data
    assert inst.md5 == legacy.md5
    again = repair(backend.index, backend.blobs, now=LATER)
    assert again.indexed == [] and again.removed == [] and again.missing == []


def test_a_losing_writers_leftover_is_removed_after_the_grace_period(backend) -> None:
    winner = make_instance("ct", PatientID="WIN")
    loser = make_instance(
        "ct", study_uid=winner.study_uid, series_uid=winner.series_uid, sop_uid=winner.sop_uid, PatientID="LOSE"
    )
    ingest(winner.data, index=backend.index, blobs=backend.blobs)
    leftover = object_key(loser.study_uid, loser.series_uid, loser.sop_uid, loser.md5)
    backend.blobs.put(leftover, loser.data)  # a writer that crashed after its put
    young = repair(backend.index, backend.blobs)
    assert young.pending == [leftover] and leftover in backend.objects()  # it may still be writing
    old = repair(backend.index, backend.blobs, now=LATER)
    assert old.removed == [leftover]
    assert backend.objects() == [winner.stored_key(backend.index)]
    assert backend.index.indexed_object(winner.study_uid, winner.series_uid, winner.sop_uid)[0] == winner.md5


def test_incoming_files_are_indexed_and_entries_without_objects_reported(backend) -> None:
    waiting = make_instance("ct", PatientID="WAIT")
    backend.blobs.put("incoming/waiting.dcm", waiting.data)  # its S3 event was lost
    gone = make_instance("mr", PatientID="GONE")
    result = ingest(gone.data, index=backend.index, blobs=backend.blobs)
    backend.blobs.delete(result.key)
    backend.blobs.put("studies/junk/not-dicom.dcm", b"hello")
    report = repair(backend.index, backend.blobs, now=LATER)
    assert report.dropped == ["incoming/waiting.dcm"] and found(backend, "WAIT") == [waiting.study_uid]
    assert report.missing == [f"{gone.study_uid}/{gone.series_uid}/{gone.sop_uid}"]
    assert [k for k, _ in report.unreadable] == ["studies/junk/not-dicom.dcm"]
    assert "studies/junk/not-dicom.dcm" in backend.objects()  # reported, never deleted


def test_the_repair_command_reconciles_a_stack_named_by_flags(aws, capsys) -> None:
    from dicomweb_server.cli import main

    lost = make_instance("ct", PatientID="CLI-1")
    aws.s3.put_object(
        Bucket=aws.bucket, Key=object_key(lost.study_uid, lost.series_uid, lost.sop_uid, lost.md5), Body=lost.data
    )
    args = ["repair", "--bucket", aws.bucket, "--table", aws.table, "--grace", "0", "--endpoint-file", "/none.json"]
    assert main(args[:7]) == 0
    out = capsys.readouterr().out
    assert "indexed (had no entry):     1" in out and f"indexed: studies/{lost.study_uid}" in out
    assert main(args[:7]) == 0 and "indexed (had no entry):     0" in capsys.readouterr().out
    import pytest

    with pytest.raises(SystemExit, match="does not exist"):
        main(args)
