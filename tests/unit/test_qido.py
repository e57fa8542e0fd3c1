"""QIDO-RS query parsing and matching (PS3.18 §10.6, PS3.4 §C.2.2.2), as documented in search/query.py."""

import pytest

from dicomweb_server.errors import BadRequest
from dicomweb_server.records import SeriesSummary, StudySummary
from dicomweb_server.search.query import Level, parse_query
from dicomweb_server.search.results import page, series_result, study_result
from dicomweb_server.store.ingest import build_record, parse_part10
from tests.corpus import make_instance

PATIENT_NAME, STUDY_DATE, STUDY_TIME, MODALITIES = "00100010", "00080020", "00080030", "00080061"


def pn(name):
    return {PATIENT_NAME: {"vr": "PN", "Value": [{"Alphabetic": name}]}}


def matches(level, attrs, **params):
    return parse_query(list(params.items()), level).matches(attrs)


def study_matches(attrs, **params):
    return matches(Level.STUDY, attrs, **params)


# -- parse errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, level, name",
    [
        ([("Modality", "CT")], Level.STUDY, "Modality (00080060)"),  # a series attribute, asked of studies
        ([("PixelData", "x")], Level.INSTANCE, "PixelData (7FE00010)"),
        ([("Rows", "512")], Level.STUDY, "Rows (00280010)"),
        ([("ReferencedSeriesSequence", "x")], Level.STUDY, "ReferencedSeriesSequence (00081115)"),
        ([("RequestAttributesSequence.ScheduledProcedureStepID", "x")], Level.STUDY, "RequestAttributesSequence"),
    ],
)
def test_a_known_attribute_the_level_cannot_match_is_ignored_with_a_warning(params, level, name):
    """PS3.18 §8.3.4: an attribute the server recognises but does not support for matching is
    ignored, and a Warning names it (never silently)."""
    query = parse_query(params, level)
    assert query.predicates == ()
    assert [w for w in query.warnings if name in w and "cannot be matched" in w]


@pytest.mark.parametrize(
    "params, level, message",
    [
        ([("Foo", "x")], Level.STUDY, "unknown query parameter 'Foo'"),
        ([("PatientNam", "x")], Level.STUDY, "unknown query parameter"),
        ([("RequestAttributesSequence", "x")], Level.SERIES, "name an attribute inside the sequence"),
        ([("PatientID.PatientName", "x")], Level.STUDY, "PatientID is not a sequence"),
        ([("RequestAttributesSequence.Nope", "x")], Level.SERIES, "unknown query parameter"),
        ([("StudyDate", "2024")], Level.STUDY, "dates are YYYYMMDD"),
        ([("StudyDate", "2024-01-05")], Level.STUDY, "dates are YYYYMMDD"),
        ([("StudyDate", "yesterday")], Level.STUDY, "dates are YYYYMMDD"),
        ([("StudyTime", "noon")], Level.STUDY, "is not a DICOM time"),
        ([("StudyDate", "20231345")], Level.STUDY, "20231345 is not a calendar date"),  # PS3.5 §6.2 DA
        ([("StudyDate", "20230229-20231231")], Level.STUDY, "20230229 is not a calendar date"),
        ([("StudyTime", "250000")], Level.STUDY, "250000 is not a time of day"),  # PS3.5 §6.2 TM
        ([("StudyTime", "1261")], Level.STUDY, "1261 is not a time of day"),
        ([("continuation", "x"), ("offset", "3")], Level.STUDY, "offset does not go with continuation"),
        ([("continuation", "not-a-token")], Level.STUDY, "not a token this server issued"),
        ([("StudyInstanceUID", "1.2.abc")], Level.STUDY, "not a valid UID"),
        ([("StudyInstanceUID", "1.2.3,1..4")], Level.STUDY, "'1..4' is not a valid UID"),
        ([("SeriesNumber", "two")], Level.SERIES, "is not a number"),
        ([("limit", "ten")], Level.STUDY, "limit='ten' is not a whole number"),
        ([("limit", "0")], Level.STUDY, "limit=0 is out of range"),
        ([("limit", "-5")], Level.STUDY, "out of range"),
        ([("offset", "-1")], Level.STUDY, "offset=-1 is out of range"),
        ([("fuzzymatching", "yes")], Level.STUDY, "expected true or false"),
        ([("PatientID", "x" * 10_001)], Level.STUDY, "the value has 10001 characters, at most 10000"),
        ([("PatientID", "a"), ("PatientID", "b")], Level.STUDY, "given twice with different values"),
    ],
)
def test_bad_queries_are_400_saying_what_is_wrong(params, level, message):
    with pytest.raises(BadRequest) as err:
        parse_query(params, level)
    assert err.value.status == 400
    assert message in err.value.message


