"""The passive association state machine (DicomSession), fed real and damaged streams."""

from __future__ import annotations

import struct
from collections import Counter

import pytest

from dissectors.base import CloseReason, Direction
from dissectors.dicom import DicomSession, Limits, Phase, Reason, parse_command, parse_pdu
from dissectors.dicom.association import DirectionCounters
from dissectors.dicom.events import (
    Aborted,
    Anomaly,
    AssociationAccepted,
    AssociationEnded,
    AssociationRejected,
    AssociationRequested,
    DimseMessage,
    GapDetected,
    ReleaseReplied,
    ReleaseRequested,
)
from dissectors.dicom.pdu import AAbort, AssociateRJ

from . import vectors as v
from .framing import (
    COMMAND,
    COMMAND_LAST,
    DATA,
    DATA_LAST,
    DATA_SET,
    ECHO_STREAM,
    ORIGIN,
    PEER,
    REJECTED_STREAM,
    STORE_PDU_COMMAND,
    STORE_PDU_DATA_1,
    STORE_PDU_DATA_2,
    STORE_PDU_RSP,
    STORE_STREAM,
    Feeder,
    associate,
    bytewise,
    feed_all,
    item,
    pdata,
    pdv,
    user_info,
)

TS = 1700000000.5


def pdu_of(data: bytes) -> object:
    return parse_pdu(data)[0]


def kinds(events: list[object]) -> list[str]:
    return [type(e).__name__ for e in events]


def anomalies(events: list[object]) -> list[tuple[Direction, Reason]]:
    return [(e.direction, e.reason) for e in events if isinstance(e, Anomaly)]


def held(session: DicomSession) -> list[object]:
    """Everything the session's per-direction framing state holds (slots are not in repr)."""
    return [getattr(d, name) for d in session._dirs for name in d.__slots__]


def established(detected_by: str = "associate-rq", limits: Limits | None = None) -> Feeder:
    """A session past DCMTK's RQ and AC (context 1 accepted)."""
    session = DicomSession(detected_by) if limits is None else DicomSession(detected_by, limits)
    feeder = Feeder(session)
    feeder.run([(ORIGIN, v.RQ_ECHO), (PEER, v.AC_ECHO)], TS)
    return feeder


def store_established() -> Feeder:
    """A session past pynetdicom's RQ and AC (context 1 CT accepted, context 3 rejected)."""
    feeder = Feeder(DicomSession("associate-rq"))
    feeder.run([(ORIGIN, v.RQ_STORE), (PEER, v.AC_STORE)], TS)
    return feeder


# ---- the real C-ECHO association ---------------------------------------------------------


def test_echo_association_events() -> None:
    session = DicomSession("associate-rq")
    events = feed_all(session, ECHO_STREAM, TS)
    assert events == [
        AssociationRequested(TS, ORIGIN, pdu_of(v.RQ_ECHO)),  # type: ignore[arg-type]
        AssociationAccepted(TS, PEER, pdu_of(v.AC_ECHO)),  # type: ignore[arg-type]
        DimseMessage(TS, ORIGIN, 1, parse_command(v.ECHO_RQ_COMMAND)),
        DimseMessage(TS, PEER, 1, parse_command(v.ECHO_RSP_COMMAND)),
        ReleaseRequested(TS, ORIGIN),
        ReleaseReplied(TS, PEER),
    ]
    echo_rq = events[2].command  # type: ignore[attr-defined]
    assert (echo_rq.name, echo_rq.message_id) == ("C-ECHO-RQ", 1)
    echo_rsp = events[3].command  # type: ignore[attr-defined]
    assert (echo_rsp.name, echo_rsp.status) == ("C-ECHO-RSP", 0)
    assert session.close(CloseReason.CONNECTION_CLOSED, TS + 1) == [
        AssociationEnded(TS + 1, "released", "accepted")
    ]


def test_echo_association_state() -> None:
    session = DicomSession("associate-rq")
    feed_all(session, ECHO_STREAM, TS)
    st = session.state
    assert st.phase is Phase.RELEASED
    assert st.requestor is ORIGIN
    assert st.release_requested_by is ORIGIN
    assert st.released is True
    assert st.result == "accepted"
    assert st.request is not None and st.request.called_ae_title == "STORESCP"
    assert st.accept is not None and st.accept.presentation_contexts[0].result == 0
    assert (st.reject, st.abort, st.abort_by) == (None, None, None)
    assert (st.first_ts, st.last_ts) == (TS, TS)
    assert st.dimse == Counter({"C-ECHO-RQ": 1, "C-ECHO-RSP": 1})
    assert st.dimse_status == Counter({"success": 1})
    assert st.sop_classes == {"1.2.840.10008.1.1"}
    assert st.move_destinations == []
    assert st.anomalies == Counter()
    assert st.gaps == 0
    # ORIGIN: RQ (211 bytes), P-DATA (80), release RQ; PEER: AC, P-DATA (90), release RP.
    assert st.counters == (
        DirectionCounters(pdus=3, pdata_pdus=1, pdata_bytes=80, pdvs=1, command_fragments=1),
        DirectionCounters(pdus=3, pdata_pdus=1, pdata_bytes=90, pdvs=1, command_fragments=1),
    )
    session.close(CloseReason.CONNECTION_CLOSED, TS + 2)
    assert (st.end, st.last_ts) == ("released", TS)


