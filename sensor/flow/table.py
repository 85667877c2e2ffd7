"""The flow table's entries: keys, per-direction state, limits and counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from dissectors.base import CloseReason, Session, Skipping

from ..capture.decode import TH_FIN, TH_RST, TH_SYN, DropReason
from .stream import ReassemblyStats, StreamReassembler

FlowKey = tuple[str, int, str, int, int | None]

PROBING = 0
MATCHED = 1
IGNORED = 2
CLOSED = 3  # session closed; the entry lingers to absorb stragglers

UNDECIDED = 0
NO_MATCH = 1

FIN_RST_SYN = TH_FIN | TH_RST | TH_SYN


class EngineAnomaly(StrEnum):
    """What the engine itself counts; the value doubles as a metric label."""

    TAIL_OVERFLOW = "tail-overflow"
    DISSECTOR_ERROR = "dissector-error"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Limits and timeouts of the flow engine."""

    max_flows: int = 24_576  # under 200 MB at the worst (every flow a half-open association)
    idle_timeout: float = 60.0  # probing and ignored flows, and flows closed by both FINs
    matched_idle_timeout: float = 300.0
    check_interval: float = 1.0  # advance() looks for idle flows at most this often
    probe_max_bytes: int = 1024
    probe_max_segments: int = 256  # the byte cap bounds work; tiny segments must not starve it
    midstream_probe_segments: int = 64
    midstream_probe_bytes: int = 256 * 1024
    silent_peer_packets: int = 8  # a silent side's packets after the other side's NO_MATCH
    unanswered_packets: int = 64  # a NO_MATCH side's packets while the other stays silent
    probe_history_bytes: int = 64 * 1024
    reassembly_max_bytes: int = 1 << 20
    reassembly_max_segments: int = 1024
    # Delivered bytes kept per direction until acknowledged, to compare retransmitted copies.
    reassembly_max_unacked_bytes: int = 64 * 1024
    reassembly_max_unacked_total: int = 8 << 20  # the same over every flow, with overheads
    tail_max_bytes: int = (1 << 20) + (64 << 10)
    closed_linger: float = 30.0  # a closed flow's entry absorbs late segments this long

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


@dataclass(frozen=True, slots=True)
class FlowInfo:
    """Who a session's flow is between; ORIGIN is the side whose bytes matched the probe."""

    origin_ip: str
    origin_port: int
    peer_ip: str
    peer_port: int
    vlan: int | None
    first_ts: float
    last_ts: float
    syn_seen: bool
    client_ip: str | None = None
    client_port: int | None = None
    protocol: str = ""  # the name of the dissector that matched
    overlap_mismatches: int = 0  # overlaps whose copies differed (stream.OverlapMismatch)


@dataclass(slots=True)
class EngineStats:
    """Plain counters of the engine's health."""

    packets: int = 0
    payload_bytes: int = 0
    dropped: dict[DropReason, int] = field(default_factory=dict)
    truncated_segments: int = 0
    flows_created: int = 0
    flows_active: int = 0
    flows_matched: int = 0
    flows_ignored: int = 0
    flows_closed: dict[CloseReason, int] = field(default_factory=dict)
    stream: ReassemblyStats = field(default_factory=ReassemblyStats)
    fast_packets: int = 0  # absorbed by the compiled reader, never built into Python objects
    tail_overflows: int = 0
    dissector_errors: int = 0

    def drop(self, reason: DropReason) -> None:
        """Count a frame the decoder turned away."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    @property
    def evicted(self) -> int:
        """Flows closed to make room."""
        return self.flows_closed.get(CloseReason.EVICTED, 0)


class Side:
    """One direction of a flow: its reassembler, probe state and unconsumed tail."""

    __slots__ = (
        "history",
        "history_bytes",
        "ip",
        "midstream",
        "packets",
        "payload_seen",
        "pending",
        "port",
        "probe_bytes",
        "probe_segments",
        "reasm",
        "tail",
        "verdict",
    )

    def __init__(self, ip: str, port: int, reasm: StreamReassembler) -> None:
        self.ip = ip
        self.port = port
        self.reasm = reasm
        self.packets = 0
        self.payload_seen = False
        self.verdict = UNDECIDED
        self.midstream = False
        self.probe_segments = 0
        self.probe_bytes = 0
        # Reassembled bytes kept while probing, to feed once either side matches.
        self.history: list[tuple[bytes, float]] = []
        self.history_bytes = 0
        # Mid-stream: consecutive segments held while the probe asks for more bytes.
        self.pending: list[tuple[bytes, float]] = []
        self.tail = b""

    def forget(self) -> None:
        """Drop every byte held for this side."""
        self.reasm.discard()
        self.history = []
        self.history_bytes = 0
        self.pending = []
        self.tail = b""


class Flow:
    """One TCP connection in the table."""

    __slots__ = (
        "client",
        "fast_key",
        "fins",
        "first_ts",
        "key",
        "last_ts",
        "loud",
        "origin",
        "protocol",
        "quiet",
        "removed",
        "session",
        "sides",
        "skipper",
        "state",
        "syn_seen",
    )

    def __init__(self, key: FlowKey, sides: tuple[Side, Side], ts: float) -> None:
        self.key = key
        self.sides = sides
        self.state = PROBING
        self.session: Session | None = None
        # The session again when it can skip bytes it would only count; found once, at match.
        self.skipper: Skipping | None = None
        # The compiled reader's key for this flow, and whether sides[0] is its lower end.
        self.fast_key: tuple[bytes, bool] | None = None
        self.protocol = ""
        self.origin = -1  # index into sides of the ORIGIN direction, once matched
        self.client = -1  # index into sides of the SYN sender, when seen
        self.syn_seen = False
        self.first_ts = ts
        self.last_ts = ts
        self.fins = 0  # bit per side that sent a FIN
        self.quiet = 0  # silent side's packets after the other side said NO_MATCH
        self.loud = 0  # NO_MATCH side's packets while the other side stays silent
        self.removed = False
