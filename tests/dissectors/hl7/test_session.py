"""The MLLP session: framing, anomalies, gaps, close, the summary and the plug-in seam."""

from __future__ import annotations

import json
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from dissectors.base import CloseReason, Direction, Dissector, Session, Summarized, bpf_head_of
from dissectors.hl7 import (
    HL7,
    AckCode,
    Anomaly,
    GapDetected,
    HL7Dissector,
    HL7Message,
    HL7Session,
    Limits,
    Reason,
)

from . import vectors as v

ORIGIN, PEER = Direction.ORIGIN, Direction.PEER
ROOT = Path(__file__).resolve().parents[3]


def run(
    steps: list[tuple[Direction, bytes]], session: HL7Session | None = None
) -> tuple[HL7Session, list[Any]]:
    """Feed each (direction, bytes) step following the contract, then close."""
    s = session or HL7Session()
    pending = {ORIGIN: b"", PEER: b""}
    events: list[Any] = []
    for i, (direction, data) in enumerate(steps):
        buf = pending[direction] + data
        consumed, evs = s.feed(direction, buf, float(i))
        assert 0 <= consumed <= len(buf)
        pending[direction] = buf[consumed:]
        events += evs
    events += s.close(CloseReason.CONNECTION_CLOSED, 99.0)
    return s, events


def kinds(events: list[Any]) -> list[str]:
    """Events as short strings: message kinds and anomaly reasons."""
    out = []
    for e in events:
        if isinstance(e, HL7Message):
            out.append(e.kind + (f"/{e.ack_code}" if e.ack_code else ""))
        elif isinstance(e, Anomaly):
            out.append(e.reason.value)
        else:
            out.append("gap")
    return out


# -- framing --------------------------------------------------------------------------


def test_request_and_ack() -> None:
    _s, events = run([(ORIGIN, v.ADT_A01), (PEER, v.ACK_AA)])
    assert kinds(events) == ["ADT^A01", "ACK^A01/AA"]
    adt, ack = events
    assert adt == HL7Message(
        ts=0.0,
        direction=ORIGIN,
        message_type="ADT",
        trigger_event="A01",
        message_structure="ADT_A01",
        message_control_id="MSG-0001",
        processing_id="P",
        version_id="2.5.1",
        sending_application="ADT-SENDER",
        sending_facility="SYNTH-HOSP",
        receiving_application="EMPI",
        receiving_facility="SYNTH-HOSP",
        ack_code=None,
        acknowledged_control_id=None,
        length=len(v.ADT_A01) - 3,
    )
    assert not adt.is_acknowledgment
    assert (ack.ack_code, ack.acknowledged_control_id) == (AckCode.AA, "MSG-0001")
    assert ack.is_acknowledgment and ack.direction is PEER and ack.ts == 1.0


def test_several_messages_in_one_feed_and_one_segment() -> None:
    _, events = run([(ORIGIN, v.ADT_A01 + v.ORU_R01 + v.ORM_CUSTOM)])
    assert kinds(events) == ["ADT^A01", "ORU^R01", "ORM^O01"]


def test_message_ts_is_when_its_start_block_arrived() -> None:
    _, events = run([(ORIGIN, v.ADT_A01[:20]), (ORIGIN, v.ADT_A01[20:])])
    assert [e.ts for e in events] == [0.0]


def test_ack_without_trigger_and_with_err_segment() -> None:
    _, events = run([(ORIGIN, v.ORU_R01), (PEER, v.ACK_AE)])
    assert kinds(events) == ["ORU^R01", "ACK/AE"]


def test_custom_separators() -> None:
    _, events = run([(ORIGIN, v.ORM_CUSTOM), (PEER, v.ACK_CUSTOM_AR)])
    orm, ack = events
    assert orm.sending_application == "ORDERS^1.2.840.99999.7^ISO"
    assert (orm.processing_id, orm.version_id) == ("P", "2.4")
    assert (ack.ack_code, ack.acknowledged_control_id) == (AckCode.AR, "MSG-0003")


def test_last_segment_without_cr_and_crlf_segments() -> None:
    _, events = run([(ORIGIN, v.ADT_A04_NO_FINAL_CR + v.ADT_CRLF)])
    assert kinds(events) == ["ADT^A04", "ADT^A08"]


def test_only_the_first_msa_is_read() -> None:
    data = v.frame(rb"MSH|^~\&|A|B|C|D|2025||ACK^A01|X|P|2.5", b"MSA|AA|ONE", b"MSA|AR|TWO")
    _, events = run([(ORIGIN, data)])
    assert (events[0].ack_code, events[0].acknowledged_control_id) == (AckCode.AA, "ONE")