def test_echo_association_one_byte_at_a_time() -> None:
    whole = DicomSession("associate-rq")
    whole_events = feed_all(whole, ECHO_STREAM, TS)
    tiny = DicomSession("associate-rq")
    assert feed_all(tiny, bytewise(ECHO_STREAM), TS) == whole_events
    assert tiny.state == whole.state


def test_timestamps_follow_the_feed() -> None:
    session = DicomSession("associate-rq")
    feeder = Feeder(session)
    feeder.feed(ORIGIN, v.RQ_ECHO, 10.0)
    feeder.feed(PEER, v.AC_ECHO, 11.0)
    events = feeder.feed(ORIGIN, v.PDATA_ECHO_RQ, 12.5)
    assert events[0].ts == 12.5
    assert (session.state.first_ts, session.state.last_ts) == (10.0, 12.5)


def test_close_is_idempotent() -> None:
    session = DicomSession("associate-rq")
    feed_all(session, ECHO_STREAM, TS)
    assert len(session.close(CloseReason.CONNECTION_CLOSED, TS)) == 1
    assert session.close(CloseReason.TIMEOUT, TS) == []
    assert session.state.end == "released"


# ---- rejection, abort, no response ---------------------------------------------------------


def test_rejected_association() -> None:
    session = DicomSession("associate-rq")
    events = feed_all(session, REJECTED_STREAM, TS)
    assert kinds(events) == ["AssociationRequested", "AssociationRejected"]
    assert events[1] == AssociationRejected(TS, PEER, AssociateRJ(1, 1, 7))
    assert session.state.phase is Phase.REJECTED
    assert session.state.result == "rejected"
    assert session.close(CloseReason.CONNECTION_CLOSED, TS) == [
        AssociationEnded(TS, "connection-closed", "rejected")
    ]


@pytest.mark.parametrize(
    ("by", "abort"),
    [(ORIGIN, v.ABORT_USER), (PEER, v.ABORT_PROVIDER)],
    ids=["by-requestor", "by-acceptor"],
)
def test_abort_after_request(by: Direction, abort: bytes) -> None:
    feeder = established()
    events = feeder.feed(by, abort, TS)
    assert events == [Aborted(TS, by, pdu_of(abort))]  # type: ignore[arg-type]
    st = feeder.session.state
    assert (st.phase, st.abort_by) == (Phase.ABORTED, by)
    assert feeder.session.close(CloseReason.CONNECTION_CLOSED, TS) == [
        AssociationEnded(TS, "aborted", "accepted")
    ]
    assert st.end == "aborted"


@pytest.mark.parametrize("by", [ORIGIN, PEER], ids=["by-requestor", "by-acceptor"])
def test_abort_after_pdata_from_both_sides(by: Direction) -> None:
    # Both sides' last PDU before the abort is a complete P-DATA-TF: nothing is cut,
    # so close() must not report a PDU truncated by the end of the connection.
    feeder = established()
    feeder.run([(ORIGIN, v.PDATA_ECHO_RQ), (PEER, v.PDATA_ECHO_RSP)], TS)
    feeder.feed(by, v.ABORT_USER, TS)
    assert feeder.session.close(CloseReason.CONNECTION_CLOSED, TS) == [
        AssociationEnded(TS, "aborted", "accepted")
    ]
    assert feeder.session.state.abort_by is by
    assert feeder.session.state.anomalies == Counter()


def test_connection_closed_after_pdata_is_not_truncated() -> None:
    # A capture that ends right after a complete P-DATA-TF (no release seen).
    feeder = established()
    feeder.feed(ORIGIN, v.PDATA_ECHO_RQ, TS)
    assert feeder.session.close(CloseReason.CAPTURE_ENDED, TS) == [
        AssociationEnded(TS, "capture-ended", "accepted")
    ]


def test_connection_closed_inside_pdata_is_truncated() -> None:
    feeder = established()
    feeder.feed(ORIGIN, v.PDATA_ECHO_RQ[:40], TS)
    events = feeder.session.close(CloseReason.CONNECTION_CLOSED, TS)
    assert events == [
        Anomaly(TS, ORIGIN, Reason.TRUNCATED, "connection ended inside a PDU"),
        AssociationEnded(TS, "connection-closed", "accepted"),
    ]


@pytest.mark.parametrize("reason", [CloseReason.CAPTURE_ENDED, CloseReason.EVICTED])
def test_capture_ended_inside_pdata_is_not_truncated(reason: CloseReason) -> None:
    # SIGTERM or the end of the file stopped the sensor, not the connection.
    feeder = established()
    feeder.feed(ORIGIN, v.PDATA_ECHO_RQ[:40], TS)
    assert feeder.session.close(reason, TS) == [AssociationEnded(TS, reason.value, "accepted")]
    assert feeder.session.state.anomalies == Counter()


def test_second_abort_keeps_the_first() -> None:
    feeder = established()
    feeder.feed(PEER, v.ABORT_PROVIDER, TS)
    feeder.feed(ORIGIN, v.ABORT_USER, TS)
    st = feeder.session.state
    assert (st.abort, st.abort_by) == (AAbort(2, 2), PEER)


