"""The engine's skip fast path: the same records, events and counters as feeding every byte."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dissectors.base import NEED_MORE, NO_MATCH, CloseReason, Direction, ProbeResult, Verdict
from dissectors.dicom import DICOM, DicomSession
from sensor.capture.decode import TH_ACK, TH_FIN, TH_SYN, Segment
from sensor.cli import main
from sensor.flow.engine import FlowEngine
from sensor.flow.table import EngineConfig, FlowInfo
from tests.dissectors.dicom import vectors as v
from tests.dissectors.dicom.framing import (
    DATA,
    DATA_LAST,
    STORE_PDU_COMMAND,
    STORE_PDU_RSP,
    pdata,
    pdv,
)

ROOT = Path(__file__).resolve().parents[3]
# Store captures and the segments the fast path skips in them at the least.
# The share of the data-set bytes that must have been skipped, not fed.
STORE_CASES = {"dcmtk-store-11112": 0.8, "pynetdicom-store-loopback": 0.3}
# Captures with reordering, retransmission, re-segmentation, gaps, cuts and aborts.
OTHER_CASES = [
    "derived-reordered-retransmitted",
    "derived-split-pdus",
    "derived-gap",
    "derived-cut-mid-packet",
    "derived-parallel",
    "killed-mid-transfer",
    "phi-canary",
    "pynetdicom-ipv6",
    "hl7-mllp/mllp.pcap",  # no skip seam: fed as before
]

CLIENT = ("10.1.0.9", 50000)
SERVER = ("10.1.0.1", 104)
C_ISN = 4_294_960_000  # the client's sequence numbers wrap during the data set
S_ISN = 7000
MSS = 1448

# A C-STORE of a 60000-byte data set (synthetic bytes, no PHI) in PDUs of 16 KB or less.
BIG = bytes((i * 13 + 0x30) & 0x7F | 0x20 for i in range(60_000))
DATA_PDUS = [
    pdata(pdv(1, DATA_LAST if at + 16000 >= len(BIG) else DATA, BIG[at : at + 16000]))
    for at in range(0, len(BIG), 16000)
]
C, S = Direction.ORIGIN, Direction.PEER
TURNS: list[tuple[Direction, bytes]] = [
    (C, v.RQ_STORE),
    (S, v.AC_STORE),
    (C, STORE_PDU_COMMAND + b"".join(DATA_PDUS)),
    (S, STORE_PDU_RSP),
    (C, v.RELEASE_RQ),
    (S, v.RELEASE_RP),
]


def read(capture: Path, tmp_path: Path, tag: str) -> tuple[str, str, str]:
    """Associations, events and metrics of ``dicom-sensor read``."""
    out = [tmp_path / f"{tag}.{ext}" for ext in ("jsonl", "events.jsonl", "prom")]
    argv = ["read", str(capture), "--associations", str(out[0]), "--events", str(out[1])]
    assert main([*argv, "--metrics", str(out[2]), "-q", "--no-progress"]) == 0
    # How many packets the compiled reader absorbed is the one figure skipping changes.
    metrics = "".join(
        line
        for line in out[2].read_text().splitlines(keepends=True)
        if not line.startswith("dicom_sensor_fast_path_packets_total ")
    )
    return out[0].read_text(), out[1].read_text(), metrics


class SkipSpy:
    """Counts the bytes DicomSession.skip and skip_framed (across headers) accounted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.bytes = 0
        original = DicomSession.skip
        framed = DicomSession.skip_framed

        def spy(session: DicomSession, direction: Direction, n: int, ts: float) -> list[Any]:
            self.calls += 1
            self.bytes += n
            return original(session, direction, n, ts)

        def spy_framed(
            session: DicomSession, direction: Direction, n: int, crossed: Any, ts: float
        ) -> list[Any]:
            self.calls += 1
            self.bytes += n
            return framed(session, direction, n, crossed, ts)

        monkeypatch.setattr(DicomSession, "skip", spy)
        monkeypatch.setattr(DicomSession, "skip_framed", spy_framed)


