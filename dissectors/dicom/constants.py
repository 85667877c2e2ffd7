"""DICOM Upper Layer and DIMSE code points, named as in PS3.8 and PS3.7."""

from __future__ import annotations

from enum import IntEnum

APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"


class PDUType(IntEnum):
    """PDU types (PS3.8 section 9.3)."""

    A_ASSOCIATE_RQ = 0x01
    A_ASSOCIATE_AC = 0x02
    A_ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    A_RELEASE_RQ = 0x05
    A_RELEASE_RP = 0x06
    A_ABORT = 0x07

    @property
    def label(self) -> str:
        """The standard's name, e.g. ``A-ASSOCIATE-RQ``."""
        return self.name.replace("_", "-")


class ItemType(IntEnum):
    """Variable items of A-ASSOCIATE-RQ/AC (PS3.8 sections 9.3.2, 9.3.3)."""

    APPLICATION_CONTEXT = 0x10
    PRESENTATION_CONTEXT_RQ = 0x20
    PRESENTATION_CONTEXT_AC = 0x21
    ABSTRACT_SYNTAX = 0x30
    TRANSFER_SYNTAX = 0x40
    USER_INFORMATION = 0x50


class UserInfoType(IntEnum):
    """User information sub-items (PS3.8 annex D, PS3.7 annex D)."""

    MAXIMUM_LENGTH = 0x51
    IMPLEMENTATION_CLASS_UID = 0x52
    ASYNCHRONOUS_OPERATIONS_WINDOW = 0x53
    SCP_SCU_ROLE_SELECTION = 0x54
    IMPLEMENTATION_VERSION_NAME = 0x55
    SOP_CLASS_EXTENDED_NEGOTIATION = 0x56
    SOP_CLASS_COMMON_EXTENDED_NEGOTIATION = 0x57
    USER_IDENTITY_RQ = 0x58
    USER_IDENTITY_AC = 0x59


class PresentationContextResult(IntEnum):
    """Result/reason of a presentation context in an A-ASSOCIATE-AC."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


class RejectResult(IntEnum):
    """A-ASSOCIATE-RJ result."""

    REJECTED_PERMANENT = 1
    REJECTED_TRANSIENT = 2


class RejectSource(IntEnum):
    """A-ASSOCIATE-RJ source."""

    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


# Reject reasons depend on the source (PS3.8 table 9-21).
REJECT_REASONS: dict[int, dict[int, str]] = {
    1: {
        1: "no-reason-given",
        2: "application-context-name-not-supported",
        3: "calling-ae-title-not-recognized",
        7: "called-ae-title-not-recognized",
    },
    2: {1: "no-reason-given", 2: "protocol-version-not-supported"},
    3: {1: "temporary-congestion", 2: "local-limit-exceeded"},
}

REJECT_RESULT_NAMES = {1: "rejected-permanent", 2: "rejected-transient"}
REJECT_SOURCE_NAMES = {
    1: "service-user",
    2: "service-provider-acse",
    3: "service-provider-presentation",
}


class AbortSource(IntEnum):
    """A-ABORT source (PS3.8 table 9-26)."""

    SERVICE_USER = 0
    RESERVED = 1
    SERVICE_PROVIDER = 2


ABORT_SOURCE_NAMES = {0: "service-user", 1: "reserved", 2: "service-provider"}
ABORT_REASON_NAMES = {
    0: "reason-not-specified",
    1: "unrecognized-pdu",
    2: "unexpected-pdu",
    4: "unrecognized-pdu-parameter",
    5: "unexpected-pdu-parameter",
    6: "invalid-pdu-parameter-value",
}


class UserIdentityType(IntEnum):
    """User identity type in sub-item 0x58."""

    USERNAME = 1
    USERNAME_AND_PASSCODE = 2
    KERBEROS = 3
    SAML = 4
    JWT = 5


USER_IDENTITY_NAMES = {
    1: "username",
    2: "username-and-passcode",
    3: "kerberos",
    4: "saml",
    5: "jwt",
}


class CommandField(IntEnum):
    """DIMSE Command Field (0000,0100) values (PS3.7 annex E)."""

    C_STORE_RQ = 0x0001
    C_STORE_RSP = 0x8001
    C_GET_RQ = 0x0010
    C_GET_RSP = 0x8010
    C_FIND_RQ = 0x0020
    C_FIND_RSP = 0x8020
    C_MOVE_RQ = 0x0021
    C_MOVE_RSP = 0x8021
    C_ECHO_RQ = 0x0030
    C_ECHO_RSP = 0x8030
    N_EVENT_REPORT_RQ = 0x0100
    N_EVENT_REPORT_RSP = 0x8100
    N_GET_RQ = 0x0110
    N_GET_RSP = 0x8110
    N_SET_RQ = 0x0120
    N_SET_RSP = 0x8120
    N_ACTION_RQ = 0x0130
    N_ACTION_RSP = 0x8130
    N_CREATE_RQ = 0x0140
    N_CREATE_RSP = 0x8140
    N_DELETE_RQ = 0x0150
    N_DELETE_RSP = 0x8150
    C_CANCEL_RQ = 0x0FFF

    @property
    def label(self) -> str:
        """The standard's name, e.g. ``C-STORE-RQ``."""
        return self.name.replace("_", "-")