def test_no_response() -> None:
    session = DicomSession("associate-rq")
    feed_all(session, [(ORIGIN, v.RQ_ECHO)], TS)
    assert session.state.phase is Phase.AWAITING_RESPONSE
    assert session.close(CloseReason.TIMEOUT, TS) == [
        AssociationEnded(TS, "timeout", "no-response")
    ]


def test_release_collision_is_not_an_anomaly() -> None:
    # PS3.8 9.2.1 (release collision): both sides send A-RELEASE-RQ, then both send
    # A-RELEASE-RP. The second RP is expected, not an unexpected PDU.
    feeder = established()
    events = feeder.run(
        [
            (ORIGIN, v.RELEASE_RQ),
            (PEER, v.RELEASE_RQ),
            (PEER, v.RELEASE_RP),
            (ORIGIN, v.RELEASE_RP),
        ],
        TS,
    )
    assert kinds(events) == [
        "ReleaseRequested", "ReleaseRequested", "ReleaseReplied", "ReleaseReplied"
    ]  # fmt: skip
    assert anomalies(events) == []
    assert feeder.session.state.release_requested_by is ORIGIN
    assert feeder.session.close(CloseReason.CONNECTION_CLOSED, TS)[-1].end == "released"


def test_unexpected_pdus() -> None:
    session = DicomSession("associate-rq")
    feeder = Feeder(session)
    # P-DATA before any association, release RP with no RQ, AC from the requestor.
    events = feeder.run(
        [(ORIGIN, v.PDATA_ECHO_RQ), (ORIGIN, v.RELEASE_RP), (ORIGIN, v.RQ_ECHO)], TS
    )
    assert anomalies(events) == [(ORIGIN, Reason.UNEXPECTED_PDU), (ORIGIN, Reason.UNEXPECTED_PDU)]
    events = feeder.feed(ORIGIN, v.AC_ECHO, TS)
    assert anomalies(events) == [(ORIGIN, Reason.UNEXPECTED_PDU)]
    events = feeder.feed(PEER, v.RQ_ECHO, TS)
    assert anomalies(events) == [(PEER, Reason.UNEXPECTED_PDU)]
    assert session.state.requestor is ORIGIN
    assert session.state.anomalies == Counter({"unexpected-pdu": 4})


def test_ac_detected_session() -> None:
    # The probe matched an AC: ORIGIN is the acceptor, PEER the requestor.
    session = DicomSession("associate-ac")
    assert session.state.requestor is PEER
    events = feed_all(session, [(ORIGIN, v.AC_ECHO), (PEER, v.PDATA_ECHO_RQ)], TS)
    assert kinds(events) == ["AssociationAccepted", "DimseMessage"]
    assert anomalies(events) == []
    assert session.state.result == "accepted"


# ---- a C-STORE whose data set spans PDVs and PDUs -------------------------------------------


def test_store_association() -> None:
    session = DicomSession("associate-rq")
    events = feed_all(session, STORE_STREAM, TS)
    assert kinds(events) == [
        "AssociationRequested", "AssociationAccepted", "DimseMessage", "DimseMessage",
        "ReleaseRequested", "ReleaseReplied",
    ]  # fmt: skip
    assert events[2] == DimseMessage(TS, ORIGIN, 1, parse_command(v.C_STORE_RQ))
    assert events[3] == DimseMessage(TS, PEER, 1, parse_command(v.C_STORE_RSP))
    st = session.state
    assert st.counters[ORIGIN] == DirectionCounters(
        pdus=5,
        pdata_pdus=3,
        pdata_bytes=len(STORE_PDU_COMMAND) + len(STORE_PDU_DATA_1) + len(STORE_PDU_DATA_2),
        pdvs=4,
        command_fragments=1,
        data_set_fragments=3,
        data_set_bytes=len(DATA_SET),
        data_sets=1,
    )
    assert st.dimse == Counter({"C-STORE-RQ": 1, "C-STORE-RSP": 1})
    assert st.sop_classes == {v.CT_IMAGE_STORAGE}
    assert st.anomalies == Counter()
    identity = st.request.user_information.user_identity  # type: ignore[union-attr]
    assert identity is not None and identity.passcode_present


def test_store_keeps_no_data_set_and_no_passcode() -> None:
    session = DicomSession("associate-rq")
    events = feed_all(session, STORE_STREAM, TS)
    events += session.close(CloseReason.CONNECTION_CLOSED, TS)
    texts = (repr(events), repr(session.state), str(events), repr(vars(session)))
    for text in (*texts, repr(held(session))):
        assert "SYNTHETIC^CANARY" not in text
        assert "CANARY-ID1" not in text
        assert "SYNTHETIC-PASSCODE" not in text


def test_command_split_across_two_pdvs_in_one_pdu() -> None:
    feeder = established()
    command = v.ECHO_RQ_COMMAND
    events = feeder.feed(
        ORIGIN, pdata(pdv(1, COMMAND, command[:30]), pdv(1, COMMAND_LAST, command[30:])), TS
    )
    assert events == [DimseMessage(TS, ORIGIN, 1, parse_command(command))]
    assert feeder.session.state.counters[ORIGIN].command_fragments == 2


