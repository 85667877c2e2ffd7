"""DIMSE command sets (PS3.7 annex E): group 0000, implicit VR little endian."""

from __future__ import annotations

import pytest

from dissectors.dicom import DicomError, DimseCommand, Reason, parse_command
from dissectors.dicom.constants import CommandField, StatusClass, status_class

from . import vectors as v

VERIFICATION = "1.2.840.10008.1.1"

CASES: dict[str, tuple[bytes, DimseCommand]] = {
    "C-ECHO-RQ (DCMTK)": (
        v.ECHO_RQ_COMMAND,
        DimseCommand(0x0030, message_id=1, affected_sop_class_uid=VERIFICATION,
                     command_data_set_type=0x0101),
    ),
    "C-ECHO-RSP (DCMTK)": (
        v.ECHO_RSP_COMMAND,
        DimseCommand(0x8030, message_id_being_responded_to=1,
                     affected_sop_class_uid=VERIFICATION, command_data_set_type=0x0101,
                     status=0x0000),
    ),
    "C-STORE-RQ": (
        v.C_STORE_RQ,
        DimseCommand(0x0001, message_id=7, affected_sop_class_uid=v.CT_IMAGE_STORAGE,
                     affected_sop_instance_uid=v.SOP_INSTANCE, priority=0,
                     command_data_set_type=0x0000),
    ),
    "C-STORE-RQ (move originator)": (
        v.C_STORE_RQ_MOVE,
        DimseCommand(0x0001, message_id=8, affected_sop_class_uid=v.CT_IMAGE_STORAGE,
                     affected_sop_instance_uid=v.SOP_INSTANCE, priority=2,
                     command_data_set_type=0x0000, move_originator_ae_title="MOVESCU",
                     move_originator_message_id=3),
    ),
    "C-STORE-RSP": (
        v.C_STORE_RSP,
        DimseCommand(0x8001, message_id_being_responded_to=7,
                     affected_sop_class_uid=v.CT_IMAGE_STORAGE,
                     affected_sop_instance_uid=v.SOP_INSTANCE, command_data_set_type=0x0101,
                     status=0x0000),
    ),
    "C-STORE-RSP warning": (
        v.C_STORE_RSP_WARNING,
        DimseCommand(0x8001, message_id_being_responded_to=7,
                     affected_sop_class_uid=v.CT_IMAGE_STORAGE,
                     affected_sop_instance_uid=v.SOP_INSTANCE, command_data_set_type=0x0101,
                     status=0xB000),
    ),
    "C-STORE-RSP failure + error comment": (
        v.C_STORE_RSP_FAILURE,
        DimseCommand(0x8001, message_id_being_responded_to=7,
                     affected_sop_class_uid=v.CT_IMAGE_STORAGE,
                     affected_sop_instance_uid=v.SOP_INSTANCE, command_data_set_type=0x0101,
                     status=0xA700, error_comment_length=34),
    ),
    "C-FIND-RQ": (
        v.C_FIND_RQ,
        DimseCommand(0x0020, message_id=3, affected_sop_class_uid=v.STUDY_FIND, priority=1,
                     command_data_set_type=0x0000),
    ),
    "C-FIND-RSP pending": (
        v.C_FIND_RSP_PENDING,
        DimseCommand(0x8020, message_id_being_responded_to=3,
                     affected_sop_class_uid=v.STUDY_FIND, command_data_set_type=0x0000,
                     status=0xFF00),
    ),
    "C-FIND-RSP": (
        v.C_FIND_RSP,
        DimseCommand(0x8020, message_id_being_responded_to=3,
                     affected_sop_class_uid=v.STUDY_FIND, command_data_set_type=0x0101,
                     status=0x0000),
    ),
    "C-MOVE-RQ": (
        v.C_MOVE_RQ,
        DimseCommand(0x0021, message_id=5, affected_sop_class_uid=v.STUDY_MOVE, priority=0,
                     command_data_set_type=0x0000, move_destination="STORESCP"),
    ),
    "C-MOVE-RSP pending": (
        v.C_MOVE_RSP,
        DimseCommand(0x8021, message_id_being_responded_to=5,
                     affected_sop_class_uid=v.STUDY_MOVE, command_data_set_type=0x0101,
                     status=0xFF00, remaining_suboperations=2, completed_suboperations=1,
                     failed_suboperations=0, warning_suboperations=0),
    ),
    "C-MOVE-RSP cancel": (
        v.C_MOVE_RSP_CANCEL,
        DimseCommand(0x8021, message_id_being_responded_to=5,
                     affected_sop_class_uid=v.STUDY_MOVE, command_data_set_type=0x0101,
                     status=0xFE00, remaining_suboperations=0, completed_suboperations=1,
                     failed_suboperations=0, warning_suboperations=0),
    ),
    "C-GET-RQ": (
        v.C_GET_RQ,
        DimseCommand(0x0010, message_id=9, affected_sop_class_uid=v.STUDY_GET, priority=0,
                     command_data_set_type=0x0000),
    ),
    "C-GET-RSP failure": (
        v.C_GET_RSP,
        DimseCommand(0x8010, message_id_being_responded_to=9,
                     affected_sop_class_uid=v.STUDY_GET, command_data_set_type=0x0101,
                     status=0xC000, remaining_suboperations=0, completed_suboperations=3,
                     failed_suboperations=1, warning_suboperations=2),
    ),
    "C-CANCEL-RQ": (
        v.C_CANCEL_RQ,
        DimseCommand(0x0FFF, message_id_being_responded_to=3, command_data_set_type=0x0101),
    ),
    "N-EVENT-REPORT-RQ": (
        v.N_EVENT_REPORT_RQ,
        DimseCommand(0x0100, message_id=11, affected_sop_class_uid=v.STORAGE_COMMITMENT,
                     affected_sop_instance_uid=v.STORAGE_COMMITMENT_INSTANCE,
                     command_data_set_type=0x0000, event_type_id=1),
    ),
    "N-EVENT-REPORT-RSP": (
        v.N_EVENT_REPORT_RSP,
        DimseCommand(0x8100, message_id_being_responded_to=11,
                     affected_sop_class_uid=v.STORAGE_COMMITMENT,
                     affected_sop_instance_uid=v.STORAGE_COMMITMENT_INSTANCE,
                     command_data_set_type=0x0101, status=0, event_type_id=1),
    ),
    "N-GET-RQ": (
        v.N_GET_RQ,
        DimseCommand(0x0110, message_id=12, requested_sop_class_uid=v.PRINTER,
                     requested_sop_instance_uid=v.PRINTER_INSTANCE,
                     command_data_set_type=0x0101, attribute_identifiers=(0x21100010,)),
    ),
    "N-GET-RSP": (
        v.N_GET_RSP,
        DimseCommand(0x8110, message_id_being_responded_to=12,
                     affected_sop_class_uid=v.PRINTER,
                     affected_sop_instance_uid=v.PRINTER_INSTANCE,
                     command_data_set_type=0x0000, status=0),
    ),
    "N-SET-RQ": (
        v.N_SET_RQ,
        DimseCommand(0x0120, message_id=13, requested_sop_class_uid=v.MPPS,
                     requested_sop_instance_uid=v.SOP_INSTANCE, command_data_set_type=0x0000),
    ),
    "N-SET-RSP": (
        v.N_SET_RSP,
        DimseCommand(0x8120, message_id_being_responded_to=13, affected_sop_class_uid=v.MPPS,
                     affected_sop_instance_uid=v.SOP_INSTANCE, command_data_set_type=0x0101,
                     status=0),
    ),
    "N-ACTION-RQ": (
        v.N_ACTION_RQ,
        DimseCommand(0x0130, message_id=14, requested_sop_class_uid=v.STORAGE_COMMITMENT,
                     requested_sop_instance_uid=v.STORAGE_COMMITMENT_INSTANCE,
                     command_data_set_type=0x0000, action_type_id=1),
    ),
    "N-ACTION-RSP": (
        v.N_ACTION_RSP,
        DimseCommand(0x8130, message_id_being_responded_to=14,
                     affected_sop_class_uid=v.STORAGE_COMMITMENT,
                     affected_sop_instance_uid=v.STORAGE_COMMITMENT_INSTANCE,
                     command_data_set_type=0x0101, status=0, action_type_id=1),
    ),
    "N-CREATE-RQ": (
        v.N_CREATE_RQ,
        DimseCommand(0x0140, message_id=15, affected_sop_class_uid=v.MPPS,
                     affected_sop_instance_uid=v.SOP_INSTANCE, command_data_set_type=0x0000),
    ),
    "N-CREATE-RSP": (
        v.N_CREATE_RSP,
        DimseCommand(0x8140, message_id_being_responded_to=15, affected_sop_class_uid=v.MPPS,
                     affected_sop_instance_uid=v.SOP_INSTANCE, command_data_set_type=0x0101,
                     status=0),
    ),
    "N-DELETE-RQ": (
        v.N_DELETE_RQ,
        DimseCommand(0x0150, message_id=16, requested_sop_class_uid=v.FILM_SESSION,
                     requested_sop_instance_uid=v.SOP_INSTANCE, command_data_set_type=0x0101),
    ),
    "N-DELETE-RSP": (
        v.N_DELETE_RSP,
        DimseCommand(0x8150, message_id_being_responded_to=16,
                     affected_sop_class_uid=v.FILM_SESSION,
                     affected_sop_instance_uid=v.SOP_INSTANCE, command_data_set_type=0x0101,
                     status=0),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_command_decodes(name: str) -> None:
    data, expected = CASES[name]
    assert parse_command(data) == expected


@pytest.mark.parametrize("name", list(CASES))
def test_command_name_and_direction(name: str) -> None:
    command = parse_command(CASES[name][0])
    assert command.name == name.split(" ")[0]
    assert command.is_response == name.split(" ")[0].endswith("-RSP")


def test_command_accepts_memoryview_and_bytearray() -> None:
    expected = CASES["C-ECHO-RQ (DCMTK)"][1]
    assert parse_command(memoryview(v.ECHO_RQ_COMMAND)) == expected
    assert parse_command(bytearray(v.ECHO_RQ_COMMAND)) == expected


def test_every_command_field_has_a_name() -> None:
    names = {c.label for c in CommandField}
    assert names >= {
        "C-STORE-RQ", "C-STORE-RSP", "C-GET-RQ", "C-GET-RSP", "C-FIND-RQ", "C-FIND-RSP",
        "C-MOVE-RQ", "C-MOVE-RSP", "C-ECHO-RQ", "C-ECHO-RSP", "N-EVENT-REPORT-RQ",
        "N-EVENT-REPORT-RSP", "N-GET-RQ", "N-GET-RSP", "N-SET-RQ", "N-SET-RSP",
        "N-ACTION-RQ", "N-ACTION-RSP", "N-CREATE-RQ", "N-CREATE-RSP", "N-DELETE-RQ",
        "N-DELETE-RSP", "C-CANCEL-RQ",
    }  # fmt: skip
    assert DimseCommand(0x0999).name == "UNKNOWN-0x0999"


@pytest.mark.parametrize(
    ("status", "klass"),
    [
        (0x0000, StatusClass.SUCCESS),
        (0xFF00, StatusClass.PENDING),
        (0xFF01, StatusClass.PENDING),
        (0xFE00, StatusClass.CANCEL),
        (0xB000, StatusClass.WARNING),
        (0xB007, StatusClass.WARNING),
        (0xBFFF, StatusClass.WARNING),
        (0x0001, StatusClass.WARNING),  # attribute list error (N- services)
        (0x0107, StatusClass.WARNING),  # attribute value out of range
        (0xA700, StatusClass.FAILURE),
        (0xA900, StatusClass.FAILURE),
        (0xC000, StatusClass.FAILURE),
        (0xCFFF, StatusClass.FAILURE),
        (0x0122, StatusClass.FAILURE),  # SOP class not supported
        (0x0110, StatusClass.FAILURE),  # processing failure
    ],
)
def test_status_class(status: int, klass: StatusClass) -> None:
    assert status_class(status) is klass


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("C-ECHO-RSP (DCMTK)", "success"),
        ("C-FIND-RSP pending", "pending"),
        ("C-STORE-RSP warning", "warning"),
        ("C-STORE-RSP failure + error comment", "failure"),
        ("C-GET-RSP failure", "failure"),
        ("C-MOVE-RSP cancel", "cancel"),
    ],
)
def test_status_class_of_responses(name: str, label: str) -> None:
    command = parse_command(CASES[name][0])
    assert command.status_class is not None
    assert command.status_class.label == label


