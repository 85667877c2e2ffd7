"""Decode what the endpoints accept, report what the standard forbids (issue 14).

Each case is a byte vector that a lenient receiver (pynetdicom, DCMTK) acts on although
the standard forbids it: the session must decode what the receiver decodes, and report
the deviation as an anomaly from the closed set. Truncated and wrong-length variants
sit beside each case.
"""

from __future__ import annotations

import struct

import pytest

from dissectors.base import CloseReason
from dissectors.dicom import (
    DEFAULT_LIMITS,
    DicomError,
    DicomSession,
    Limits,
    Reason,
    parse_command,
    parse_pdu,
)
from dissectors.dicom.events import Anomaly, DimseMessage
from dissectors.dicom.items import ItemProblems, UserInformation, parse_user_information
from dissectors.dicom.pdu import AssociateAC, AssociateRQ, PDataTF, PresentationDataValue
from dissectors.dicom.plugin import DICOM
from dissectors.dicom.probe import MATCH_MIDSTREAM, probe
from dissectors.dicom.text import uid

from . import vectors as v
from .framing import (
    COMMAND,
    COMMAND_LAST,
    DATA_LAST,
    ORIGIN,
    PEER,
    Feeder,
    associate_as,
    bytewise,
    context_rq,
    pdata,
    pdv,
)

TS = 1700000000.5


def established() -> Feeder:
    """A session past DCMTK's RQ and AC (context 1 accepted)."""
    feeder = Feeder(DicomSession("associate-rq"))
    feeder.run([(ORIGIN, v.RQ_ECHO), (PEER, v.AC_ECHO)], TS)
    return feeder


def reasons(events: list[object]) -> list[Reason]:
    return [e.reason for e in events if isinstance(e, Anomaly)]


def commands(events: list[object]) -> list[str]:
    return [e.command.name for e in events if isinstance(e, DimseMessage)]


# ---- 1. reserved bits of the PDV message control header (PS3.8 E.2) ------------------------

# hand. DCMTK's C-ECHO-RQ P-DATA (PDU length 0x4a, PDV length 0x46, context 1) with the
# control header 0x03 (command, last) plus reserved bits: still a C-ECHO-RQ to pynetdicom.
RESERVED_CONTROLS = [0x07, 0x0B, 0x83, 0xFF, 0xFB]


def echo_rq_with_control(control: int) -> bytes:
    return v.PDATA_ECHO_RQ[:11] + bytes([control]) + v.PDATA_ECHO_RQ[12:]


@pytest.mark.parametrize("control", RESERVED_CONTROLS, ids=lambda c: f"0x{c:02x}")
def test_reserved_control_bits_keep_the_command(control: int) -> None:
    feeder = established()
    events = feeder.feed(ORIGIN, echo_rq_with_control(control), TS)
    assert commands(events) == ["C-ECHO-RQ"]
    assert reasons(events) == [Reason.RESERVED_BITS]
    anomaly = next(e for e in events if isinstance(e, Anomaly))
    assert anomaly.detail == f"PDV message control header 0x{control:02x}"
    assert feeder.session.state.anomalies == {"reserved-bits": 1}
    # And the association goes on: the answer is decoded as usual.
    assert commands(feeder.feed(PEER, v.PDATA_ECHO_RSP, TS)) == ["C-ECHO-RSP"]


def test_reserved_control_bits_any_split() -> None:
    whole = established().feed(ORIGIN, echo_rq_with_control(0xFF), TS)
    split = established()
    events = split.run(bytewise([(ORIGIN, echo_rq_with_control(0xFF))]), TS)
    assert events == whole


def test_reserved_control_bits_on_fragments_and_data_set() -> None:
    # A command in two fragments (0x05 = command, not last; 0x07 = command, last) and a
    # data set fragment 0xFE (data, last): one C-ECHO-RQ, one data set, three anomalies.
    cmd = v.ECHO_RQ_COMMAND
    stream = pdata(pdv(1, COMMAND | 0x04, cmd[:20]), pdv(1, COMMAND_LAST | 0x04, cmd[20:]))
    stream += pdata(pdv(1, DATA_LAST | 0xFC, b"\x00" * 8))
    feeder = established()
    events = feeder.feed(ORIGIN, stream, TS)
    assert commands(events) == ["C-ECHO-RQ"]
    assert reasons(events) == [Reason.RESERVED_BITS] * 3
    c = feeder.session.state.counters[ORIGIN]
    assert (c.command_fragments, c.data_set_fragments, c.data_sets) == (2, 1, 1)


def test_reserved_control_bits_truncated() -> None:
    # The PDU ends 10 bytes into the command: the reserved bits are reported, no command,
    # and the connection's end inside the PDU is truncated.
    feeder = established()
    events = feeder.feed(ORIGIN, echo_rq_with_control(0x07)[:22], TS)
    assert (commands(events), reasons(events)) == ([], [Reason.RESERVED_BITS])
    end = feeder.session.close(CloseReason.CONNECTION_CLOSED, TS)
    assert reasons(end) == [Reason.TRUNCATED]