def test_command_split_across_two_pdus() -> None:
    feeder = store_established()
    command = v.C_STORE_RQ
    first = feeder.feed(ORIGIN, pdata(pdv(1, COMMAND, command[:50])), TS)
    assert first == []
    events = feeder.feed(ORIGIN, pdata(pdv(1, COMMAND_LAST, command[50:])), TS)
    assert events == [DimseMessage(TS, ORIGIN, 1, parse_command(command))]
    assert feeder.session.state.counters[ORIGIN].pdata_pdus == 2


def test_pdv_on_rejected_context_is_an_anomaly() -> None:
    # Context 3 was rejected (result 3) by the AC; the command still decodes.
    feeder = store_established()
    events = feeder.feed(ORIGIN, pdata(pdv(3, COMMAND_LAST, v.ECHO_RQ_COMMAND)), TS)
    assert kinds(events) == ["Anomaly", "DimseMessage"]
    assert anomalies(events) == [(ORIGIN, Reason.BAD_VALUE)]


def test_data_set_inside_unfinished_command() -> None:
    feeder = established()
    events = feeder.feed(
        ORIGIN, pdata(pdv(1, COMMAND, v.ECHO_RQ_COMMAND[:30]), pdv(1, DATA_LAST, b"x" * 10)), TS
    )
    assert anomalies(events) == [(ORIGIN, Reason.BAD_VALUE)]
    # The dropped command does not swallow the next one.
    assert feeder.feed(ORIGIN, v.PDATA_ECHO_RQ, TS)[0].command.name == "C-ECHO-RQ"


def test_command_fragments_on_two_contexts() -> None:
    feeder = established()
    command = v.ECHO_RQ_COMMAND
    events = feeder.feed(
        ORIGIN, pdata(pdv(1, COMMAND, command[:30]), pdv(3, COMMAND_LAST, command[30:])), TS
    )
    assert (ORIGIN, Reason.BAD_VALUE) in anomalies(events)


def test_malformed_command_is_an_anomaly_and_not_fatal() -> None:
    feeder = established()
    events = feeder.feed(ORIGIN, pdata(pdv(1, COMMAND_LAST, v.CMD_OUTSIDE_GROUP)), TS)
    assert events == [Anomaly(TS, ORIGIN, Reason.BAD_COMMAND, "command set")]
    events = feeder.feed(ORIGIN, v.PDATA_ECHO_RQ, TS)
    assert kinds(events) == ["DimseMessage"]


def test_command_anomalies_become_events() -> None:
    feeder = established()
    events = feeder.feed(ORIGIN, pdata(pdv(1, COMMAND_LAST, v.CMD_BAD_UID)), TS)
    assert kinds(events) == ["DimseMessage", "Anomaly"]
    assert events[1] == Anomaly(TS, ORIGIN, Reason.BAD_VALUE, "C-ECHO-RQ")


def test_error_comment_not_in_events() -> None:
    feeder = store_established()
    events = feeder.feed(PEER, pdata(pdv(1, COMMAND_LAST, v.C_STORE_RSP_FAILURE)), TS)
    assert events[0].command.status == 0xA700
    assert "CANARY" not in repr(events)
    assert "CANARY" not in repr(feeder.session.state)
    assert feeder.session.state.dimse_status == Counter({"failure": 1})


def test_dimse_summary_counts() -> None:
    feeder = established()
    messages = [
        (ORIGIN, v.C_FIND_RQ), (PEER, v.C_FIND_RSP_PENDING), (PEER, v.C_FIND_RSP),
        (ORIGIN, v.C_MOVE_RQ), (PEER, v.C_MOVE_RSP), (PEER, v.C_MOVE_RSP_CANCEL),
        (ORIGIN, v.C_CANCEL_RQ), (ORIGIN, v.C_GET_RQ), (PEER, v.C_GET_RSP),
        (PEER, v.C_STORE_RSP_WARNING), (ORIGIN, v.C_MOVE_RQ),
    ]  # fmt: skip
    for direction, command in messages:
        feeder.feed(direction, pdata(pdv(1, COMMAND_LAST, command)), TS)
    st = feeder.session.state
    assert st.dimse == Counter({
        "C-FIND-RQ": 1, "C-FIND-RSP": 2, "C-MOVE-RQ": 2, "C-MOVE-RSP": 2, "C-CANCEL-RQ": 1,
        "C-GET-RQ": 1, "C-GET-RSP": 1, "C-STORE-RSP": 1,
    })  # fmt: skip
    assert st.dimse_status == Counter(
        {"pending": 2, "success": 1, "cancel": 1, "failure": 1, "warning": 1}
    )
    assert st.move_destinations == ["STORESCP"]
    assert st.sop_classes == {v.STUDY_FIND, v.STUDY_MOVE, v.STUDY_GET, v.CT_IMAGE_STORAGE}


# ---- gaps -------------------------------------------------------------------------------