def test_keywords_and_tags_are_both_accepted_and_repeats_with_the_same_value_are_fine():
    query = parse_query([("00100020", "P1"), ("PatientID", "P1"), ("0010,0010", "X")], Level.STUDY)
    assert query.predicate("PatientID").raw == "P1"
    assert query.predicate("PatientName").raw == "X"


def test_limit_above_the_maximum_is_lowered_with_a_warning():
    query = parse_query([("limit", "5000")], Level.STUDY, max_limit=1000)
    assert query.limit == 1000
    assert query.warnings == ("The limit 5000 exceeds the maximum of 1000; it was lowered to 1000",)
    assert parse_query([], Level.STUDY, default_limit=25).limit == 25


# -- person names --------------------------------------------------------------------------------------

PN_CASES = [
    # query, name, expected
    ("THOMPSON", "THOMPSON^ALEX", True),  # no ^: the family name
    ("THOMPSON", "THOMPSONS^ALEX", False),
    ("THOMPSON", "ALEX^THOMPSON", False),
    ("thompson", "Thompson^Alex", True),  # case-insensitive
    ("muller", "MÜLLER^RENÉ", True),  # accent-insensitive
    ("Müller^rene", "MULLER^RENE", True),
    ("STRASSE", "Straße^Anna", True),
    ("SIIM^Joe", "SIIM^JOE", True),  # each given component at its position
    ("SIIM^Joe", "SIIM^JOE^M^DR", True),  # components left out match anything
    ("SIIM^Joe", "SIIM^JOHN", False),
    ("SIIM^Joe", "JOE^SIIM", False),
    ("SIIM^Joe", "SIIM", False),
    ("^JOE", "SIIM^JOE", True),  # an empty component matches anything
    ("SIIM^^DR", "SIIM^JOE^DR", True),
    ("SIIM*", "SIIM^JOE", True),  # wildcard across the whole name
    ("SIIM*", "SIIMON^X", True),
    ("SIIM*", "ASIIM^JOE", False),
    ("SIIM^*", "SIIM", True),
    ("*JOE*", "SIIM^JOE", True),
    ("*JOE*", "JOE^SMITH", True),
    ("*JOE*", "SIIM^JANE", False),
    ("?IIM^JOE", "SIIM^JOE", True),
    ("SIIM^J?E", "SIIM^JOE", True),
    ("SIIM^J?E", "SIIM^JOHN", False),
    ("  siim  ^  joe ", "SIIM^JOE", True),  # components are trimmed
    ("SIIM", "SIIM^JOE=シイム^ジョー", True),  # ideographic groups are not matched
]


@pytest.mark.parametrize("query, name, expected", PN_CASES)
def test_person_name_matching(query, name, expected):
    assert study_matches(pn(name), PatientName=query) is expected


@pytest.mark.parametrize(
    "query, name, expected",
    [
        ("joe siim", "SIIM^JOE", True),  # every word matches the start of some word
        ("jo", "SIIM^JOE", True),
        ("si jo", "SIIM^JOE", True),
        ("ane", "SIIM^JANE", False),
        ("joe smith", "SIIM^JOE", False),
        ("rene", "MÜLLER^RENÉ", True),
    ],
)
def test_fuzzy_person_name_matching(query, name, expected):
    assert study_matches(pn(name), PatientName=query, fuzzymatching="true") is expected


def test_fuzzy_words_in_any_order_need_fuzzymatching():
    assert not study_matches(pn("SIIM^JOE"), PatientName="joe siim")
    assert not study_matches(pn("SIIM^JOE"), PatientName="joe siim", fuzzymatching="false")


def test_a_name_query_does_not_match_a_study_without_a_name():
    assert not study_matches({}, PatientName="SIIM")
    assert study_matches({}, PatientName="*")  # universal matching
    assert study_matches({}, PatientName="")