def test_reserved_control_bits_wrong_length() -> None:
    # PDV length 0xff, longer than its PDU: framing is lost there, whatever the control
    # bits; the next PDU is decoded again.
    bad = v.PDATA_ECHO_RQ[:6] + v.h("000000ff0107") + v.ECHO_RQ_COMMAND
    feeder = established()
    events = feeder.run([(ORIGIN, bad), (ORIGIN, echo_rq_with_control(0x07))], TS)
    assert reasons(events) == [Reason.BAD_LENGTH, Reason.RESERVED_BITS]
    assert commands(events) == ["C-ECHO-RQ"]


def test_parse_pdata_reserved_bits() -> None:
    # hand. P-DATA-TF, one PDV of 4 bytes, context 1, control 0x04: a data fragment, not
    # last, with reserved bit 2 set.
    pdu, size = parse_pdu(v.PDATA_BAD_CONTROL)
    assert size == len(v.PDATA_BAD_CONTROL)
    assert pdu == PDataTF((PresentationDataValue(1, False, False, 2),), (Reason.RESERVED_BITS,))


def test_midstream_probe_admits_reserved_bits() -> None:
    assert probe(echo_rq_with_control(0x07)) == MATCH_MIDSTREAM
    assert probe(echo_rq_with_control(0xFD)) == MATCH_MIDSTREAM
    # Bit 0 clear is a data set fragment, however the other bits are set: not a command.
    assert probe(echo_rq_with_control(0xFE)).verdict is not MATCH_MIDSTREAM.verdict


def test_midstream_session_with_reserved_bits() -> None:
    session = DICOM.new_session(probe(echo_rq_with_control(0x07)).detected_by)
    events = Feeder(session).feed(ORIGIN, echo_rq_with_control(0x07), TS)
    assert commands(events) == ["C-ECHO-RQ"]
    assert reasons(events) == [Reason.RESERVED_BITS]


def _bpf_admits(payload: bytes) -> bool:
    """Whether DICOM's BPF head test, compiled by libpcap, admits an IPv4 segment."""
    import dpkt
    import pcapy

    def byte_at(k: int, width: int) -> str:
        return f"tcp[((tcp[12:1] & 0xf0) >> 2) + {k}{'' if width == 1 else f':{width}'}]"

    length = "(ip[2:2] - ((ip[0:1] & 0x0f) << 2) - ((tcp[12:1] & 0xf0) >> 2))"
    program = pcapy.compile(1, 65535, f"ip and tcp and {DICOM.bpf_head(byte_at, length)}", 1, 0)
    tcp = dpkt.tcp.TCP(sport=50001, dport=33333, seq=1, ack=1, flags=0x18, data=payload)
    ip = dpkt.ip.IP(src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02", p=6, data=tcp)
    frame = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip)
    return bool(program.filter(bytes(frame)))


@pytest.mark.parametrize("control", [0x01, 0x03, *RESERVED_CONTROLS], ids=lambda c: f"0x{c:02x}")
def test_bpf_head_admits_commands_with_reserved_bits(control: int) -> None:
    # The offline prefilter must find a mid-stream association that sets the bits.
    assert _bpf_admits(echo_rq_with_control(control))


@pytest.mark.parametrize("control", [0x00, 0x02, 0xFE])
def test_bpf_head_drops_data_set_fragments(control: int) -> None:
    assert not _bpf_admits(echo_rq_with_control(control))


# ---- 2. multi-valued sub-operation counts (and other US elements) -----------------------


def element(tag: int, value: bytes) -> bytes:
    """A command element, implicit VR little endian: (0000,tag), length (4), value."""
    return struct.pack("<HHI", 0, tag, len(value)) + value


def command(*elements: bytes) -> bytes:
    """A command set with its group length (0000,0000) first."""
    body = b"".join(elements)
    return element(0x0000, struct.pack("<I", len(body))) + body


def us(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}H", *values)


STUDY_MOVE = v.STUDY_MOVE.encode()


def move_rsp(remaining: bytes, status: int = 0xFF00) -> bytes:
    """hand. C-MOVE-RSP to message 5, Study Root Move, no data set, the given status,
    remaining sub-operations ``remaining`` (raw value), completed 1, failed 0, warning 0."""
    return command(
        element(0x0002, STUDY_MOVE),
        element(0x0100, us(0x8021)),
        element(0x0120, us(5)),
        element(0x0800, us(0x0101)),
        element(0x0900, us(status)),
        element(0x1020, remaining),
        element(0x1021, us(1)),
        element(0x1022, us(0)),
        element(0x1023, us(0)),
    )


def test_sub_operations_two_values_keep_the_first() -> None:
    # Remaining sub-operations 2\7: pynetdicom and Wireshark act on 2.
    cmd = parse_command(move_rsp(us(2, 7)))
    assert (cmd.name, cmd.status, cmd.remaining_suboperations) == ("C-MOVE-RSP", 0xFF00, 2)
    assert (cmd.completed_suboperations, cmd.failed_suboperations) == (1, 0)
    assert cmd.anomalies == (Reason.EXTRA_VALUES,)