def test_gap_inside_data_set_fragment_keeps_framing() -> None:
    feeder = store_established()
    feeder.feed(ORIGIN, STORE_PDU_COMMAND, TS)
    # PDU header, PDV header and 40 of the first fragment's 100 bytes arrive; 50 are lost.
    feeder.feed(ORIGIN, STORE_PDU_DATA_1[: 6 + 6 + 40], TS)
    events = feeder.gap(ORIGIN, 50, TS)
    assert events == [GapDetected(TS, ORIGIN, 50, True)]
    events = feeder.run(
        [
            (ORIGIN, STORE_PDU_DATA_1[6 + 6 + 90 :]),
            (ORIGIN, STORE_PDU_DATA_2),
            (PEER, STORE_PDU_RSP),
            (ORIGIN, pdata(pdv(1, COMMAND_LAST, v.C_STORE_RQ_MOVE))),
        ],
        TS,
    )
    assert kinds(events) == ["DimseMessage", "DimseMessage"]
    assert events[1].command.move_originator_ae_title == "MOVESCU"
    c = feeder.session.state.counters[ORIGIN]
    assert (c.data_set_bytes, c.missing_bytes, c.data_sets) == (len(DATA_SET) - 50, 50, 1)
    assert feeder.session.state.gaps == 1
    assert feeder.session.state.anomalies == Counter({"gap": 1})


def test_gap_ending_a_data_set_fragment() -> None:
    # The hole is exactly the rest of the last fragment: the data set is complete.
    feeder = store_established()
    feeder.run([(ORIGIN, STORE_PDU_COMMAND), (ORIGIN, STORE_PDU_DATA_1)], TS)
    feeder.feed(ORIGIN, STORE_PDU_DATA_2[:12], TS)
    rest = len(STORE_PDU_DATA_2) - 12
    assert feeder.gap(ORIGIN, rest, TS) == [GapDetected(TS, ORIGIN, rest, True)]
    assert feeder.session.state.counters[ORIGIN].data_sets == 1
    events = feeder.feed(PEER, STORE_PDU_RSP, TS)
    assert kinds(events) == ["DimseMessage"]


def test_gap_inside_command_drops_it_and_skips_the_pdu() -> None:
    feeder = established()
    feeder.feed(ORIGIN, v.PDATA_ECHO_RQ[:30], TS)
    assert feeder.gap(ORIGIN, 10, TS) == [GapDetected(TS, ORIGIN, 10, True)]
    events = feeder.run([(ORIGIN, v.PDATA_ECHO_RQ[40:]), (ORIGIN, v.PDATA_ECHO_RQ)], TS)
    assert kinds(events) == ["DimseMessage"]


def test_gap_of_unknown_length_resynchronises_at_next_pdata() -> None:
    feeder = store_established()
    feeder.feed(ORIGIN, STORE_PDU_COMMAND, TS)
    feeder.feed(ORIGIN, STORE_PDU_DATA_1[:50], TS)
    assert feeder.gap(ORIGIN, None, TS) == [GapDetected(TS, ORIGIN, None, False)]
    # The rest of some PDU (with a decoy 04 00 whose PDV header is impossible),
    # then a whole P-DATA command PDU.
    decoy = v.h("0400000000ff000000ff0109") + DATA_SET[100:400]
    events = feeder.run(
        [(ORIGIN, decoy), (ORIGIN, pdata(pdv(1, COMMAND_LAST, v.C_STORE_RQ_MOVE)))], TS
    )
    assert kinds(events) == ["DimseMessage"]
    assert events[0].command.message_id == 8
    assert feeder.session.state.counters[ORIGIN].missing_bytes == 0


def test_gap_of_unknown_length_then_release() -> None:
    feeder = established()
    feeder.feed(ORIGIN, v.PDATA_ECHO_RQ[:20], TS)
    feeder.gap(ORIGIN, None, TS)
    events = feeder.run([(ORIGIN, b"\x11" * 33 + v.RELEASE_RQ), (PEER, v.RELEASE_RP)], TS)
    assert kinds(events) == ["ReleaseRequested", "ReleaseReplied"]
    assert feeder.session.state.released


def test_gap_of_unknown_length_then_abort() -> None:
    # The A-ABORT (10 bytes) is the last thing the side sends after the hole.
    feeder = established()
    feeder.feed(ORIGIN, v.PDATA_ECHO_RQ[:20], TS)
    feeder.gap(ORIGIN, None, TS)
    events = feeder.feed(ORIGIN, b"\x11" * 33 + v.ABORT_USER, TS)
    assert events == [Aborted(TS, ORIGIN, AAbort(0, 0))]
    assert feeder.session.close(CloseReason.CONNECTION_CLOSED, TS)[-1].end == "aborted"


def test_gap_at_pdu_boundary_loses_sync() -> None:
    feeder = established()
    events = feeder.gap(ORIGIN, 100, TS)
    assert events == [GapDetected(TS, ORIGIN, 100, False)]
    assert kinds(feeder.feed(ORIGIN, v.PDATA_ECHO_RQ, TS)) == ["DimseMessage"]


# ---- mid-stream -------------------------------------------------------------------------

# The tail of a PDU whose start was not captured: a decoy "04 00" with an impossible PDV.
MID_PDU_GARBAGE = v.h("deadbeef" * 4 + "04000000ffff00000003" + "aa" * 20)