# -- other attributes --------------------------------------------------------------------------------


def test_other_strings_are_case_sensitive_with_wildcards():
    attrs = {"00081030": {"vr": "LO", "Value": ["Chest CT"]}}
    assert study_matches(attrs, StudyDescription="Chest CT")
    assert not study_matches(attrs, StudyDescription="chest ct")
    assert study_matches(attrs, StudyDescription="Chest*")
    assert study_matches(attrs, StudyDescription="*C?")
    assert not study_matches(attrs, StudyDescription="Chest")


DATE = {STUDY_DATE: {"vr": "DA", "Value": ["20240105"]}}


@pytest.mark.parametrize(
    "value, expected",
    [
        ("20240105", True),
        ("20240106", False),
        ("20240101-20240131", True),
        ("20240105-20240105", True),
        ("20240106-20240131", False),
        ("-20240105", True),
        ("-20240104", False),
        ("20240105-", True),
        ("20240106-", False),
    ],
)
def test_date_ranges_are_inclusive_and_may_be_open(value, expected):
    assert study_matches(DATE, StudyDate=value) is expected


TIME = {STUDY_TIME: {"vr": "TM", "Value": ["072730.5"]}}


@pytest.mark.parametrize(
    "value, expected",
    [
        ("070000-080000", True),
        ("0700-0800", True),  # short times are padded: 07:00:00 to 08:00:00
        ("07:00-08:00", True),
        ("073000-", False),
        ("-072730", False),  # 07:27:30.5 is after 07:27:30
        ("-072731", True),
        ("072730.5", True),
        ("072730", False),
    ],
)
def test_time_ranges(value, expected):
    assert study_matches(TIME, StudyTime=value) is expected