def test_msa_with_another_separator_is_skipped() -> None:
    # MSH says '|'; "MSA#AA#ONE" is not an MSA segment of this message.
    data = v.frame(rb"MSH|^~\&|A|B|C|D|2025||ACK^A01|X|P|2.5", b"MSA#AA#ONE")
    _, events = run([(ORIGIN, data)])
    assert events[0].ack_code is None


def test_consumes_all_but_an_incomplete_segment_id() -> None:
    s = HL7Session()
    # Inside a frame, after MSH: "PI" might become "PID" or "MSA": kept by the caller.
    data = v.ADT_A01[:-2]
    cut = data.index(b"PID") + 2
    consumed, events = s.feed(ORIGIN, data[:cut], 0.0)
    assert consumed == cut - 2 and events == []
    consumed, events = s.feed(ORIGIN, data[cut - 2 :] + b"\x1c\r", 1.0)
    assert consumed == len(data) - cut + 4
    assert kinds(events) == ["ADT^A01"]


# -- anomalies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected", "detail"),
    [
        (v.NO_MSH, ["bad-msh"], "frame does not start with an MSH segment"),
        (v.MSH_BAD_SEPARATOR, ["bad-msh"], "MSH-1 field separator is not a punctuation character"),
        (v.MSH_BAD_ENCODING, ["bad-msh"], "MSH-2 encoding characters are not valid"),
        (v.MSH_NO_TYPE, ["bad-msh"], "MSH-9 message type is missing"),
        (v.ACK_BAD_CODE, ["bad-msa", "ACK^A01"], "MSA-1 acknowledgment code is not in table 0008"),
        (v.ADT_END_WITHOUT_CR, ["ADT^A01", "bad-frame"], "end block without carriage return"),
        (v.EMPTY_FRAME, ["bad-frame"], "empty frame"),
        (v.HTTP_GET, ["bad-frame"], "data outside a frame"),
        (v.BARE_MSH, ["bad-frame"], "data outside a frame"),
        (v.ADT_MISSING_END + v.ORU_R01, ["bad-frame", "ORU^R01"], "start block inside a frame"),
        (v.ADT_MISSING_END, ["truncated"], "connection ended inside a frame"),
        (v.ADT_A01[:5], ["truncated"], "connection ended inside a frame"),
    ],
)
def test_anomalies(data: bytes, expected: list[str], detail: str) -> None:
    s, events = run([(ORIGIN, data)])
    assert kinds(events) == expected
    anomaly = next(e for e in events if isinstance(e, Anomaly))
    assert anomaly.detail == detail
    assert sum(s.summary()["hl7"]["anomalies"].values()) == expected.count(anomaly.reason.value)


def test_stray_bytes_give_one_anomaly_then_resync_at_a_verified_start() -> None:
    # Junk with a lone VT in it (not followed by MSH) between two frames.
    junk = b"hello\x0bworld\r\n"
    _, events = run([(ORIGIN, v.ADT_A01 + junk + v.ORU_R01)])
    assert kinds(events) == ["ADT^A01", "bad-frame", "ORU^R01"]


def test_bad_msh_frame_is_skipped_to_its_end() -> None:
    _, events = run([(ORIGIN, v.NO_MSH + v.ADT_A01)])
    assert kinds(events) == ["bad-msh", "ADT^A01"]


def test_too_large_message_is_counted_and_still_reported() -> None:
    limits = Limits(max_message_bytes=200)  # the ACK (124 bytes) fits, the ORU does not
    big = v.frame(
        rb"MSH|^~\&|LAB|L|EHR|H|2025||ORU^R01|BIG-1|P|2.5",
        b"OBX|1|ED|PDF||" + b"A" * 500,
        b"MSA|AA|NOT-READ-PAST-THE-CAP",
    )
    s, events = run([(ORIGIN, big + v.ACK_AA)], HL7Session(limits=limits))
    assert kinds(events) == ["too-large", "ORU^R01", "ACK^A01/AA"]
    assert events[1].ack_code is None and events[1].length == len(big) - 3
    assert s.summary()["hl7"]["anomalies"] == {"too-large": 1}


def test_too_large_inside_msh_drops_the_header() -> None:
    limits = Limits(max_message_bytes=20)
    _s, events = run([(ORIGIN, v.ADT_A01 + v.ORU_R01)], HL7Session(limits=limits))
    assert kinds(events) == ["too-large", "too-large"]