def test_mid_stream_session() -> None:
    session = DicomSession("mid-stream")
    assert session.state.phase is Phase.ESTABLISHED
    assert session.state.requestor is None
    feeder = Feeder(session)
    events = feeder.run(
        [
            (ORIGIN, v.PDATA_ECHO_RQ),
            (PEER, MID_PDU_GARBAGE),
            (PEER, v.PDATA_ECHO_RSP),
            (ORIGIN, pdata(pdv(1, COMMAND_LAST, v.C_FIND_RQ))),
            (PEER, pdata(pdv(1, COMMAND_LAST, v.C_FIND_RSP))),
            (ORIGIN, v.RELEASE_RQ),
            (PEER, v.RELEASE_RP),
        ],
        TS,
    )
    assert [e.command.name for e in events if isinstance(e, DimseMessage)] == [
        "C-ECHO-RQ", "C-ECHO-RSP", "C-FIND-RQ", "C-FIND-RSP"
    ]  # fmt: skip
    assert [e.direction for e in events if isinstance(e, DimseMessage)] == [
        ORIGIN, PEER, ORIGIN, PEER
    ]  # fmt: skip
    assert anomalies(events) == []
    st = session.state
    assert st.requestor is ORIGIN
    assert st.result == "accepted"
    assert st.phase is Phase.RELEASED
    assert session.close(CloseReason.CONNECTION_CLOSED, TS) == [
        AssociationEnded(TS, "released", "accepted")
    ]


def test_mid_stream_garbage_split_across_chunks() -> None:
    session = DicomSession("mid-stream")
    stream = [(ORIGIN, v.PDATA_ECHO_RQ), (PEER, MID_PDU_GARBAGE + v.PDATA_ECHO_RSP)]
    events = feed_all(session, bytewise(stream), TS)
    assert [e.command.name for e in events if isinstance(e, DimseMessage)] == [
        "C-ECHO-RQ", "C-ECHO-RSP"
    ]  # fmt: skip


def test_mid_stream_release_reply_after_partial_pdu() -> None:
    # Capture starts near the end: the acceptor's side begins inside a PDU and its only
    # whole PDU is the 10-byte A-RELEASE-RP.
    session = DicomSession("mid-stream")
    events = feed_all(
        session,
        [(ORIGIN, v.PDATA_ECHO_RQ), (PEER, MID_PDU_GARBAGE), (ORIGIN, v.RELEASE_RQ),
         (PEER, v.RELEASE_RP)],
        TS,
    )  # fmt: skip
    assert kinds(events) == ["DimseMessage", "ReleaseRequested", "ReleaseReplied"]
    assert session.close(CloseReason.CONNECTION_CLOSED, TS)[-1].end == "released"


def test_mid_stream_acceptor_side_matched() -> None:
    # The probe matched the acceptor's C-ECHO-RSP: the requestor is PEER.
    session = DicomSession("mid-stream")
    feed_all(session, [(ORIGIN, v.PDATA_ECHO_RSP)], TS)
    assert session.state.requestor is PEER


def test_mid_stream_c_get_store_is_weak_evidence() -> None:
    # During a C-GET the acceptor sends C-STORE-RQs: the C-GET-RSP decides.
    session = DicomSession("mid-stream")
    feed_all(
        session,
        [
            (ORIGIN, pdata(pdv(1, COMMAND_LAST, v.C_STORE_RQ))),
            (PEER, pdata(pdv(1, COMMAND_LAST, v.C_STORE_RSP))),
        ],
        TS,
    )
    assert session.state.requestor is ORIGIN
    feed_all(session, [(ORIGIN, pdata(pdv(1, COMMAND_LAST, v.C_GET_RSP)))], TS)
    assert session.state.requestor is PEER
    feed_all(session, [(PEER, pdata(pdv(1, COMMAND_LAST, v.C_STORE_RSP)))], TS)
    assert session.state.requestor is PEER


# ---- caps and lies -------------------------------------------------------------------------


def big_context(context_id: int) -> bytes:
    """A 0x20 context: CT Image Storage with Implicit VR LE (50 bytes)."""
    value = bytes([context_id, 0, 0, 0]) + item(0x30, v.CT_IMAGE_STORAGE.encode()) + v.SUB_40
    return item(0x20, value)


def test_ten_thousand_contexts_too_large() -> None:
    # 10,000 full contexts: about 500 KB, over max_associate_pdu (256 KiB). The fixed part
    # is decoded, the rest skipped without buffering, and the association goes on.
    rq = associate(0x01, v.ITEM_10, *(big_context(2 * i + 1 & 0xFF) for i in range(10_000)))
    assert len(rq) > 256 * 1024
    session = DicomSession("associate-rq")
    feeder = Feeder(session)
    events = feeder.feed(ORIGIN, rq[:1000], TS)
    assert kinds(events) == ["AssociationRequested", "Anomaly"]
    assert events[1].reason is Reason.TOO_LARGE
    assert events[0].pdu.calling_ae_title == "ECHOSCU"
    assert events[0].pdu.presentation_contexts == ()
    assert feeder.pending[ORIGIN] == b""  # nothing buffered while skipping
    assert feeder.feed(ORIGIN, rq[1000:], TS) == []
    assert feeder.pending[ORIGIN] == b""
    events = feeder.run([(PEER, v.AC_ECHO), (ORIGIN, v.PDATA_ECHO_RQ)], TS)
    assert kinds(events) == ["AssociationAccepted", "DimseMessage"]


