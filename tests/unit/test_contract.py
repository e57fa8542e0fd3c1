"""One contract for every implementation of the ports (ports.py): the in-memory fakes and the
S3/DynamoDB adapters (on moto) must behave the same, so the fakes the other tests use cannot drift."""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid

from dicomweb_server.formats import dicom_json
from dicomweb_server.index.dynamodb import DynamoDbIndex
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.ports import AddOutcome, BlobChanged, BlobNotFound
from dicomweb_server.search.query import Level, parse_query
from dicomweb_server.store.ingest import build_record, parse_part10
from tests.corpus import make_instance
from tests.unit.doubles import pair


def record(instance, **kwargs):
    return build_record(parse_part10(instance.data), instance.data, **kwargs)


def add(index, *instances):
    for inst in instances:
        assert index.add_instance(record(inst)) is AddOutcome.ADDED


def study_query(*params, **kw):
    return parse_query(list(params), Level.STUDY, **kw)


# -- adding instances ------------------------------------------------------------------------------------


def test_add_instance_is_exactly_once(backend):
    index = backend.index
    study = generate_uid()
    first = make_instance("ct", study_uid=study, Modality="CT")
    rec = record(first)
    assert index.indexed_md5(rec.study_uid, rec.series_uid, rec.sop_uid) is None
    assert index.add_instance(rec) is AddOutcome.ADDED
    assert index.indexed_md5(rec.study_uid, rec.series_uid, rec.sop_uid) == rec.md5
    before = index.get_study(study)
    assert index.add_instance(rec) is AddOutcome.ALREADY_INDEXED
    assert index.get_study(study) == before
    assert before.instance_count == 1 and before.series_count == 1
    assert len(index.list_instances(study)) == 1


def test_aggregates_count_series_instances_and_modalities(backend):
    index = backend.index
    study = generate_uid()
    ct_series, mr_series = generate_uid(), generate_uid()
    add(
        index,
        make_instance("ct", study_uid=study, series_uid=ct_series),
        make_instance("ct", study_uid=study, series_uid=ct_series),
        make_instance("mr", study_uid=study, series_uid=mr_series),
        make_instance("ct", study_uid=study, series_uid=ct_series),
    )
    summary = index.get_study(study)
    assert (summary.series_count, summary.instance_count, summary.modalities) == (2, 4, ("CT", "MR"))
    assert index.get_study(generate_uid()) is None
    series, _ = pair(index.search_series(study, parse_query([], Level.SERIES)))
    assert {s.series_uid: s.instance_count for s in series} == {ct_series: 3, mr_series: 1}
    # SOPClassesInStudy (0008,0062): every SOP class stored in the study, once
    assert summary.sop_classes == tuple(sorted({"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"}))
    found, _ = pair(
        index.search_studies(parse_query([("SOPClassesInStudy", "1.2.840.10008.5.1.4.1.1.4")], Level.STUDY))
    )
    assert [s.study_uid for s in found] == [study]


# -- searching studies -----------------------------------------------------------------------------------

#: label -> (source, attributes). Newest first: A, F, B, D, C, E, G.
ARCHIVE = {
    "A": (
        "ct",
        dict(
            PatientName="DOE^JANE",
            PatientID="PID-1",
            AccessionNumber="ACC-1",
            StudyDate="20240105",
            StudyTime="101010",
            PatientSex="F",
        ),
    ),
    "B": (
        "mr",
        dict(PatientName="DOE^JOHN", PatientID="PID-2", AccessionNumber="ACC-2", StudyDate="20230610", PatientSex="M"),
    ),
    "C": (
        "jpeg",
        dict(PatientName="SIIM^JOE", PatientID="PID-3", AccessionNumber="ACC-3", StudyDate="20220301", PatientSex="M"),
    ),
    "D": (
        "multiframe",
        dict(PatientName="SIIM^JOE", PatientID="PID-3", AccessionNumber="ACC-4", StudyDate="20220302", PatientSex="M"),
    ),
    "E": (
        "ct",
        dict(
            PatientName="MÜLLER^RENÉ", PatientID="PID-4", AccessionNumber="ACC-5", StudyDate="20210101", PatientSex="M"
        ),
    ),
    "F": (
        "ct",
        dict(
            PatientName="SIIM",
            PatientID="PID-5",
            AccessionNumber="ACC-6",
            StudyDate="20240105",
            StudyTime="080000",
            PatientSex="F",
        ),
    ),
    "G": (
        "mr",
        dict(
            PatientName="NODATE^X",
            PatientID="PID-6",
            AccessionNumber=None,
            StudyDate=None,
            StudyTime=None,
            PatientSex="F",
        ),
    ),
}


