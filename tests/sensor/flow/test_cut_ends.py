"""The engine tells the session what it holds unconsumed, so a cut PDU is reported at close.

``truncated`` means the connection really ended (RST, both FINs, idle timeout) inside a
PDU, including one whose bytes are still in the engine's tail (an RQ/AC/RJ, release, abort
or a PDU header not yet whole). A capture that simply ends there is never ``truncated``.
"""

from __future__ import annotations

from typing import Any

import pytest

from dissectors.base import CloseReason, Direction
from dissectors.dicom import DICOM, Reason
from dissectors.dicom.events import Anomaly
from sensor.capture.decode import TH_ACK, TH_FIN, TH_RST, TH_SYN, Segment
from sensor.flow.engine import FlowEngine
from sensor.flow.table import EngineConfig
from tests.dissectors.dicom import vectors as v

C, S = Direction.ORIGIN, Direction.PEER
ENDS = {C: ("10.1.0.9", 50000), S: ("10.1.0.1", 104)}


class Recorder:
    def __init__(self) -> None:
        self.anomalies: list[Anomaly] = []
        self.closes: list[tuple[CloseReason, Any]] = []

    def on_event(self, info: Any, session: Any, event: Any) -> None:
        if isinstance(event, Anomaly):
            self.anomalies.append(event)

    def on_close(self, info: Any, session: Any, reason: CloseReason) -> None:
        self.closes.append((reason, session.state))


def segments(turns: list[tuple[Direction, bytes]], end: str) -> list[Segment]:
    seq = {C: 1000, S: 9000}
    ts = [50.0]

    def seg(side: Direction, payload: bytes = b"", flags: int = TH_ACK) -> Segment:
        src, dst = ENDS[side], ENDS[side.other]
        ts[0] += 0.001
        ack = seq[side.other] if flags & TH_ACK else 0
        out = Segment(ts[0], src[0], dst[0], src[1], dst[1], seq[side], ack, flags, payload)
        seq[side] = (seq[side] + len(payload) + (1 if flags & (TH_SYN | TH_FIN) else 0)) % 2**32
        return out

    out = [seg(C, flags=TH_SYN), seg(S, flags=TH_SYN | TH_ACK), seg(C)]
    for side, data in turns:
        out.append(seg(side, data))
        out.append(seg(side.other))
    if end == "rst":
        out.append(seg(turns[-1][0], flags=TH_RST | TH_ACK))
    elif end == "fin":
        out += [seg(C, flags=TH_FIN | TH_ACK), seg(S, flags=TH_FIN | TH_ACK), seg(C)]
    return out


def run(turns: list[tuple[Direction, bytes]], end: str) -> Recorder:
    rec = Recorder()
    engine = FlowEngine([DICOM], rec.on_event, rec.on_close, EngineConfig())
    segs = segments(turns, end)
    for segment in segs:
        engine.process(segment)
        engine.advance(segment.ts)
    engine.finish(segs[-1].ts + 1.0)
    return rec


RQ, AC = (C, v.RQ_ECHO), (S, v.AC_ECHO)
CASES = {
    "ac": ([RQ, (S, v.AC_ECHO[:100])], S),
    "rj": ([RQ, (S, v.RJ_TRUNCATED)], S),
    "release": ([RQ, AC, (C, v.RELEASE_RQ_TRUNCATED)], C),
    "abort": ([RQ, AC, (S, v.ABORT_TRUNCATED)], S),
    "pdu-header": ([RQ, AC, (C, v.PDATA_ECHO_RQ[:4])], C),
}


@pytest.mark.parametrize("end", ["rst", "fin"])
@pytest.mark.parametrize("case", CASES)
def test_connection_ending_inside_a_held_pdu_is_truncated(case: str, end: str) -> None:
    turns, cut_by = CASES[case]
    rec = run(turns, end)
    [(reason, state)] = rec.closes
    assert reason is CloseReason.CONNECTION_CLOSED
    assert [(a.direction, a.reason) for a in rec.anomalies] == [(cut_by, Reason.TRUNCATED)]
    assert state.anomalies == {"truncated": 1}


@pytest.mark.parametrize("case", CASES)
def test_capture_ending_inside_a_held_pdu_is_not_truncated(case: str) -> None:
    turns, _ = CASES[case]
    rec = run(turns, "none")
    [(reason, state)] = rec.closes
    assert reason is CloseReason.CAPTURE_ENDED
    assert rec.anomalies == []
    assert "truncated" not in state.anomalies


def test_reset_inside_pdata_counts_the_bytes_on_the_wire() -> None:
    rec = run([RQ, AC, (C, v.PDATA_ECHO_RQ[:40])], "rst")
    [(_, state)] = rec.closes
    assert state.counters[C].pdata_bytes == 40
    assert [a.reason for a in rec.anomalies] == [Reason.TRUNCATED]