def test_ten_thousand_contexts_too_many() -> None:
    # 10,000 empty 0x20 items (80 KB, under the size cap): items and contexts are capped.
    rq = associate(0x01, v.ITEM_10, *(v.h("2000000401000000") for _ in range(10_000)))
    pdu, _ = parse_pdu(rq)
    assert len(pdu.presentation_contexts) == Limits().max_presentation_contexts  # type: ignore[union-attr]
    assert Reason.TOO_MANY in pdu.anomalies  # type: ignore[union-attr]
    session = DicomSession("associate-rq")
    events = feed_all(session, [(ORIGIN, rq)], TS)
    assert kinds(events)[0] == "AssociationRequested"
    assert session.state.anomalies["too-many"] == 1


def test_two_hundred_full_contexts() -> None:
    rq = associate(0x01, v.ITEM_10, *(big_context(2 * i + 1 & 0xFF) for i in range(200)), v.ITEM_50)
    pdu, _ = parse_pdu(rq)
    assert len(pdu.presentation_contexts) == 128  # type: ignore[union-attr]
    assert pdu.anomalies == (Reason.TOO_MANY,)  # type: ignore[union-attr]


def test_zero_length_items_repeated() -> None:
    rq = associate(0x01, v.ITEM_10, *([v.h("00000000")] * 5000))
    pdu, _ = parse_pdu(rq)
    assert set(pdu.anomalies) == {Reason.UNKNOWN_ITEM, Reason.TOO_MANY}  # type: ignore[union-attr]
    assert len(pdu.unknown_items) == 16  # type: ignore[union-attr]
    session = DicomSession("associate-rq")
    assert kinds(feed_all(session, [(ORIGIN, rq)], TS))[0] == "AssociationRequested"


def test_zero_length_pdvs_repeated() -> None:
    # 1000 empty data set PDVs then the C-ECHO command, in one PDU.
    feeder = established()
    events = feeder.feed(
        ORIGIN, pdata(*([pdv(1, DATA, b"")] * 1000), pdv(1, COMMAND_LAST, v.ECHO_RQ_COMMAND)), TS
    )
    assert kinds(events) == ["DimseMessage"]
    c = feeder.session.state.counters[ORIGIN]
    assert (c.pdvs, c.data_set_fragments, c.data_set_bytes) == (1001, 1000, 0)


@pytest.mark.parametrize(
    ("header", "reasons"),
    [
        ("0400fffffff0", [Reason.TOO_LARGE, Reason.LOST_SYNC]),  # P-DATA-TF
        ("0500fffffff0", [Reason.BAD_LENGTH, Reason.LOST_SYNC]),  # A-RELEASE-RQ
        ("0700fffffff0", [Reason.BAD_LENGTH, Reason.LOST_SYNC]),  # A-ABORT
        ("0800fffffff0", [Reason.BAD_TYPE, Reason.LOST_SYNC]),  # no such PDU type
    ],
)
def test_pdu_length_near_4_gib(header: str, reasons: list[Reason]) -> None:
    feeder = established()
    events = feeder.feed(ORIGIN, v.h(header) + bytes(100), TS)
    assert [e.reason for e in events] == reasons
    assert len(feeder.pending[ORIGIN]) < 20  # a resync tail: a command start with byte 1 set
    # Framing comes back at the next verifiable PDU.
    assert kinds(feeder.feed(ORIGIN, v.PDATA_ECHO_RQ, TS)) == ["DimseMessage"]


def test_associate_rq_length_near_4_gib_is_skipped_unbuffered() -> None:
    rq = v.RQ_ECHO[:2] + v.h("fffffff0") + v.RQ_ECHO[6:]
    session = DicomSession("associate-rq")
    feeder = Feeder(session)
    events = feeder.feed(ORIGIN, rq, TS)
    assert kinds(events) == ["AssociationRequested", "Anomaly"]
    assert events[1].reason is Reason.TOO_LARGE
    for _ in range(16):
        feeder.feed(ORIGIN, bytes(64 * 1024), TS)
        assert feeder.pending[ORIGIN] == b""


def test_associate_rq_shorter_than_68_in_stream() -> None:
    session = DicomSession("associate-rq")
    events = feed_all(session, [(ORIGIN, v.RQ_LENGTH_64)], TS)
    assert [e.reason for e in events] == [Reason.BAD_LENGTH, Reason.LOST_SYNC]


def test_command_set_over_64_kib() -> None:
    # A C-ECHO-RQ padded with a 70,000-byte Error Comment (0000,0902), in 16 KiB PDVs.
    padding = struct.pack("<HHI", 0, 0x0902, 70_000) + b"SYNTHETIC^CANARY" * 4375
    command = v.ECHO_RQ_COMMAND + padding
    chunks = [command[i : i + 16_000] for i in range(0, len(command), 16_000)]
    pdus = [
        pdata(pdv(1, COMMAND_LAST if i == len(chunks) - 1 else COMMAND, chunk))
        for i, chunk in enumerate(chunks)
    ]
    feeder = established()
    events = []
    for pdu in pdus:
        events += feeder.feed(ORIGIN, pdu, TS)
        # Never more than max_command_bytes of command held, whatever arrives.
        held_command = feeder.session._dirs[ORIGIN].cmd
        assert len(held_command) <= Limits().max_command_bytes
    assert events == [Anomaly(TS, ORIGIN, Reason.TOO_LARGE, "command set")]
    assert "CANARY" not in repr(held(feeder.session))
    assert kinds(feeder.feed(ORIGIN, v.PDATA_ECHO_RQ, TS)) == ["DimseMessage"]