def test_get_rsp_every_count_multi_valued() -> None:
    # hand. C-GET-RSP, status 0xC000, each count with three values: first ones kept.
    data = command(
        element(0x0002, v.STUDY_GET.encode()),
        element(0x0100, us(0x8010)),
        element(0x0120, us(9)),
        element(0x0800, us(0x0101)),
        element(0x0900, us(0xC000)),
        element(0x1020, us(0, 1, 2)),
        element(0x1021, us(3, 4, 5)),
        element(0x1022, us(1, 1, 1)),
        element(0x1023, us(2, 9, 9)),
    )
    cmd = parse_command(data)
    assert (cmd.name, cmd.status) == ("C-GET-RSP", 0xC000)
    counts = (cmd.remaining_suboperations, cmd.completed_suboperations,
              cmd.failed_suboperations, cmd.warning_suboperations)  # fmt: skip
    assert counts == (0, 3, 1, 2)
    assert cmd.anomalies == (Reason.EXTRA_VALUES,)


def test_sub_operations_two_values_in_the_session() -> None:
    feeder = established()
    events = feeder.feed(PEER, pdata(pdv(1, COMMAND_LAST, move_rsp(us(2, 7), 0xB000))), TS)
    assert commands(events) == ["C-MOVE-RSP"]
    assert reasons(events) == [Reason.EXTRA_VALUES]
    st = feeder.session.state
    assert st.dimse_status == {"warning": 1}
    assert st.anomalies == {"extra-values": 1}


@pytest.mark.parametrize(
    ("raw", "remaining", "found"),
    [
        (b"\x02\x00\x07", 2, (Reason.BAD_LENGTH,)),  # 3 bytes: one value and a stray byte
        (b"\x02\x00\x07\x00\x09", 2, (Reason.EXTRA_VALUES, Reason.BAD_LENGTH)),  # 5 bytes
        (b"\x02", None, (Reason.BAD_LENGTH,)),  # 1 byte: no value at all
        (b"", None, (Reason.BAD_LENGTH,)),  # empty
    ],
    ids=["odd-3", "odd-5", "one-byte", "empty"],
)
def test_sub_operations_wrong_length(
    raw: bytes, remaining: int | None, found: tuple[Reason, ...]
) -> None:
    cmd = parse_command(move_rsp(raw))
    assert (cmd.name, cmd.status, cmd.remaining_suboperations) == ("C-MOVE-RSP", 0xFF00, remaining)
    assert cmd.anomalies == found


def test_sub_operations_truncated() -> None:
    # The command set ends two bytes into a four-byte count: the element overruns it.
    data = move_rsp(us(2, 7))
    cut = data[: data.index(struct.pack("<HHI", 0, 0x1020, 4)) + 10]
    with pytest.raises(DicomError) as info:
        parse_command(cut)
    assert info.value.reason is Reason.BAD_LENGTH


def test_status_and_message_ids_multi_valued() -> None:
    # Status 0xA701\0x0000 and Message ID Being Responded To 5\6: the first values count.
    data = command(
        element(0x0100, us(0x8021)),
        element(0x0120, us(5, 6)),
        element(0x0800, us(0x0101)),
        element(0x0900, us(0xA701, 0x0000)),
    )
    cmd = parse_command(data)
    assert (cmd.status, cmd.message_id_being_responded_to) == (0xA701, 5)
    assert cmd.anomalies == (Reason.EXTRA_VALUES,)


def test_command_field_multi_valued_and_cut() -> None:
    # Command Field 0x0021\0x0001: a C-MOVE-RQ as receivers read it.
    assert parse_command(command(element(0x0100, us(0x0021, 0x0001)))).name == "C-MOVE-RQ"
    # A Command Field of one byte holds no command.
    with pytest.raises(DicomError) as info:
        parse_command(command(element(0x0100, b"\x21")))
    assert info.value.reason is Reason.BAD_LENGTH


# ---- 3. a connection that ends inside a PDU the caller still holds -----------------------

CUT = "connection ended inside a PDU"
CUT_HEADER = "connection ended inside a PDU header"
ENDED = [CloseReason.CONNECTION_CLOSED, CloseReason.TIMEOUT]
FLUSHED = [CloseReason.CAPTURE_ENDED, CloseReason.EVICTED]