@pytest.mark.parametrize("name", [*STORE_CASES, *OTHER_CASES])
def test_capture_same_output_with_and_without_skipping(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = ROOT / "pcaps" / (name if name.endswith(".pcap") else f"{name}/capture.pcap")
    spy = SkipSpy(monkeypatch)
    fast = read(capture, tmp_path, "fast")
    skipped, skipped_bytes = spy.calls, spy.bytes
    monkeypatch.setattr(FlowEngine, "skipping", False)
    slow = read(capture, tmp_path, "slow")
    assert spy.calls == skipped  # nothing skipped with the fast path off
    assert fast == slow
    if name in STORE_CASES:
        assert fast[0].strip()  # the records are not vacuous
        # The fast path did the work it is there for: most data-set bytes were skipped.
        data_set_bytes = sum(
            json.loads(line)["dicom"]["pdata"]["data_set_bytes"] for line in fast[0].splitlines()
        )
        assert skipped_bytes >= STORE_CASES[name] * data_set_bytes > 0


# ---- synthetic segments through the engine ---------------------------------------------


class Recorder:
    """What the engine handed out, and the sessions' final state."""

    def __init__(self) -> None:
        self.events: list[tuple[FlowInfo, Any]] = []
        self.closes: list[tuple[FlowInfo, CloseReason, Any]] = []

    def on_event(self, info: FlowInfo, session: Any, event: Any) -> None:
        self.events.append((info, event))

    def on_close(self, info: FlowInfo, session: Any, reason: CloseReason) -> None:
        self.closes.append((info, reason, session.state))


def conversation(mss: int) -> list[Segment]:
    """Handshake, the C-STORE association in ``mss`` segments with ACKs, and both FINs."""
    ends = {C: CLIENT, S: SERVER}
    seq = {C: C_ISN, S: S_ISN}
    ts = [100.0]

    def seg(side: Direction, payload: bytes = b"", flags: int = TH_ACK) -> Segment:
        src, dst = ends[side], ends[side.other]
        ts[0] += 0.0001
        ack = seq[side.other] if flags & TH_ACK else 0
        out = Segment(ts[0], src[0], dst[0], src[1], dst[1], seq[side], ack, flags, payload)
        taken = len(payload) + (1 if flags & (TH_SYN | TH_FIN) else 0)
        seq[side] = (seq[side] + taken) % 2**32
        return out

    segments = [seg(C, flags=TH_SYN), seg(S, flags=TH_SYN | TH_ACK), seg(C)]
    for side, data in TURNS:
        for i in range(0, len(data), mss):
            segments.append(seg(side, data[i : i + mss]))
            if (i // mss) % 2:
                segments.append(seg(side.other))  # the receiver ACKs every other segment
        segments.append(seg(side.other))
    segments += [seg(C, flags=TH_FIN | TH_ACK), seg(S, flags=TH_FIN | TH_ACK), seg(C)]
    return segments


def run(segments: list[Segment], skipping: bool) -> tuple[Any, ...]:
    rec = Recorder()
    engine = FlowEngine([DICOM], rec.on_event, rec.on_close, EngineConfig())
    engine.skipping = skipping
    for segment in segments:
        engine.process(segment)
        engine.advance(segment.ts)
    engine.finish(segments[-1].ts + 1.0)
    return rec.events, rec.closes, engine.stats


def test_in_order_store_is_mostly_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SkipSpy(monkeypatch)
    segments = conversation(MSS)
    fast = run(segments, True)
    assert fast == run(segments, False)
    # All but the segments that hold a PDU header or the command went by unseen.
    assert spy.calls > len(BIG) // MSS - 2 * len(DATA_PDUS) - 2
    assert spy.bytes > len(BIG) - len(DATA_PDUS) * 2 * MSS
    events, closes, _ = fast
    [(_, reason, state)] = closes
    assert reason is CloseReason.CONNECTION_CLOSED
    counters = state.counters[C]
    assert (counters.data_set_bytes, counters.data_set_fragments, counters.data_sets) == (
        len(BIG),
        len(DATA_PDUS),
        1,
    )
    assert [type(e).__name__ for _, e in events].count("DimseMessage") == 2


def test_retransmitted_skipped_segment_counts_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    segments = conversation(MSS)
    data = [i for i, s in enumerate(segments) if len(s.payload) == MSS]
    # A copy of a data segment well inside the data set, sent again right after itself.
    at = data[len(data) // 2]
    resent = [*segments[: at + 1], segments[at], *segments[at + 1 :]]
    fast = run(resent, True)
    assert fast == run(resent, False)
    assert fast[2].stream.retransmissions == 1


def test_out_of_order_segments_are_held_and_delivered_as_before() -> None:
    segments = conversation(MSS)
    data = [i for i, s in enumerate(segments) if len(s.payload) == MSS]
    a, b = data[10], data[11]
    swapped = list(segments)
    swapped[a], swapped[b] = swapped[b], swapped[a]
    fast = run(swapped, True)
    assert fast == run(swapped, False)
    assert fast[2].stream.gaps == 0
    [(_, _, state)] = fast[1]
    [(_, _, in_order)] = run(segments, True)[1]
    assert state.counters == in_order.counters


def test_lost_segment_inside_the_data_set_is_the_same_gap() -> None:
    segments = conversation(MSS)
    data = [i for i, s in enumerate(segments) if len(s.payload) == MSS]
    lost = segments[: data[12]] + segments[data[12] + 1 :]
    fast = run(lost, True)
    assert fast == run(lost, False)
    assert fast[2].stream.gaps == 1
    [(_, _, state)] = fast[1]
    assert state.gaps == 1 and state.counters[C].missing_bytes == MSS


def test_engine_without_skipping_never_calls_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SkipSpy(monkeypatch)
    run(conversation(MSS), False)
    assert spy.calls == 0


@settings(max_examples=60, deadline=None)
@given(
    mss=st.integers(200, 9000),
    seed=st.integers(0, 2**32 - 1),
    swaps=st.integers(0, 6),
    copies=st.integers(0, 6),
    drops=st.integers(0, 3),
)
def test_reordered_retransmitted_lossy_store_same_with_skipping(
    mss: int, seed: int, swaps: int, copies: int, drops: int
) -> None:
    rng = random.Random(seed)
    segments = conversation(mss)
    # Mangle only what follows the handshake, as a span port would.
    body = segments[3:-3]
    for _ in range(swaps):
        i = rng.randrange(len(body) - 1)
        body[i], body[i + 1] = body[i + 1], body[i]
    for _ in range(copies):
        i = rng.randrange(len(body))
        body.insert(min(len(body), i + rng.randrange(1, 4)), body[i])
    for _ in range(drops):
        body.pop(rng.randrange(len(body)))
    mangled = segments[:3] + body + segments[-3:]
    assert run(mangled, True) == run(mangled, False)


def test_data_segment_carrying_a_fin_is_not_skipped() -> None:
    # The client stops mid data set with a FIN on a data segment; the server FINs back.
    segments = conversation(MSS)
    data = [i for i, s in enumerate(segments) if len(s.payload) == MSS]
    k = data[20]
    last = segments[k]
    server = [s for s in segments[:k] if s.sport == SERVER[1]][-1]
    cut = [
        *segments[:k],
        replace(last, flags=TH_FIN | TH_ACK),
        replace(server, ts=last.ts + 0.001, seq=server.seq + len(server.payload), payload=b"",
                flags=TH_FIN | TH_ACK),
    ]  # fmt: skip
    fast = run(cut, True)
    assert fast == run(cut, False)
    [(_, reason, state)] = fast[1]
    assert reason is CloseReason.CONNECTION_CLOSED
    assert state.anomalies["truncated"] == 1


class Liar:
    """A session that says everything is skippable, to test what the engine never skips."""

    def __init__(self) -> None:
        self.fed: list[bytes] = []
        self.skipped: list[int] = []

    def feed(
        self, direction: Direction, data: bytes | memoryview, ts: float
    ) -> tuple[int, list[Any]]:
        data = bytes(data)
        self.fed.append(data)
        return data.rfind(b"\n") + 1, []  # whole lines only: the rest stays as a tail

    def gap(self, direction: Direction, missing: int | None, ts: float) -> list[Any]:
        return []

    def close(self, reason: CloseReason, ts: float) -> list[Any]:
        return []

    def skippable(self, direction: Direction) -> int:
        return 1 << 40

    def skip(self, direction: Direction, n: int, ts: float) -> list[Any]:
        self.skipped.append(n)
        return []


class LiarDissector:
    """Matches a side that starts with ``HELLO``."""

    name = "liar"

    def __init__(self) -> None:
        self.sessions: list[Liar] = []

    def probe(self, data: bytes | memoryview) -> ProbeResult:
        if bytes(data).startswith(b"HELLO"):
            return ProbeResult(Verdict.MATCH, "hello")
        return NEED_MORE if b"HELLO".startswith(bytes(data)) else NO_MATCH

    def new_session(self, detected_by: str) -> Liar:
        self.sessions.append(Liar())
        return self.sessions[-1]


def test_engine_skips_only_exact_in_order_segments_without_tail_or_flags() -> None:
    dissector = LiarDissector()
    engine = FlowEngine([dissector])
    seq = C_ISN + 1

    def send(payload: bytes, flags: int = TH_ACK, at: int | None = None, cut: int = 0) -> None:
        nonlocal seq
        start = seq if at is None else at
        engine.process(
            Segment(1.0, *CLIENT[:1], SERVER[0], CLIENT[1], SERVER[1], start, 0, flags, payload,
                    None, cut)
        )  # fmt: skip
        if at is None:
            seq += len(payload) + cut + (1 if flags & TH_FIN else 0)

    engine.process(Segment(1.0, CLIENT[0], SERVER[0], CLIENT[1], SERVER[1], C_ISN, 0, TH_SYN, b""))
    send(b"HELLO\n")  # matches: fed
    send(b"skip me")  # in order, no tail: skipped
    send(b"part")  # skipped too (the liar said so)
    send(b"later", at=seq + 5)  # out of order: held, not skipped
    send(b"fill!")  # in order but data is held after it: fed with what it releases
    seq += 5  # past "later"
    send(b"no newline")  # fed: leaves a tail
    send(b" tail\n")  # a tail is pending: fed after it
    send(b"cut", cut=100)  # truncated by the snaplen: fed, then a gap
    send(b"bye", TH_FIN | TH_ACK)  # carries a FIN: fed
    [liar] = dissector.sessions
    assert liar.skipped == [7, 4]
    assert liar.fed == [
        b"HELLO\n",
        b"fill!",
        b"fill!later",
        b"fill!laterno newline",
        b"fill!laterno newline tail\n",
        b"cut",
        b"bye",  # the gap took the tail with it
    ]