def test_uid_lists_with_commas_or_backslashes():
    attrs = {"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}
    assert study_matches(attrs, StudyInstanceUID="1.2.3")
    assert study_matches(attrs, StudyInstanceUID="9.9,1.2.3")
    assert study_matches(attrs, StudyInstanceUID="9.9\\1.2.3")
    assert not study_matches(attrs, StudyInstanceUID="1.2.30,1.2")


def test_modalities_in_study_lists_match_any_modality_of_the_study():
    attrs = {MODALITIES: {"vr": "CS", "Value": ["CT", "MR"]}}
    assert study_matches(attrs, ModalitiesInStudy="MR")
    assert study_matches(attrs, ModalitiesInStudy="PT,CT")
    assert study_matches(attrs, ModalitiesInStudy="PT\\MR")
    assert not study_matches(attrs, ModalitiesInStudy="PT,US")
    assert not study_matches(attrs, ModalitiesInStudy="ct")  # code strings are case-sensitive


def test_numbers_match_by_value():
    attrs = {"00200011": {"vr": "IS", "Value": [2]}}
    assert matches(Level.SERIES, attrs, SeriesNumber="2")
    assert matches(Level.SERIES, attrs, SeriesNumber="2.0")
    assert matches(Level.SERIES, attrs, SeriesNumber="02")
    assert not matches(Level.SERIES, attrs, SeriesNumber="3")


def test_instance_level_searches_series_attributes_too():
    query = parse_query([("Modality", "CT"), ("InstanceNumber", "1")], Level.INSTANCE)
    assert query.matches({"00080060": {"vr": "CS", "Value": ["CT"]}, "00200013": {"vr": "IS", "Value": [1]}})
    assert not query.matches({"00080060": {"vr": "CS", "Value": ["MR"]}, "00200013": {"vr": "IS", "Value": [1]}})


def test_all_predicates_must_match():
    attrs = {**pn("SIIM^JOE"), **DATE}
    assert study_matches(attrs, PatientName="SIIM", StudyDate="20240101-")
    assert not study_matches(attrs, PatientName="SIIM", StudyDate="-20231231")


# -- results: which attributes come back -------------------------------------------------------------------


@pytest.fixture(scope="module")
def summary():
    inst = make_instance("ct", PatientName="SIIM^JOE", StudyDescription="Chest", InstitutionName="Hospital")
    record = build_record(parse_part10(inst.data), inst.data)
    return StudySummary(record.study_uid, record.study, ("CT", "MR"), 2, 5)


def test_study_result_has_defaults_aggregates_and_an_absolute_retrieve_url(summary):
    result = study_result(summary, parse_query([], Level.STUDY), "https://h.example/prod")
    assert result["00081190"] == {"vr": "UR", "Value": [f"https://h.example/prod/studies/{summary.study_uid}"]}
    assert result[MODALITIES] == {"vr": "CS", "Value": ["CT", "MR"]}
    assert result["00201206"] == {"vr": "IS", "Value": [2]}  # NumberOfStudyRelatedSeries
    assert result["00201208"] == {"vr": "IS", "Value": [5]}  # NumberOfStudyRelatedInstances
    assert result["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "SIIM^JOE"}]}
    assert "00081030" not in result  # StudyDescription is not a default attribute
    assert "00080080" not in result  # InstitutionName
    assert list(result) == sorted(result)


@pytest.mark.parametrize("field", ["StudyDescription", "00081030", "StudyDescription,InstitutionName"])
def test_includefield_adds_attributes(summary, field):
    result = study_result(summary, parse_query([("includefield", field)], Level.STUDY), "http://x")
    assert result["00081030"] == {"vr": "LO", "Value": ["Chest"]}
    assert ("00080080" in result) is ("InstitutionName" in field)


def test_includefield_all_returns_every_stored_attribute(summary):
    result = study_result(summary, parse_query([("includefield", "all")], Level.STUDY), "http://x")
    assert set(summary.attrs) <= set(result)


def test_matching_keys_are_returned_even_when_not_default(summary):
    result = study_result(summary, parse_query([("StudyDescription", "Ch*")], Level.STUDY), "http://x")
    assert result["00081030"] == {"vr": "LO", "Value": ["Chest"]}


def test_series_result_has_its_instance_count_and_url():
    series = SeriesSummary("1.2", "1.2.3", {"00080060": {"vr": "CS", "Value": ["CT"]}}, 7)
    result = series_result(series, parse_query([], Level.SERIES), "http://x")
    assert result["00201209"] == {"vr": "IS", "Value": [7]}
    assert result["00081190"]["Value"] == ["http://x/studies/1.2/series/1.2.3"]


# -- paging ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "limit, offset, expected, more",
    [
        (2, 0, [0, 1], True),
        (2, 2, [2, 3], True),
        (2, 4, [4], False),
        (2, 3, [3, 4], False),
        (5, 0, [0, 1, 2, 3, 4], False),
        (10, 0, [0, 1, 2, 3, 4], False),
        (3, 9, [], False),
    ],
)
def test_page_applies_offset_and_limit_and_says_whether_more_exist(limit, offset, expected, more):
    query = parse_query([("limit", str(limit)), ("offset", str(offset))], Level.STUDY)
    assert page(list(range(5)), query) == (expected, more)


# -- sequence matching (PS3.4 C.2.2.2.6; PS3.18 Table 6.7.1-1 lists it at the series level) -----------

REQUEST = {
    "00400275": {
        "vr": "SQ",
        "Value": [
            {"00400009": {"vr": "SH", "Value": ["SPS-1"]}, "00401001": {"vr": "SH", "Value": ["RP-7"]}},
            {"00400009": {"vr": "SH", "Value": ["SPS-2"]}},
        ],
    }
}


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("RequestAttributesSequence.ScheduledProcedureStepID", "SPS-2", True),  # any item matches
        ("RequestAttributesSequence.ScheduledProcedureStepID", "SPS-*", True),  # wildcards inside
        ("RequestAttributesSequence.RequestedProcedureID", "RP-7", True),
        ("00400275.00401001", "RP-7", True),  # tags work as keywords do
        ("RequestAttributesSequence.RequestedProcedureID", "RP-8", False),
        ("RequestAttributesSequence.ScheduledProcedureStepID", "SPS-3", False),
    ],
)
def test_sequence_matching_finds_a_series_when_some_item_matches(key, value, expected):
    assert matches(Level.SERIES, REQUEST, **{key: value}) is expected
    assert matches(Level.SERIES, {}, **{key: value}) is False  # no sequence: no match


def test_a_sequence_key_returns_the_sequence_and_an_empty_one_asks_for_it():
    query = parse_query([("RequestAttributesSequence.ScheduledProcedureStepID", "SPS-1")], Level.SERIES)
    assert query.wants("00400275")
    universal = parse_query([("RequestAttributesSequence", "")], Level.SERIES)
    assert universal.predicates == () and universal.wants("00400275")