def cut_cases() -> list[tuple[str, list[tuple[object, bytes]], str]]:
    """Streams whose last PDU stops short, with the direction cut and the detail expected."""
    rq, ac = (ORIGIN, v.RQ_ECHO), (PEER, v.AC_ECHO)
    return [
        ("rq", [(ORIGIN, v.RQ_ECHO[:120])], CUT),  # 120 of 211 bytes
        ("rq-header", [(ORIGIN, v.RQ_ECHO[:4])], CUT_HEADER),
        ("ac", [rq, (PEER, v.AC_ECHO[:100])], CUT),
        ("rj", [rq, (PEER, v.RJ_TRUNCATED)], CUT),  # 9 of 10 bytes
        ("release-rq", [rq, ac, (ORIGIN, v.RELEASE_RQ_TRUNCATED)], CUT),
        ("release-rp", [rq, ac, (ORIGIN, v.RELEASE_RQ), (PEER, v.RELEASE_RP_TRUNCATED)],
         CUT_HEADER),  # 4 bytes: inside the 6-byte header
        ("abort", [rq, ac, (PEER, v.ABORT_TRUNCATED)], CUT),
        ("pdata-header", [rq, ac, (ORIGIN, v.PDATA_ECHO_RQ[:5])], CUT_HEADER),
        # A-RELEASE-RQ with length 8 (must be 4), cut after 12 of its 14 bytes.
        ("release-wrong-length", [rq, ac, (ORIGIN, v.RELEASE_RQ_LENGTH_8[:12])], CUT),
    ]  # fmt: skip


@pytest.mark.parametrize("reason", ENDED, ids=str)
@pytest.mark.parametrize(("name", "stream", "detail"), cut_cases(), ids=lambda x: x)
def test_connection_ending_inside_a_held_pdu_is_truncated(
    name: str, stream: list[tuple[object, bytes]], detail: str, reason: CloseReason
) -> None:
    feeder = Feeder(DicomSession("associate-rq"))
    feeder.run(stream, TS)  # type: ignore[arg-type]
    cut_by = stream[-1][0]
    end = feeder.close(reason, TS)
    assert [(e.direction, e.reason, e.detail) for e in end if isinstance(e, Anomaly)] == [
        (cut_by, Reason.TRUNCATED, detail)
    ]
    assert feeder.session.state.anomalies["truncated"] == 1


@pytest.mark.parametrize("reason", FLUSHED, ids=str)
@pytest.mark.parametrize(("name", "stream", "detail"), cut_cases(), ids=lambda x: x)
def test_capture_end_is_never_truncated(
    name: str, stream: list[tuple[object, bytes]], detail: str, reason: CloseReason
) -> None:
    feeder = Feeder(DicomSession("associate-rq"))
    feeder.run(stream, TS)  # type: ignore[arg-type]
    end = feeder.close(reason, TS)
    assert reasons(end) == []
    assert "truncated" not in feeder.session.state.anomalies


@pytest.mark.parametrize("reason", ENDED, ids=str)
def test_whole_pdus_then_the_end_is_not_truncated(reason: CloseReason) -> None:
    feeder = Feeder(DicomSession("associate-rq"))
    feeder.run([(ORIGIN, v.RQ_ECHO), (PEER, v.RJ_CALLED_AE)], TS)
    assert reasons(feeder.close(reason, TS)) == []


def test_capture_end_inside_pdata_is_not_truncated() -> None:
    feeder = established()
    feeder.feed(ORIGIN, v.PDATA_ECHO_RQ[:40], TS)
    assert reasons(feeder.close(CloseReason.CAPTURE_ENDED, TS)) == []


def test_lost_sync_tail_is_not_a_pdu() -> None:
    # After lost sync the session keeps a short tail while it searches: no PDU was started.
    feeder = established()
    feeder.feed(ORIGIN, v.h("0800fffffff0") + b"\x00" * 40, TS)
    assert feeder.pending[ORIGIN]
    assert reasons(feeder.close(CloseReason.CONNECTION_CLOSED, TS)) == []


# ---- 6. a P-DATA-TF cut by the end counts what arrived ----------------------------------


@pytest.mark.parametrize("reason", [*ENDED, *FLUSHED], ids=str)
@pytest.mark.parametrize(
    "cut",
    [
        40,  # inside the command fragment (0x4a + 6 = 80 bytes promised)
        9,  # inside the PDV header: 3 of its 6 bytes held by the caller
        6,  # right after the PDU header
        12,  # right after the PDV header
    ],
)
def test_cut_pdata_counts_the_bytes_on_the_wire(cut: int, reason: CloseReason) -> None:
    feeder = established()
    feeder.feed(ORIGIN, v.PDATA_ECHO_RQ[:cut], TS)
    counters = feeder.session.state.counters[ORIGIN]
    assert counters.pdata_bytes == len(v.PDATA_ECHO_RQ)  # what the header promised, so far
    feeder.close(reason, TS)
    assert counters.pdata_bytes == cut


def test_whole_pdata_counts_its_length() -> None:
    feeder = established()
    feeder.feed(ORIGIN, v.PDATA_ECHO_RQ + v.PDATA_ECHO_RQ[:20], TS)
    feeder.close(CloseReason.CONNECTION_CLOSED, TS)
    assert feeder.session.state.counters[ORIGIN].pdata_bytes == len(v.PDATA_ECHO_RQ) + 20