@pytest.fixture
def archive(backend):
    """Load ARCHIVE (study A also gets an MR series) and return label -> Study Instance UID."""
    uids = {}
    for label, (source, attrs) in ARCHIVE.items():
        inst = make_instance(source, **attrs)
        add(backend.index, inst)
        uids[label] = inst.study_uid
    add(backend.index, make_instance("mr", study_uid=uids["A"], **ARCHIVE["A"][1]))
    return uids


SEARCHES = [
    ([], "AFBDCEG"),
    ([("StudyInstanceUID", "{C},{A}")], "AC"),
    ([("StudyInstanceUID", "{C}\\{C}")], "C"),
    ([("StudyInstanceUID", "{C}"), ("PatientName", "DOE")], ""),
    ([("StudyInstanceUID", "1.2.3.4.5")], ""),
    ([("AccessionNumber", "ACC-3")], "C"),
    ([("AccessionNumber", "ACC-*")], "AFBDCE"),
    ([("AccessionNumber", "acc-3")], ""),
    ([("PatientID", "PID-3")], "DC"),
    ([("PatientID", "PID-3"), ("StudyDate", "20220302")], "D"),
    ([("PatientName", "SIIM")], "FDC"),
    ([("PatientName", "siim^joe")], "DC"),
    ([("PatientName", "^JOE")], "DC"),
    ([("PatientName", "SIIM^*")], "FDC"),
    ([("PatientName", "SIIM^^")], "FDC"),
    ([("PatientName", "mul*")], "E"),
    ([("PatientName", "Müller")], "E"),
    ([("PatientName", "*JOE*")], "DC"),
    ([("PatientName", "?OE^J*")], "AB"),
    ([("PatientName", "joe"), ("fuzzymatching", "true")], "DC"),
    ([("PatientName", "D")], ""),
    ([("ModalitiesInStudy", "MR")], "ABG"),
    ([("ModalitiesInStudy", "OT,CT")], "AFDCE"),
    ([("ModalitiesInStudy", "C*")], "AFE"),
    ([("ModalitiesInStudy", "MR"), ("PatientSex", "F")], "AG"),
    ([("StudyDate", "20240105")], "AF"),
    ([("StudyDate", "20220101-20231231")], "BDC"),
    ([("StudyDate", "-20220301")], "CE"),
    ([("StudyDate", "20230101-")], "AFB"),
    ([("StudyDate", "20240105"), ("StudyTime", "090000-")], "A"),
    ([("PatientSex", "F")], "AFG"),
]


def test_search_studies_finds_the_same_studies_newest_first(backend, archive, subtests):
    for params, expected in SEARCHES:
        with subtests.test(params=params):
            query = study_query(*[(name, value.format(**archive)) for name, value in params])
            found, more = pair(backend.index.search_studies(query))
            assert [s.study_uid for s in found] == [archive[label] for label in expected]
            assert more is False


