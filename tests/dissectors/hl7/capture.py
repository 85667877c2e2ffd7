"""Read a capture with dpkt, put each TCP connection back in order, feed it to an HL7 session.

Each direction of each connection is reassembled by sequence number (segments ahead of the
next expected byte are held until the hole fills, retransmitted bytes are dropped) and fed
in capture order, following the feed contract: the unconsumed tail of a direction is passed
again, followed by its next bytes. ORIGIN is the side that sent the first payload; the
plug-in's probe must match it. Only Ethernet (Linux ``lo`` included) / IPv4 / TCP.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt

from dissectors.base import CloseReason, Direction, Verdict
from dissectors.hl7 import HL7, HL7Session

Endpoint = tuple[str, int]
_MASK = 0xFFFFFFFF


@dataclass
class Chunk:
    """In-order payload bytes one endpoint sent, with the capture time of their packet."""

    src: Endpoint
    ts: float
    data: bytes


@dataclass
class Connection:
    """One TCP connection: who opened it (SYN) and its in-order payload chunks."""

    client: Endpoint
    server: Endpoint
    chunks: list[Chunk] = field(default_factory=list)
    last_ts: float = 0.0


@dataclass
class _Half:
    next_seq: int | None = None
    held: dict[int, tuple[float, bytes]] = field(default_factory=dict)


def read_connections(path: Path) -> list[Connection]:
    """Every TCP connection in the capture, in the order of its first packet."""
    conns: dict[frozenset[Endpoint], Connection] = {}
    halves: dict[tuple[Endpoint, Endpoint], _Half] = {}
    with open(path, "rb") as fh:
        for ts, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            src = (socket.inet_ntoa(ip.src), tcp.sport)
            dst = (socket.inet_ntoa(ip.dst), tcp.dport)
            key = frozenset((src, dst))
            syn = bool(tcp.flags & dpkt.tcp.TH_SYN)
            conn = conns.get(key)
            if conn is None:
                # The SYN's sender is the client; without one, the first sender.
                client, server = (dst, src) if syn and tcp.flags & dpkt.tcp.TH_ACK else (src, dst)
                conn = conns[key] = Connection(client, server)
            conn.last_ts = ts
            half = halves.setdefault((src, dst), _Half())
            if syn:
                half.next_seq = (tcp.seq + 1) & _MASK
                continue
            if not tcp.data:
                continue
            if half.next_seq is None:
                half.next_seq = tcp.seq
            half.held[tcp.seq] = (ts, bytes(tcp.data))
            _drain(conn, src, half)
    return list(conns.values())


def _drain(conn: Connection, src: Endpoint, half: _Half) -> None:
    """Move every held segment that is now in sequence into the connection's chunks."""
    progress = True
    while progress and half.next_seq is not None:
        progress = False
        for seq in list(half.held):
            ts, data = half.held[seq]
            offset = (half.next_seq - seq) & _MASK
            if offset >= 1 << 31:
                continue  # ahead of the next expected byte: keep holding it
            del half.held[seq]
            if offset < len(data):
                conn.chunks.append(Chunk(src, ts, data[offset:]))
                half.next_seq = (half.next_seq + len(data) - offset) & _MASK
                progress = True


@dataclass
class Decoded:
    """What the HL7 session produced for one connection."""

    connection: Connection
    origin: Endpoint
    session: HL7Session
    events: list[Any]
    close_events: list[Any]

    def endpoint(self, direction: Direction) -> Endpoint:
        """The endpoint that sent ``direction``'s bytes."""
        if direction is Direction.ORIGIN:
            return self.origin
        c = self.connection
        return c.server if self.origin == c.client else c.client

    def side(self, direction: Direction) -> str:
        """client or server, by who opened the TCP connection."""
        return "client" if self.endpoint(direction) == self.connection.client else "server"


def decode(conn: Connection) -> Decoded | None:
    """Feed one connection to a session of the HL7 plug-in; None when the probe declines."""
    if not conn.chunks:
        return None
    origin = conn.chunks[0].src
    verdict = HL7.probe(conn.chunks[0].data)
    if verdict.verdict is not Verdict.MATCH:
        return None
    session = HL7.new_session(verdict.detected_by)
    pending = {Direction.ORIGIN: b"", Direction.PEER: b""}
    events: list[Any] = []
    for chunk in conn.chunks:
        direction = Direction.ORIGIN if chunk.src == origin else Direction.PEER
        data = pending[direction] + chunk.data
        consumed, evs = session.feed(direction, data, chunk.ts)
        pending[direction] = data[consumed:]
        events.extend(evs)
    close_events = session.close(CloseReason.CONNECTION_CLOSED, conn.last_ts)
    return Decoded(conn, origin, session, events, close_events)