def test_cut_pdata_after_a_gap_counts_the_lost_bytes_too() -> None:
    # 100 bytes of a 1000-byte data set fragment are lost (they were on the wire), then the
    # connection ends 200 bytes before the PDU does.
    data = pdata(pdv(1, DATA_LAST, bytes(1000)))
    feeder = established()
    feeder.feed(ORIGIN, data[:300], TS)
    feeder.gap(ORIGIN, 100, TS)
    feeder.feed(ORIGIN, data[400:812], TS)
    feeder.close(CloseReason.CONNECTION_CLOSED, TS)
    assert feeder.session.state.counters[ORIGIN].pdata_bytes == 812


def test_cut_pdata_while_skipping_counts_what_arrived() -> None:
    # A PDV length lie makes the session skip the rest of its PDU; the end comes first.
    bad = v.PDATA_ECHO_RQ[:6] + v.h("000000010103") + v.ECHO_RQ_COMMAND
    feeder = established()
    feeder.feed(ORIGIN, bad[:30], TS)
    feeder.close(CloseReason.CONNECTION_CLOSED, TS)
    assert feeder.session.state.counters[ORIGIN].pdata_bytes == 30


# ---- 4. what PS3.5, PS3.7 and PS3.8 forbid in an RQ/AC, and what is decoded anyway ---------


def rq(called: str, calling: str, *items: bytes) -> AssociateRQ:
    pdu, _ = parse_pdu(associate_as(0x01, called, calling, *items))
    assert isinstance(pdu, AssociateRQ)
    return pdu


FULL = (v.ITEM_10, v.ITEM_20, v.ITEM_50)


@pytest.mark.parametrize(("called", "calling"), [(" " * 16, "ECHOSCU"), ("PACS", " " * 16)])
def test_ae_title_of_spaces_is_empty_value(called: str, calling: str) -> None:
    # PS3.8 Table 9-11: an AE title of 16 spaces shall not be used; decoded as "".
    pdu = rq(called, calling, *FULL)
    assert pdu.anomalies == (Reason.EMPTY_VALUE,)
    assert "" in (pdu.called_ae_title, pdu.calling_ae_title)


def test_ae_title_of_nuls_is_empty_value_and_ac_is_not_tested() -> None:
    body = struct.pack(">HH", 1, 0) + bytes(16) + b"ECHOSCU".ljust(16) + bytes(32)
    body += b"".join(FULL)
    pdu, _ = parse_pdu(struct.pack(">BxI", 1, len(body)) + body)
    assert isinstance(pdu, AssociateRQ)
    assert pdu.anomalies == (Reason.EMPTY_VALUE,)
    # The AC's AE titles echo the request and are not to be tested (PS3.8 Table 9-17).
    ac, _ = parse_pdu(associate_as(0x02, " " * 16, " " * 16, v.ITEM_10, v.ITEM_21, v.ITEM_50))
    assert isinstance(ac, AssociateAC)
    assert ac.anomalies == ()


def test_ae_title_of_spaces_in_a_session() -> None:
    feeder = Feeder(DicomSession("associate-rq"))
    events = feeder.feed(ORIGIN, associate_as(0x01, " " * 16, "SCU", *FULL), TS)
    assert reasons(events) == [Reason.EMPTY_VALUE]


def test_move_destination_of_spaces_is_empty_value() -> None:
    data = command(
        element(0x0002, STUDY_MOVE),
        element(0x0100, us(0x0021)),
        element(0x0110, us(5)),
        element(0x0600, b" " * 16),
        element(0x0700, us(0)),
        element(0x0800, us(0x0000)),
    )
    cmd = parse_command(data)
    assert (cmd.name, cmd.move_destination, cmd.anomalies) == (
        "C-MOVE-RQ",
        "",
        (Reason.EMPTY_VALUE,),
    )


def sub57(related_block: bytes, length: int | None = None) -> bytes:
    """A 0x57 sub-item: SOP class Enhanced SR, service class Storage, then ``related_block``
    (the related-general-SOP-class length and UIDs, or whatever the test puts there)."""
    sop = b"1.2.840.10008.5.1.4.1.1.88.22"
    service = b"1.2.840.10008.4.2"
    value = struct.pack(">H", len(sop)) + sop + struct.pack(">H", len(service)) + service
    value += related_block
    return struct.pack(">BxH", 0x57, len(value) if length is None else length) + value


BASIC_TEXT_SR = b"1.2.840.10008.5.1.4.1.1.88.11"
RELATED = struct.pack(">H", len(BASIC_TEXT_SR)) + BASIC_TEXT_SR


def user_info_reasons(*subs: bytes) -> tuple[UserInformation, list[Reason]]:
    buf = b"".join(subs)
    problems = ItemProblems()
    return parse_user_information(buf, 0, len(buf), DEFAULT_LIMITS, problems), problems.reasons