def test_search_results_carry_the_aggregates(backend, archive):
    (found,), _ = pair(backend.index.search_studies(study_query(("AccessionNumber", "ACC-1"))))
    assert (found.series_count, found.instance_count, found.modalities) == (2, 2, ("CT", "MR"))
    assert found.attrs["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]}


def test_memory_and_dynamodb_agree_on_every_query(aws):
    """The same archive in both indexes; every query gives equal summaries in the same order."""
    from tests.unit.test_qido import PN_CASES

    memory, dynamo = MemoryIndex(), DynamoDbIndex(aws.dynamodb, aws.table)
    names = sorted({name for _, name, _ in PN_CASES})
    for i, name in enumerate(names):
        inst = make_instance(
            ("ct", "mr", "jpeg")[i % 3],
            PatientName=name,
            PatientID=f"P{i % 4}",
            StudyDate=f"2024{1 + i % 12:02d}{1 + i % 28:02d}",
        )
        add(memory, inst)
        add(dynamo, inst)
    queries = [[("PatientName", q)] for q in sorted({q for q, _, _ in PN_CASES})]
    queries += [[("PatientName", q), ("fuzzymatching", "true")] for q in ("joe siim", "jo", "rene")]
    queries += [
        [("PatientID", "P1")],
        [("PatientID", "P*")],
        [("ModalitiesInStudy", "OT")],
        [("StudyDate", "20240301-20240930")],
        [("limit", "3"), ("offset", "2")],
    ]
    for params in queries:
        query = study_query(*params)
        before = (dynamo.store.reads, memory.store.reads)
        assert dynamo.search_studies(query) == memory.search_studies(query), params
        # the same plan reads the same index items on both (a planner bug cannot hide in memory)
        assert dynamo.store.reads - before[0] == memory.store.reads - before[1], params


# -- paging ------------------------------------------------------------------------------------------------


def walk(index, limit, *params):
    """Every page of a search, in order, checking the 'more' flag on each."""
    seen, offset = [], 0
    while True:
        found, more = pair(index.search_studies(study_query(*params, ("limit", str(limit)), ("offset", str(offset)))))
        seen += [s.study_uid for s in found]
        if not more:
            assert len(found) <= limit
            return seen
        assert len(found) == limit
        offset += limit


@pytest.fixture
def many_studies(backend):
    """25 studies on 7 dates (so many share a date), alternating sex and modality."""
    for i in range(25):
        add(
            backend.bulk,
            make_instance(
                ("ct", "mr")[i % 2], StudyDate=f"202001{1 + i % 7:02d}", PatientSex="FM"[i % 2], PatientName=f"PAGE^{i}"
            ),
        )
    return backend.index


PAGED = {
    (): 25,
    (("PatientSex", "F"),): 13,
    (("ModalitiesInStudy", "MR"),): 12,
    (("PatientName", "PAGE"),): 25,
    (("StudyDate", "20200102-20200105"),): 15,
}


def test_paging_never_skips_or_repeats(many_studies):
    for params, count in PAGED.items():
        everything, more = pair(many_studies.search_studies(study_query(*params, ("limit", "1000"))))
        expected = [s.study_uid for s in everything]
        assert (len(expected), more) == (count, False), params
        dates = [s.attrs["00080020"]["Value"][0] for s in everything]
        assert dates == sorted(dates, reverse=True)
        for limit in (1, 4, 7) if not params else (4, 7):
            assert walk(many_studies, limit, *params) == expected, (params, limit)


def test_paging_across_more_than_one_batch_of_study_reads(backend):
    """Over 100 studies: DynamoDB reads the date postings and study items in batches of 100."""
    uids = []
    for i in range(105):
        inst = make_instance("mr", StudyDate=f"2019{1 + i % 12:02d}{1 + i % 28:02d}", PatientSex="FM"[i % 3 == 0])
        add(backend.bulk, inst)
        uids.append(inst.study_uid)
    everything = walk(backend.index, 40)
    assert sorted(everything) == sorted(uids) and len(everything) == 105
    females = walk(backend.index, 30, ("PatientSex", "F"))
    assert len(females) == len(set(females)) == sum(1 for i in range(105) if i % 3 != 0)
    assert walk(backend.index, 1000, ("PatientSex", "F")) == females


# -- series and instances ----------------------------------------------------------------------------------


@pytest.fixture
def series_study(backend):
    """One study: series numbered 3, 1, 2 and one without a number, with 3 instances each, added scrambled."""
    study = generate_uid()
    series = {n: generate_uid() for n in (3, 1, 2, None)}
    for number in (3, 1, None, 2):
        for instance_number in (2, 3, 1):
            attrs = dict(InstanceNumber=instance_number, SeriesNumber=number)
            add(
                backend.index,
                make_instance("mr" if number == 2 else "ct", study_uid=study, series_uid=series[number], **attrs),
            )
    return study, series


def test_search_series_orders_by_series_number(backend, series_study):
    study, series = series_study
    found, more = pair(backend.index.search_series(study, parse_query([], Level.SERIES)))
    assert [s.series_uid for s in found] == [series[1], series[2], series[3], series[None]]
    assert [s.instance_count for s in found] == [3, 3, 3, 3]
    assert more is False
    found, _ = pair(backend.index.search_series(study, parse_query([("Modality", "MR")], Level.SERIES)))
    assert [s.series_uid for s in found] == [series[2]]
    found, more = pair(backend.index.search_series(study, parse_query([("limit", "2"), ("offset", "1")], Level.SERIES)))
    assert ([s.series_uid for s in found], more) == ([series[2], series[3]], True)
    assert pair(backend.index.search_series(generate_uid(), parse_query([], Level.SERIES))) == ([], False)


def numbers(instances):
    return [
        (
            i.series_attrs["00200011"]["Value"][0] if "Value" in i.series_attrs.get("00200011", {}) else None,
            i.attrs["00200013"]["Value"][0],
        )
        for i in instances
    ]


def test_search_instances_orders_by_series_then_instance_number(backend, series_study):
    study, series = series_study
    found, more = pair(backend.index.search_instances(study, None, parse_query([], Level.INSTANCE)))
    expected = [(s, n) for s in (1, 2, 3, None) for n in (1, 2, 3)]
    assert numbers(found) == expected and more is False
    found, _ = pair(backend.index.search_instances(study, series[3], parse_query([], Level.INSTANCE)))
    assert numbers(found) == [(3, 1), (3, 2), (3, 3)]
    found, _ = pair(
        backend.index.search_instances(
            study, None, parse_query([("InstanceNumber", "2"), ("Modality", "CT")], Level.INSTANCE)
        )
    )
    assert numbers(found) == [(1, 2), (3, 2), (None, 2)]
    found, more = pair(
        backend.index.search_instances(study, None, parse_query([("limit", "4"), ("offset", "4")], Level.INSTANCE))
    )
    assert (numbers(found), more) == (expected[4:8], True)


def test_list_instances_with_metadata(backend):
    study = generate_uid()
    multiframe = make_instance("multiframe", study_uid=study, SeriesNumber=2)
    ct = make_instance("ct", study_uid=study, SeriesNumber=1)
    add(backend.index, multiframe, ct)
    found = backend.index.list_instances(study, with_metadata=True)
    assert [i.sop_uid for i in found] == [ct.sop_uid, multiframe.sop_uid]
    for inst, stored in zip((ct, multiframe), found, strict=True):
        assert stored.metadata == dicom_json.metadata(inst.dataset())
        assert stored.metadata["7FE00010"]["BulkDataURI"] == "bulkdata/7FE00010"
        assert stored.bulk is not None and stored.bulk["7FE00010"][1] == len(inst.dataset().PixelData)
        offset, length = stored.bulk["7FE00010"]
        assert inst.data[offset : offset + length] == inst.dataset().PixelData
        assert (stored.size, stored.transfer_syntax_uid, stored.sop_class_uid) == (
            len(inst.data),
            inst.transfer_syntax_uid,
            inst.sop_class_uid,
        )
    assert found[1].number_of_frames == 2 and found[0].number_of_frames == 1
    (one,) = backend.index.list_instances(study, multiframe.series_uid, multiframe.sop_uid, with_metadata=True)
    assert one.sop_uid == multiframe.sop_uid and one.metadata == found[1].metadata and one.bulk == found[1].bulk
    assert [i.sop_uid for i in backend.index.list_instances(study, ct.series_uid)] == [ct.sop_uid]
    assert backend.index.list_instances(study, ct.series_uid, generate_uid()) == []
    assert backend.index.list_instances(generate_uid()) == []


def test_metadata_too_large_for_the_index_is_not_kept(backend):
    inst = make_instance("ct")
    assert backend.index.add_instance(record(inst, max_metadata_bytes=100)) is AddOutcome.ADDED
    (stored,) = backend.index.list_instances(inst.study_uid, with_metadata=True)
    assert stored.metadata is None


# -- blob store --------------------------------------------------------------------------------------------


def test_blob_put_get_copy_delete(backend):
    blobs = backend.blobs
    blobs.put("studies/a/b.dcm", b"\x00first")
    assert blobs.get("studies/a/b.dcm") == b"\x00first"
    blobs.put("studies/a/b.dcm", b"second")
    assert blobs.get("studies/a/b.dcm") == b"second"
    blobs.copy("studies/a/b.dcm", "studies/c/d.dcm")
    assert blobs.get("studies/c/d.dcm") == b"second"
    blobs.delete("studies/a/b.dcm")
    assert backend.objects() == ["studies/c/d.dcm"]
    with pytest.raises(BlobNotFound):
        blobs.get("studies/a/b.dcm")


def test_missing_blobs(backend):
    with pytest.raises(BlobNotFound):
        backend.blobs.get("studies/nothing.dcm")
    with pytest.raises(KeyError):  # BlobNotFound is a KeyError
        backend.blobs.get("studies/nothing.dcm")
    with pytest.raises(BlobNotFound):
        backend.blobs.copy("incoming/gone.dcm", "studies/x.dcm")
    assert backend.objects() == []
    backend.blobs.delete("studies/nothing.dcm")  # deleting a missing key is fine


def test_a_study_with_more_name_postings_than_one_transaction_takes_is_found_by_every_group(backend):
    """Three long component groups write more postings than TransactWriteItems' 100 actions: the
    spare postings go first in transactions of their own, and every group still finds the study."""
    alphabetic = "VANDERBERGHE MONTGOMERY^ALEXANDRA CHRISTINA^VON^DR^PHD"
    ideographic = "山田太郎花子^美咲陽菜結衣^次郎^先生^博士"
    phonetic = "やまだたろうはなこ^みさきひなゆい^じろう^せんせい^はかせ"
    name = f"{alphabetic}={ideographic}={phonetic}"  # written in UTF-8 (ISO_IR 192)
    inst = make_instance("ct", PatientName=name, PatientID="LONGNAME-00001", AccessionNumber="ACCLONG-0001")
    assert len(backend.index._actions(record(inst), None)) > 100  # the case this test is about
    add(backend.index, inst)
    for value, fuzzy in (
        (alphabetic, False), (ideographic, False), (phonetic, False), ("VANDERBE*", False), ("山田太郎*", False),
        ("みさ", True), ("chris", True), ("博士", True), ("alex mont", True),
    ):  # fmt: skip
        params = [("PatientName", value)] + ([("fuzzymatching", "true")] if fuzzy else [])
        found = backend.index.search_studies(study_query(*params))
        assert [s.study_uid for s in found.items] == [inst.study_uid], value


def test_a_stray_posting_under_another_sort_key_does_not_repeat_its_study(backend):
    """Postings written ahead of a study that another writer created under a different StudyDate
    point at a study whose sort key they do not carry: they are skipped, never a second row."""
    from dicomweb_server.index import keys
    from dicomweb_server.index.items import Put

    inst = make_instance("ct", StudyDate="20240102", StudyTime="101010", PatientID="STRAY-1")
    add(backend.index, inst)
    stray = keys.study_postings(record(inst), "20990101000000")
    backend.index.store.transact([Put(p) for p in stray[:20]])
    for params in ([("PatientID", "STRAY-1")], [("PatientID", "STRAY*")], []):
        found = backend.index.search_studies(study_query(*params, ("limit", "1000")))
        assert [s.study_uid for s in found.items].count(inst.study_uid) == 1, params


def test_blob_get_range_reads_inclusive_byte_ranges(backend):
    backend.blobs.put("studies/a/r.dcm", bytes(range(100)))
    assert backend.blobs.get_range("studies/a/r.dcm", 10, 19) == bytes(range(10, 20))
    assert backend.blobs.get_range("studies/a/r.dcm", 99, 99) == bytes([99])
    with pytest.raises(BlobNotFound):
        backend.blobs.get_range("studies/nothing.dcm", 0, 9)


def test_series_version_counts_every_instance_added_once(backend):
    study = generate_uid()
    first = make_instance("ct", study_uid=study)
    second = make_instance("ct", study_uid=study, series_uid=first.series_uid)
    assert backend.index.series_version(study, first.series_uid) is None
    add(backend.index, first)
    assert backend.index.series_version(study, first.series_uid) == 1
    add(backend.index, second)
    assert backend.index.add_instance(record(second)) is AddOutcome.ALREADY_INDEXED
    assert backend.index.series_version(study, first.series_uid) == 2  # a repeated add changes nothing


def test_blob_chunks(backend):
    data = bytes(range(256)) * 10
    backend.blobs.put("studies/a/c.dcm", data)
    pieces = list(backend.blobs.chunks("studies/a/c.dcm", 1000))
    assert [len(p) for p in pieces] == [1000, 1000, 560] and b"".join(pieces) == data
    with pytest.raises(BlobNotFound):  # before the first piece
        backend.blobs.chunks("studies/nothing.dcm", 1000)


class _Trickle:
    """A stream that gives at most ``step`` bytes a read (as a network body does), and can fail
    after ``fail_after`` bytes."""

    def __init__(self, data: bytes, step: int = 777_777, fail_after: int | None = None) -> None:
        self._data, self._at, self._step, self._fail_after = data, 0, step, fail_after

    def read(self, size: int = -1, /) -> bytes:
        if self._fail_after is not None and self._at >= self._fail_after:
            raise OSError("the source broke")
        n = self._step if size < 0 else min(size, self._step)
        out = self._data[self._at : self._at + n]
        self._at += len(out)
        return out


def test_blob_put_stream_writes_in_parts_and_nothing_when_the_source_fails(backend):
    big = bytes(range(256)) * (12 * 1024**2 // 256 + 3)  # more than one part of either store
    assert backend.blobs.put_stream("studies/a/big.dcm", _Trickle(big), size_hint=len(big)) == len(big)
    assert backend.blobs.get("studies/a/big.dcm") == big
    assert backend.blobs.put_stream("studies/a/small.dcm", _Trickle(b"small")) == 5
    assert backend.blobs.get("studies/a/small.dcm") == b"small"
    with pytest.raises(OSError, match="the source broke"):
        backend.blobs.put_stream("studies/a/broken.dcm", _Trickle(big, fail_after=9 * 1024**2))
    assert not backend.blobs.exists("studies/a/broken.dcm")
    assert sorted(backend.objects()) == ["studies/a/big.dcm", "studies/a/small.dcm"]


def test_blob_open_of_a_version_and_only_while_its_etag_holds(backend):
    blobs = backend.blobs
    blobs.put("incoming/v.dcm", b"first")
    first = blobs.open("incoming/v.dcm")
    assert blobs.open("incoming/v.dcm", version=first.version, if_match=first.etag).body.read() == b"first"
    blobs.put("incoming/v.dcm", b"second")
    with pytest.raises(BlobChanged):
        blobs.open("incoming/v.dcm", if_match=first.etag)
    if first.version:  # a store that keeps versions still gives the one read
        assert blobs.open("incoming/v.dcm", version=first.version).body.read() == b"first"
    with pytest.raises(BlobNotFound):
        blobs.open("incoming/none.dcm")
