"""UID validation at the edge (PS3.5 §9.1): an invalid UID is a 400 with a message, never a storage call."""

import pytest

from dicomweb_server.errors import BadRequest
from dicomweb_server.uids import is_valid_uid, validate_uid

VALID = [
    "1",
    "1.2.840.10008.5.1.4.1.1.2",
    "2.25.329800735698586629295641978511506172918",
    "1.02.3",  # leading zeros are tolerated: real archives contain them
    "1." + "2" * 62,  # exactly 64 characters
]
INVALID = {
    "letters": "1.2.abc",
    "hex": "1.2.3f",
    "double dot": "1..2",
    "leading dot": ".1.2",
    "trailing dot": "1.2.",
    "path traversal": "..",
    "slash": "1.2/3",
    "space": "1.2 3",
    "trailing newline": "1.2.3\n",
    "trailing space": "1.2.3 ",
    "non-ASCII digits": "١.٢",
    "65 characters": "1." + "2" * 63,
}


@pytest.mark.parametrize("uid", VALID)
def test_valid_uids_are_accepted(uid):
    assert is_valid_uid(uid)
    assert validate_uid(uid) == uid


@pytest.mark.parametrize("uid", INVALID.values(), ids=INVALID.keys())
def test_invalid_uids_are_a_400_naming_the_value(uid):
    assert not is_valid_uid(uid)
    with pytest.raises(BadRequest) as err:
        validate_uid(uid, "Study Instance UID")
    assert err.value.status == 400
    assert "Study Instance UID" in err.value.message


def test_empty_uid_is_reported_as_empty():
    assert not is_valid_uid("")
    with pytest.raises(BadRequest, match="is empty"):
        validate_uid("", "SOP Instance UID")


def test_overlong_uid_message_gives_the_length_and_the_limit():
    with pytest.raises(BadRequest, match="65 characters long; a UID has at most 64"):
        validate_uid("1." + "2" * 63)