# -- combined date and time (PS3.4 C.2.2.2.5.1) -------------------------------------------------------


def when(date, time=None):
    attrs = {STUDY_DATE: {"vr": "DA", "Value": [date]}}
    if time is not None:
        attrs[STUDY_TIME] = {"vr": "TM", "Value": [time]}
    return attrs


@pytest.mark.parametrize(
    "date, time, expected",
    [
        ("20230101", "130000", True),  # after noon on the first day
        ("20230101", "110000", False),  # before noon on the first day
        ("20230103", "020000", True),  # any time on a middle day (each range alone would refuse it)
        ("20230105", "075959", True),
        ("20230105", "090000", False),  # after 8 a.m. on the last day
        ("20230106", "010000", False),
        ("20230101", None, False),  # midnight: before noon
    ],
)
def test_study_date_and_time_ranges_combine_into_one_date_time_range(date, time, expected):
    params = {"StudyDate": "20230101-20230105", "StudyTime": "120000-080000"}
    assert study_matches(when(date, time), **params) is expected


def test_combined_ranges_may_be_open_and_need_a_date():
    assert study_matches(when("20230101", "130000"), StudyDate="20230101-", StudyTime="120000-")
    assert not study_matches(when("20230101", "110000"), StudyDate="20230101-", StudyTime="120000-")
    assert study_matches(when("19990101", "235959"), StudyDate="-20230105", StudyTime="-080000")
    assert not study_matches({STUDY_TIME: {"vr": "TM", "Value": ["130000"]}}, StudyDate="-20230105", StudyTime="-1")


def test_a_date_range_with_a_single_time_matches_each_separately():
    # Only two ranges combine; a range and a single value are two independent conditions.
    assert study_matches(when("20230103", "120000"), StudyDate="20230101-20230105", StudyTime="120000")
    assert not study_matches(when("20230103", "130000"), StudyDate="20230101-20230105", StudyTime="120000")


# -- person names in every component group (PS3.5 §6.2.1) ----------------------------------------------


def test_a_name_matches_by_its_ideographic_and_phonetic_groups_too():
    attrs = {PATIENT_NAME: {"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎",
                                                   "Phonetic": "やまだ^たろう"}]}}  # fmt: skip
    assert study_matches(attrs, PatientName="山田*")
    assert study_matches(attrs, PatientName="山田^太郎")
    assert study_matches(attrs, PatientName="やまだ")
    assert study_matches(attrs, PatientName="YAMADA")
    assert not study_matches(attrs, PatientName="山本*")


# -- wildcards (PS3.4 C.2.2.2.4) ------------------------------------------------------------------------


def test_wildcards_agree_with_a_regular_expression_on_every_small_case():
    import itertools
    import re

    from dicomweb_server.search.query import wildcard_match

    for n in range(5):
        for pattern in map("".join, itertools.product("ab*?", repeat=n)):
            regex = re.compile("".join(".*" if c == "*" else "." if c == "?" else c for c in pattern), re.DOTALL)
            for m in range(5):
                for text in map("".join, itertools.product("ab", repeat=m)):
                    assert wildcard_match(pattern, text) is bool(regex.fullmatch(text)), (pattern, text)


def test_a_pattern_of_many_stars_on_a_near_miss_answers_instead_of_hanging():
    """``*a*a…*b`` against ``aaa…`` backtracks exponentially as a regular expression; the matcher
    answers (the alarm only turns a regression into a failure instead of a hung suite)."""
    import signal

    def hung(*_):  # type: ignore[no-untyped-def]
        raise AssertionError("wildcard matching did not finish")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        attrs = {"00081030": {"vr": "LO", "Value": ["a" * 64]}}
        assert not study_matches(attrs, StudyDescription="*a" * 30 + "b")
        assert study_matches(attrs, StudyDescription="*a" * 30 + "*")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_dotted_dates_combine_with_times_too():
    attrs = when("20230103", "100000")
    assert study_matches(attrs, StudyDate="2023.01.01-2023.01.05", StudyTime="120000-080000")


def test_a_private_or_unknown_tag_is_ignored_with_a_warning():
    query = parse_query([("00091010", "x")], Level.STUDY)
    assert query.predicates == () and any("00091010" in w for w in query.warnings)