COMMAND_NAMES: dict[int, str] = {c.value: c.label for c in CommandField}
RESPONSE_BIT = 0x8000
NO_DATA_SET = 0x0101


class CommandTag(IntEnum):
    """Command set elements (group 0000) the dissector decodes."""

    COMMAND_GROUP_LENGTH = 0x0000
    AFFECTED_SOP_CLASS_UID = 0x0002
    REQUESTED_SOP_CLASS_UID = 0x0003
    COMMAND_FIELD = 0x0100
    MESSAGE_ID = 0x0110
    MESSAGE_ID_BEING_RESPONDED_TO = 0x0120
    MOVE_DESTINATION = 0x0600
    PRIORITY = 0x0700
    COMMAND_DATA_SET_TYPE = 0x0800
    STATUS = 0x0900
    OFFENDING_ELEMENT = 0x0901
    ERROR_COMMENT = 0x0902
    ERROR_ID = 0x0903
    AFFECTED_SOP_INSTANCE_UID = 0x1000
    REQUESTED_SOP_INSTANCE_UID = 0x1001
    EVENT_TYPE_ID = 0x1002
    ATTRIBUTE_IDENTIFIER_LIST = 0x1005
    ACTION_TYPE_ID = 0x1008
    NUMBER_OF_REMAINING_SUBOPERATIONS = 0x1020
    NUMBER_OF_COMPLETED_SUBOPERATIONS = 0x1021
    NUMBER_OF_FAILED_SUBOPERATIONS = 0x1022
    NUMBER_OF_WARNING_SUBOPERATIONS = 0x1023
    MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE = 0x1030
    MOVE_ORIGINATOR_MESSAGE_ID = 0x1031


class StatusClass(IntEnum):
    """Class of a DIMSE status (PS3.7 annex C)."""

    SUCCESS = 0
    PENDING = 1
    WARNING = 2
    FAILURE = 3
    CANCEL = 4

    @property
    def label(self) -> str:
        """Lower-case name, used in records and metric labels."""
        return self.name.lower()


PRIORITY_NAMES = {0: "medium", 1: "high", 2: "low"}


def status_class(status: int) -> StatusClass:
    """Classify a DIMSE status value."""
    if status == 0x0000:
        return StatusClass.SUCCESS
    if status in (0xFF00, 0xFF01):
        return StatusClass.PENDING
    if status == 0xFE00:
        return StatusClass.CANCEL
    if 0xB000 <= status <= 0xBFFF or status in (0x0001, 0x0107, 0x0116):
        return StatusClass.WARNING
    return StatusClass.FAILURE