def test_derived_properties() -> None:
    store = parse_command(v.C_STORE_RQ)
    assert store.has_data_set
    assert store.priority_name == "medium"
    assert store.sop_class_uid == v.CT_IMAGE_STORAGE
    assert store.status_class is None
    echo = parse_command(v.ECHO_RQ_COMMAND)
    assert not echo.has_data_set
    assert echo.priority_name is None
    n_get = parse_command(v.N_GET_RQ)
    assert n_get.sop_class_uid == v.PRINTER
    assert parse_command(v.C_FIND_RQ).priority_name == "high"
    assert parse_command(v.C_STORE_RQ_MOVE).priority_name == "low"


def test_error_comment_never_kept() -> None:
    command = parse_command(v.C_STORE_RSP_FAILURE)
    assert b"SYNTHETIC^CANARY out of resources" in v.C_STORE_RSP_FAILURE
    for text in (repr(command), str(command)):
        assert "CANARY" not in text
        assert "resources" not in text


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (v.CMD_TRUNCATED_HEADER, Reason.TRUNCATED),
        (v.ECHO_RQ_COMMAND[:5], Reason.TRUNCATED),
        (v.CMD_LENGTH_PAST_END, Reason.BAD_LENGTH),
        (v.ECHO_RQ_COMMAND[:-1], Reason.BAD_LENGTH),  # last value cut by one byte
        (v.CMD_OUTSIDE_GROUP, Reason.BAD_COMMAND),
        (v.CMD_NO_COMMAND_FIELD, Reason.BAD_COMMAND),
        (b"", Reason.BAD_COMMAND),
        (v.CMD_GROUP_LENGTH_SHORT, Reason.BAD_LENGTH),
    ],
    ids=["header-cut", "header-cut-5", "past-end", "value-cut", "outside-group",
         "no-command-field", "empty", "group-length-short"],
)  # fmt: skip
def test_malformed_command_raises(data: bytes, reason: Reason) -> None:
    with pytest.raises(DicomError) as info:
        parse_command(data)
    assert info.value.reason is reason


def test_data_set_element_in_command_is_bad_command() -> None:
    # A data set (group 0010) handed to parse_command is not a command.
    with pytest.raises(DicomError) as info:
        parse_command(v.h("10001000100000005359") + b"NTHETIC^CANARY")
    assert info.value.reason is Reason.BAD_COMMAND
    assert "CANARY" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "anomalies", "field", "value"),
    [
        (v.CMD_GROUP_LENGTH_WRONG, (Reason.BAD_LENGTH,), "message_id", 1),
        (v.CMD_US_WRONG_LENGTH, (Reason.EXTRA_VALUES,), "message_id", 1),
        (v.CMD_BAD_UID, (Reason.BAD_VALUE,), "affected_sop_class_uid", "1.2.X"),
        (v.CMD_MOVE_DESTINATION_TOO_LONG, (Reason.BAD_VALUE,), "move_destination",
         "ABCDEFGHIJKLMNOPQRST"),
    ],
)  # fmt: skip
def test_command_anomalies_not_fatal(
    data: bytes, anomalies: tuple[Reason, ...], field: str, value: object
) -> None:
    command = parse_command(data)
    assert command.anomalies == anomalies
    assert getattr(command, field) == value