@pytest.mark.parametrize(
    ("block", "found", "related"),
    [
        # pynetdicom's shape: block length 0x1f, one UID of 0x1d bytes, nothing after.
        (struct.pack(">H", len(RELATED)) + RELATED, [], (BASIC_TEXT_SR.decode(),)),
        # Block length 0: the 31 bytes of the UID that follow are unaccounted.
        (struct.pack(">H", 0) + RELATED, [Reason.BAD_LENGTH], ()),
        # Block length 0x1f, then 3 stray bytes inside the sub-item.
        (struct.pack(">H", len(RELATED)) + RELATED + b"xyz", [Reason.BAD_LENGTH],
         (BASIC_TEXT_SR.decode(),)),
        # Block length 0x20: one byte past the sub-item's end.
        (struct.pack(">H", len(RELATED) + 1) + RELATED, [Reason.BAD_LENGTH], ()),
        # Block length 0 and nothing after: fine (no related general SOP class).
        (struct.pack(">H", 0), [], ()),
    ],
    ids=["whole", "block-0-then-31", "stray-bytes", "block-over", "empty-block"],
)  # fmt: skip
def test_common_extended_bytes_after_the_related_block(
    block: bytes, found: list[Reason], related: tuple[str, ...]
) -> None:
    info, problems = user_info_reasons(sub57(block))
    assert problems == found
    [common] = info.common_extended_negotiations
    assert common.related_general_sop_class_uids == related
    assert common.service_class_uid == "1.2.840.10008.4.2"


def test_common_extended_truncated_inside_the_block() -> None:
    # The sub-item says 4 bytes fewer than its block needs: the UID overruns the sub-item.
    whole = sub57(struct.pack(">H", len(RELATED)) + RELATED)
    cut = sub57(struct.pack(">H", len(RELATED)) + RELATED, length=len(whole) - 4 - 4)
    _, problems = user_info_reasons(cut[:-4])
    assert Reason.BAD_LENGTH in problems


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        (b"1.2.840.10008.1.2", True),
        (b"1.2.840.10008.1.2\x00", True),  # NUL padding to even length
        (b"0", True),
        (b"1.0.2", True),  # a component of 0 alone is fine
        (b"2.25.0", True),
        (b"1..2", False),  # empty component
        (b"1.02", False),  # leading zero
        (b"01.2", False),  # leading zero in the first component
        (b"1.2.", False),  # trailing dot
        (b".1.2", False),  # leading dot
        (b"1.2.3.00", False),
        (b".", False),
        (b"", False),
        (b"1.2.X", False),
        (b"1" * 65, False),
    ],
)
def test_uid_syntax(raw: bytes, ok: bool) -> None:
    text, valid = uid(raw)
    assert valid is ok
    assert text == raw.rstrip(b"\x00").decode()[:64]


@pytest.mark.parametrize("bad", [b"1..2", b"1.02", b"1.2.840.10008.1.1."])
def test_bad_uid_in_items_and_commands(bad: bytes) -> None:
    # As an abstract syntax (decoded, bad-value) and as a command's affected SOP class.
    pdu = rq("PACS", "SCU", v.ITEM_10, context_rq(1, bad, b"1.2.840.10008.1.2"), v.ITEM_50)
    assert pdu.anomalies == (Reason.BAD_VALUE,)
    assert pdu.presentation_contexts[0].abstract_syntax == bad.decode()
    cmd = parse_command(command(element(0x0002, bad), element(0x0100, us(0x0030))))
    assert (cmd.affected_sop_class_uid, cmd.anomalies) == (bad.decode(), (Reason.BAD_VALUE,))


@pytest.mark.parametrize(
    "items",
    [
        (v.ITEM_10, v.ITEM_50),  # no presentation context
        (v.ITEM_10, v.ITEM_20),  # no user information
        (v.ITEM_10,),  # neither
    ],
    ids=["no-context", "no-user-info", "neither"],
)
def test_rq_missing_items(items: tuple[bytes, ...]) -> None:
    assert rq("PACS", "SCU", *items).anomalies == (Reason.MISSING_ITEM,)


def test_ac_missing_user_information() -> None:
    ac, _ = parse_pdu(associate_as(0x02, "PACS", "SCU", v.ITEM_10, v.ITEM_21))
    assert isinstance(ac, AssociateAC)
    assert ac.anomalies == (Reason.MISSING_ITEM,)


def test_rq_missing_items_not_said_twice_when_cut() -> None:
    # The items stop at a header that overruns the PDU: bad-length says it already.
    assert rq("PACS", "SCU", v.ITEM_10, v.ITEM_20_OVER).anomalies == (Reason.BAD_LENGTH,)


def test_oversized_rq_fixed_part_only_is_not_missing_items() -> None:
    # Past the associate cap only the fixed part is decoded: too-large, nothing else.
    session = DicomSession("associate-rq", Limits(max_associate_pdu=100))
    events = Feeder(session).feed(ORIGIN, v.RQ_ECHO, TS)
    assert reasons(events) == [Reason.TOO_LARGE]