def test_long_msh_is_capped_not_buffered() -> None:
    limits = Limits(max_msh_bytes=40)
    msh = rb"MSH|^~\&|A|B|C|D|2025||ADT^A01|MSG-1|P|2.5|" + b"x" * 10_000
    s = HL7Session(limits=limits)
    consumed, events = s.feed(ORIGIN, b"\x0b" + msh[:5000], 0.0)
    assert consumed == 5001 and events == []
    _, events = s.feed(ORIGIN, msh[5000:] + b"\r\x1c\r", 1.0)
    # MSH-12 was cut at the cap: only "2" of "2.5" fit in the 40 bytes kept.
    assert kinds(events) == ["ADT^A01"] and events[0].version_id == "2"


def test_anomaly_events_are_capped_but_all_counted() -> None:
    s = HL7Session(limits=Limits(max_anomaly_events=3))
    _, events = run([(ORIGIN, v.EMPTY_FRAME * 10)], s)
    assert len(events) == 3
    assert s.summary()["hl7"]["anomalies"] == {"bad-frame": 10}


# -- gaps and close -------------------------------------------------------------------


def test_gap_inside_a_frame_drops_it_and_resyncs_at_the_next_msh() -> None:
    s = HL7Session()
    _, e1 = s.feed(ORIGIN, v.ADT_A01[:50], 0.0)
    gap = s.gap(ORIGIN, 100, 1.0)
    # After the hole: the rest of a message (with a CR and a stray VT) then a whole frame.
    _, e2 = s.feed(ORIGIN, b"PV1|1|I\r\x0bjunk" + v.ORU_R01, 2.0)
    assert e1 == []
    assert gap == [GapDetected(1.0, ORIGIN, 100, True)]
    assert kinds(e2) == ["ORU^R01"]
    summary = s.summary()["hl7"]
    assert summary["anomalies"] == {"gap": 1}
    assert summary["missing_bytes"] == {"client": 100, "server": 0}


def test_gap_between_frames_and_unknown_size() -> None:
    s = HL7Session()
    s.feed(ORIGIN, v.ADT_A01, 0.0)
    assert s.gap(PEER, None, 1.0) == [GapDetected(1.0, PEER, None, False)]
    _, events = s.feed(PEER, v.ACK_AA, 2.0)
    assert kinds(events) == ["ACK^A01/AA"]


def test_gap_right_after_the_end_block_keeps_the_message() -> None:
    s = HL7Session()
    _, events = s.feed(ORIGIN, v.ADT_A01[:-1], 0.0)
    assert events == []
    gap = s.gap(ORIGIN, 5, 1.0)
    assert kinds(gap) == ["ADT^A01", "gap"] and gap[1].message_lost is False


def test_close_is_idempotent_and_reports_both_directions() -> None:
    s = HL7Session()
    s.feed(ORIGIN, v.ADT_A01[:30], 0.0)
    s.feed(PEER, v.ACK_AA[:-1], 1.0)
    final = s.close(CloseReason.TIMEOUT, 2.0)
    assert kinds(final) == ["truncated", "ACK^A01/AA"]
    assert s.close(CloseReason.TIMEOUT, 3.0) == []


# -- summary and originator ----------------------------------------------------------


def test_summary_and_originator() -> None:
    s, _ = run(
        [(ORIGIN, v.ADT_A01), (PEER, v.ACK_AA), (ORIGIN, v.ORU_R01), (PEER, v.ACK_AE),
         (ORIGIN, v.ADT_A01), (PEER, v.ACK_AA)]
    )  # fmt: skip
    assert s.originator() is ORIGIN
    assert s.summary() == {
        "hl7": {
            "detected_by": "mllp",
            "messages": {"ADT^A01": 2, "ACK^A01": 2, "ORU^R01": 1, "ACK": 1},
            "acks": {"AA": 2, "AE": 1},
            "sending_application": "ADT-SENDER",
            "sending_facility": "SYNTH-HOSP",
            "receiving_application": "EMPI",
            "receiving_facility": "SYNTH-HOSP",
            "control_ids": ["MSG-0001", "MSG-0002", "MSG-0001"],
            "versions": ["2.5.1", "2.3"],
            "processing_ids": ["P", "T"],
            "anomalies": {},
            "bytes": {
                "client": 2 * len(v.ADT_A01) + len(v.ORU_R01),
                "server": 2 * len(v.ACK_AA) + len(v.ACK_AE),
            },
            "missing_bytes": {"client": 0, "server": 0},
        }
    }


def test_originator_when_the_peer_is_the_client() -> None:
    # Picked up mid-stream: the first payload seen was an ACK (ORIGIN), then the PEER's ORU.
    s, _ = run([(ORIGIN, v.ACK_AA), (PEER, v.ORU_R01)])
    assert s.originator() is PEER
    assert s.summary()["hl7"]["bytes"] == {"client": len(v.ORU_R01), "server": len(v.ACK_AA)}


