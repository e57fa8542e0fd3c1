"""How one instance fails to be stored (FailureReason codes and the exceptions that carry them)."""

from __future__ import annotations

from enum import Enum

from ..errors import StorageError


class Reason(int, Enum):
    """FailureReason codes (PS3.18 §10.5.3, Table 10.5.3-3; PS3.7 Annex C)."""

    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    OUT_OF_RESOURCES = 0xA700
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
    #: Study Instance UID of the instance differs from the one in the request URL.
    STUDY_UID_MISMATCH = 0xA901


class StorageFailed(Exception):
    """A valid instance could not be stored because S3 or DynamoDB failed (``cause``); nothing of
    it is left behind (or what is left is this writer's own object, for the repair command)."""

    def __init__(self, cause: StorageError, sop_class_uid: str, sop_uid: str) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.sop_class_uid = sop_class_uid
        self.sop_uid = sop_uid


class InvalidInstance(Exception):
    """One instance cannot be stored; STOW reports it in FailedSOPSequence."""

    def __init__(self, reason: Reason, message: str, sop_class_uid: str = "", sop_uid: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.sop_class_uid = sop_class_uid
        self.sop_uid = sop_uid

    def __reduce__(self) -> tuple[type[InvalidInstance], tuple[Reason, str, str, str]]:
        """Pickled with every field (``store.parallel`` returns refusals from worker processes)."""
        return type(self), (self.reason, self.message, self.sop_class_uid, self.sop_uid)