@pytest.mark.parametrize(
    ("value", "found"),
    [
        (b"OFFIS_DCMTK_367", []),
        (b"", [Reason.EMPTY_VALUE]),  # length 0
        (b"    ", [Reason.EMPTY_VALUE]),  # spaces only
        (b"ABCDEFGHIJKLMNOPQ", [Reason.BAD_VALUE]),  # 17 characters
    ],
    ids=["dcmtk", "empty", "spaces", "too-long"],
)
def test_implementation_version_name(value: bytes, found: list[Reason]) -> None:
    info, problems = user_info_reasons(struct.pack(">BxH", 0x55, len(value)) + value)
    assert problems == found
    assert info.implementation_version_name == value.strip().decode()


def test_implementation_version_name_over_its_parent() -> None:
    # The sub-item claims 16 bytes where 15 remain: bad-length, not decoded.
    info, problems = user_info_reasons(v.SUB_55_OVER)
    assert problems == [Reason.BAD_LENGTH]
    assert info.implementation_version_name is None


# ---- 5. DIMSE failure details (PS3.7 C.4); the Error Comment by length only ---------------

COMMENT = b"SYNTHETIC^CANARY could not store"


def at(*tags: int) -> bytes:
    """An AT value: each tag as group then element, little endian."""
    return b"".join(struct.pack("<HH", t >> 16, t & 0xFFFF) for t in tags)


def store_rsp_failure(*extra: bytes) -> bytes:
    """hand. C-STORE-RSP to message 7, CT Image Storage, status 0xA900 (data set does not
    match SOP class), then ``extra`` elements."""
    return command(
        element(0x0002, v.CT_IMAGE_STORAGE.encode()),
        element(0x0100, us(0x8001)),
        element(0x0120, us(7)),
        element(0x0800, us(0x0101)),
        element(0x0900, us(0xA900)),
        *extra,
    )


def test_failure_details_decoded() -> None:
    data = store_rsp_failure(
        element(0x0901, at(0x00100010, 0x00100020)),  # Offending Element: two tags
        element(0x0902, COMMENT),  # Error Comment: never kept
        element(0x0903, us(0x0107)),  # Error ID
    )
    cmd = parse_command(data)
    assert (cmd.status, cmd.error_id) == (0xA900, 0x0107)
    assert cmd.offending_elements == (0x00100010, 0x00100020)
    assert cmd.error_comment_length == len(COMMENT)
    assert cmd.anomalies == ()
    assert cmd.has_failure_details
    for text in (repr(cmd), str(cmd)):
        assert "CANARY" not in text and "store" not in text


def test_attribute_identifier_list_decoded() -> None:
    # hand. N-SET-RSP (0x8120) warning 0x0116 naming three attributes it did not set.
    data = command(
        element(0x0003, v.PRINTER.encode()),
        element(0x0100, us(0x8120)),
        element(0x0120, us(4)),
        element(0x0800, us(0x0101)),
        element(0x0900, us(0x0116)),
        element(0x1005, at(0x20000010, 0x20000020, 0x20000030)),
    )
    cmd = parse_command(data)
    assert cmd.attribute_identifiers == (0x20000010, 0x20000020, 0x20000030)
    assert cmd.error_comment_length is None and not cmd.offending_elements


def test_no_failure_details_in_a_plain_response() -> None:
    cmd = parse_command(v.ECHO_RSP_COMMAND)
    assert not cmd.has_failure_details
    assert (cmd.error_id, cmd.offending_elements, cmd.error_comment_length) == (None, (), None)


@pytest.mark.parametrize(
    ("value", "kept", "found"),
    [
        (at(0x00100010)[:3], (), (Reason.BAD_LENGTH,)),  # 3 bytes: no whole tag
        (at(0x00100010) + b"\x20\x00", (0x00100010,), (Reason.BAD_LENGTH,)),  # 6 bytes
        (b"", (), ()),  # empty: no tag
        (at(*range(0x00100000, 0x00100000 + 70)), tuple(range(0x00100000, 0x00100000 + 64)),
         (Reason.TOO_MANY,)),  # 70 tags: the first 64 kept
    ],
    ids=["three-bytes", "six-bytes", "empty", "seventy"],
)  # fmt: skip
def test_offending_element_wrong_length(
    value: bytes, kept: tuple[int, ...], found: tuple[Reason, ...]
) -> None:
    cmd = parse_command(store_rsp_failure(element(0x0901, value)))
    assert (cmd.name, cmd.status) == ("C-STORE-RSP", 0xA900)
    assert cmd.offending_elements == kept
    assert cmd.anomalies == found


def test_error_comment_truncated_and_error_id_wrong_length() -> None:
    # The Error Comment claims 40 bytes where 32 remain: the element overruns the command.
    cut = store_rsp_failure()[:] + struct.pack("<HHI", 0, 0x0902, 40) + COMMENT
    with pytest.raises(DicomError) as info:
        parse_command(cut)
    assert info.value.reason is Reason.BAD_LENGTH
    # An Error ID of 3 bytes: the first value kept, bad-length.
    cmd = parse_command(store_rsp_failure(element(0x0903, b"\x07\x01\x00")))
    assert (cmd.error_id, cmd.anomalies) == (0x0107, (Reason.BAD_LENGTH,))