def test_command_set_over_64_kib_with_small_limit() -> None:
    limits = Limits(max_command_bytes=40)
    feeder = established(limits=limits)
    events = feeder.feed(ORIGIN, v.PDATA_ECHO_RQ, TS)
    assert events == [Anomaly(TS, ORIGIN, Reason.TOO_LARGE, "command set")]


@pytest.mark.parametrize(
    "lie",
    [
        "000000ff0103",  # PDV length 0xff, larger than the PDU
        "000000010103",  # PDV length 1, below the 2 bytes of its own header
    ],
)
def test_pdv_length_lies(lie: str) -> None:
    feeder = established()
    bad = v.PDATA_ECHO_RQ[:6] + v.h(lie) + v.ECHO_RQ_COMMAND
    events = feeder.run([(ORIGIN, bad), (ORIGIN, v.PDATA_ECHO_RQ)], TS)
    assert kinds(events) == ["Anomaly", "DimseMessage"]
    assert events[0].reason is Reason.BAD_LENGTH


def test_pdv_length_shorter_than_the_command() -> None:
    # The PDV says 20 bytes; the other 50 bytes of the command are read as PDV headers.
    feeder = established()
    bad = v.PDATA_ECHO_RQ[:6] + v.h("000000160103") + v.ECHO_RQ_COMMAND
    events = feeder.run([(ORIGIN, bad), (ORIGIN, v.PDATA_ECHO_RQ)], TS)
    assert kinds(events)[-1] == "DimseMessage"
    assert all(isinstance(e, Anomaly) for e in events[:-1])
    assert events[0].reason is Reason.BAD_LENGTH


def test_pdata_length_below_6() -> None:
    feeder = established()
    events = feeder.run([(ORIGIN, v.h("040000000004") + bytes(4)), (ORIGIN, v.PDATA_ECHO_RQ)], TS)
    assert kinds(events) == ["Anomaly", "Anomaly", "DimseMessage"]
    assert [e.reason for e in events[:2]] == [Reason.BAD_LENGTH, Reason.LOST_SYNC]


def test_short_pdu_length_same_events_whatever_the_split() -> None:
    # An A-RELEASE-RQ with length 8 (must be 4): one bad-length anomaly, then the release,
    # however the bytes are split.
    whole = established()
    expected = whole.feed(ORIGIN, v.RELEASE_RQ_LENGTH_8, TS)
    assert expected == [
        Anomaly(TS, ORIGIN, Reason.BAD_LENGTH, "short PDU length"),
        ReleaseRequested(TS, ORIGIN),
    ]
    split = established()
    got = split.feed(ORIGIN, v.RELEASE_RQ_LENGTH_8[:8], TS)
    got += split.feed(ORIGIN, v.RELEASE_RQ_LENGTH_8[8:], TS)
    assert got == expected
    assert split.session.state.anomalies == Counter({"bad-length": 1})


def test_pdata_trailing_bytes_same_events_whatever_the_split() -> None:
    # A P-DATA-TF whose length counts 3 bytes after its only PDV, then a release RQ.
    pdu = v.h("04000000004d") + v.PDATA_ECHO_RQ[6:] + v.h("000000")
    whole = established()
    expected = whole.feed(ORIGIN, pdu + v.RELEASE_RQ, TS)
    split = established()
    got = split.feed(ORIGIN, pdu, TS) + split.feed(ORIGIN, v.RELEASE_RQ, TS)
    assert kinds(expected) == ["DimseMessage", "Anomaly", "ReleaseRequested"]
    assert got == expected


def test_anomaly_events_are_bounded_but_counted() -> None:
    feeder = established()
    for _ in range(300):
        feeder.feed(ORIGIN, v.RELEASE_RQ_LENGTH_8, TS)
    emitted = [e for e in feeder.events if isinstance(e, Anomaly)]
    assert len(emitted) == 100
    assert feeder.session.state.anomalies["bad-length"] == 300


def test_unknown_item_in_session_counted() -> None:
    rq = associate(0x01, v.ITEM_10, v.ITEM_20, v.ITEM_UNKNOWN, user_info(v.SUB_51, v.SUB_UNKNOWN))
    session = DicomSession("associate-rq")
    events = feed_all(session, [(ORIGIN, rq)], TS)
    assert kinds(events) == ["AssociationRequested", "Anomaly"]
    assert events[1] == Anomaly(TS, ORIGIN, Reason.UNKNOWN_ITEM, "A-ASSOCIATE-RQ")
    assert session.state.anomalies["unknown-item"] >= 1
    pdu = events[0].pdu
    assert pdu.unknown_items[0].item_type == 0x60
    assert pdu.user_information.unknown[0].item_type == 0x77