def test_originator_from_acks_only() -> None:
    s, _ = run([(ORIGIN, v.ACK_AA)])
    assert s.originator() is PEER
    summary = s.summary()["hl7"]
    # Routing swapped: the ACK went from EMPI back to the client ADT-SENDER.
    assert (summary["sending_application"], summary["receiving_application"]) == (
        "ADT-SENDER",
        "EMPI",
    )
    assert summary["control_ids"] == []


def test_empty_session() -> None:
    s = HL7Session()
    assert s.originator() is None
    summary = s.summary()["hl7"]
    assert summary["messages"] == {} and summary["sending_application"] is None
    assert summary["bytes"] == {"client": 0, "server": 0}
    json.dumps(summary)


def test_summary_sizes_are_bounded() -> None:
    limits = Limits(max_message_kinds=3, max_control_ids=2, max_versions=2)
    frames = b"".join(
        v.frame(f"MSH|^~\\&|A|B|C|D|2025||Z{i:02}^X|ID-{i}|P|2.{i}".encode()) for i in range(20)
    )
    s, _ = run([(ORIGIN, frames)], HL7Session(limits=limits))
    summary = s.summary()["hl7"]
    assert summary["messages"] == {"Z00^X": 1, "Z01^X": 1, "Z02^X": 1, "other": 17}
    assert summary["control_ids"] == ["ID-0", "ID-1"]
    assert summary["versions"] == ["2.0", "2.1"]


def test_phi_never_in_events_summary_or_repr() -> None:
    s, events = run(
        [(ORIGIN, v.ADT_A01), (PEER, v.ACK_AA), (ORIGIN, v.ORU_R01), (PEER, v.ACK_AE),
         (ORIGIN, v.NO_MSH), (ORIGIN, v.ORM_CUSTOM), (PEER, v.ACK_CUSTOM_AR),
         (ORIGIN, v.ADT_A01[:120])]
    )  # fmt: skip
    text = (repr(events) + repr(s) + json.dumps(s.summary())).encode()
    for canary in v.CANARIES:
        assert canary not in text, canary


# -- the plug-in seam -----------------------------------------------------------------


def test_plugin_is_a_dissector_making_summarized_sessions() -> None:
    assert isinstance(HL7, Dissector)
    assert HL7.name == "hl7"
    session = HL7.new_session("mllp")
    assert isinstance(session, HL7Session)
    assert isinstance(session, Session)
    assert isinstance(session, Summarized)
    assert session.detected_by == "mllp"


def test_dissector_passes_its_limits() -> None:
    limits = Limits(max_message_bytes=10)
    assert HL7Dissector(limits=limits).new_session("mllp").limits is limits


def test_entry_point_is_declared_and_loads() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    group = project["project"]["entry-points"]["dicom_sensor.dissectors"]
    assert group["hl7"] == "dissectors.hl7.plugin:HL7"
    loaded = EntryPoint("hl7", group["hl7"], "dicom_sensor.dissectors").load()
    assert loaded is HL7


def test_pure_module_imports() -> None:
    # The dissector stays pure: no capture, network or sensor modules imported.
    import ast

    for path in (ROOT / "dissectors" / "hl7").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in {"dpkt", "scapy", "socket", "sensor", "time", "datetime",
                                   "pcapy", "asyncio", "os"}, (path.name, name)  # fmt: skip


def test_bpf_head_shape() -> None:
    # byte_at renders as B<offset>:<width> so the expression can be read here.
    head = bpf_head_of(HL7, lambda k, w: f"B{k}:{w}", "LEN")
    assert head == "((LEN > 3 and B0:4 = 0x0b4d5348) or (LEN > 0 and LEN < 4 and B0:1 = 0x0b))"


def test_gap_event_reads_like_an_anomaly() -> None:
    # Generic consumers tell anomalies from messages by a ``reason`` attribute.
    gap = GapDetected(1.0, ORIGIN, 12, True)
    assert gap.reason is Reason.GAP
    assert (
        gap.detail
        == "12 bytes lost, the message in progress dropped; resynchronising at the next MSH"
    )
    assert GapDetected(1.0, PEER, None, False).detail.startswith("an unknown number of bytes lost")
    assert not hasattr(HL7Message, "reason")


@pytest.mark.parametrize("reason", [CloseReason.CAPTURE_ENDED, CloseReason.EVICTED])
def test_capture_ended_inside_a_frame_is_not_truncated(reason: CloseReason) -> None:
    # The sensor stopped (end of file, SIGTERM, eviction); the connection did not end.
    s = HL7Session()
    _consumed, events = s.feed(ORIGIN, v.ADT_MISSING_END, 0.0)
    events += s.close(reason, 1.0)
    assert not [e for e in events if isinstance(e, Anomaly)]