def test_failures_kept_in_the_association() -> None:
    feeder = established()
    rsp = store_rsp_failure(element(0x0901, at(0x00100010)), element(0x0902, COMMENT))
    feeder.feed(PEER, pdata(pdv(1, COMMAND_LAST, rsp)), TS)
    feeder.feed(PEER, v.PDATA_ECHO_RSP, TS)  # a success without details: not kept
    st = feeder.session.state
    assert st.failure_count == 1
    [kept] = st.failures
    assert (kept.name, kept.status, kept.offending_elements) == (
        "C-STORE-RSP",
        0xA900,
        (0x00100010,),
    )
    assert kept.error_comment_length == len(COMMENT)


def test_failures_kept_are_bounded() -> None:
    session = DicomSession("associate-rq", Limits(max_failures_kept=2))
    feeder = Feeder(session)
    feeder.run([(ORIGIN, v.RQ_ECHO), (PEER, v.AC_ECHO)], TS)
    for _ in range(5):
        feeder.feed(PEER, pdata(pdv(1, COMMAND_LAST, store_rsp_failure())), TS)
    assert (session.state.failure_count, len(session.state.failures)) == (5, 2)


# ---- reserved fields of the A-ASSOCIATE PDUs and their items (PS3.8 9.3: "shall be sent
# with a value 00H but not tested"): decoded as if zero, reported as reserved-bits ----------


def _set(pdu: bytes, offset: int, value: int) -> bytes:
    return pdu[:offset] + bytes([value]) + pdu[offset + 1 :]


def test_reserved_fields_clean_in_real_peers() -> None:
    # DCMTK's RQ and AC (whose RQ contexts carry FFH in reserved byte 7: not flagged).
    assert v.RQ_ECHO[6 + 68 + 25 + 6] == 0xFF
    assert parse_pdu(v.RQ_ECHO)[0].anomalies == ()
    assert parse_pdu(v.AC_ECHO)[0].anomalies == ()


@pytest.mark.parametrize(
    "offset",
    [
        8,  # RQ bytes 9-10, reserved after the protocol version
        6 + 36,  # RQ bytes 43-74, the 32 reserved bytes (first)
        6 + 67,  # ... (last)
        6 + 68 + 1,  # 0x10 application context item header's reserved byte
        6 + 68 + 25 + 1,  # 0x20 presentation context item header
        6 + 68 + 25 + 8 + 1,  # its 0x30 abstract syntax sub-item header
        6 + 68 + 25 + 8 + 21 + 1,  # its 0x40 transfer syntax sub-item header
        6 + 68 + 25 + 50 + 4 + 1,  # 0x51 sub-item header inside the user information
    ],
)
def test_reserved_field_in_rq(offset: int) -> None:
    pdu = _set(v.RQ_ECHO, offset, 0x5A)
    decoded, size = parse_pdu(pdu)
    clean, _ = parse_pdu(v.RQ_ECHO)
    assert size == len(pdu)
    assert decoded.anomalies == (Reason.RESERVED_BITS,)
    assert isinstance(decoded, AssociateRQ) and isinstance(clean, AssociateRQ)
    assert decoded.presentation_contexts == clean.presentation_contexts
    assert decoded.user_information == clean.user_information
    assert (decoded.called_ae_title, decoded.calling_ae_title) == ("STORESCP", "ECHOSCU")


def test_reserved_field_in_ac_context_and_fixed_part() -> None:
    ac = v.AC_ECHO
    ctx = 6 + 68 + 25  # the 0x21 item, after DCMTK's application context item
    assert ac[ctx] == 0x21
    for offset in (8, ctx + 4 + 1, ctx + 4 + 3):
        decoded, _ = parse_pdu(_set(ac, offset, 0x01))
        assert decoded.anomalies == (Reason.RESERVED_BITS,), offset
        assert isinstance(decoded, AssociateAC)
        assert decoded.presentation_contexts[0].result == 0
    # The AC's 32 bytes echo the RQ's and are not tested (PS3.8 Table 9-17).
    assert parse_pdu(_set(ac, 6 + 40, 0x01))[0].anomalies == ()


def test_reserved_field_in_a_session_is_one_anomaly() -> None:
    feeder = Feeder(DicomSession("associate-rq"))
    events = feeder.run([(ORIGIN, _set(v.RQ_ECHO, 8, 1)), (PEER, v.AC_ECHO)], TS)
    assert reasons(events) == [Reason.RESERVED_BITS]


def test_reserved_field_in_a_cut_rq() -> None:
    # The reserved byte set and the PDU cut inside its items: both said, nothing raised.
    pdu = _set(v.RQ_ECHO, 8, 1)
    body = pdu[6:-10]
    cut = pdu[:2] + struct.pack(">I", len(body)) + body
    decoded, _ = parse_pdu(cut)
    assert Reason.RESERVED_BITS in decoded.anomalies
    assert Reason.BAD_LENGTH in decoded.anomalies or Reason.TRUNCATED in decoded.anomalies
