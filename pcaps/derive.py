#!/usr/bin/env python3
"""Derive edge-case captures from the real-peer captures in pcaps/.

Run from anywhere (paths are relative to this file):

    python3 pcaps/derive.py              # rewrite every pcaps/derived-*/ folder
    python3 pcaps/derive.py gap vlan     # only these cases (names without "derived-")
    python3 pcaps/derive.py --live-any   # also re-record derived-any-loopback (root, DCMTK)

Deterministic and offline: the same source captures always give byte-identical derived
captures (the pcapng case depends on editcap's version string). Every derived capture is
rewritten packet by packet with dpkt: sequence numbers stay consistent with the bytes,
IPv4 lengths and IPv4/TCP checksums are recomputed. The not-dicom case is crafted.

Expectations are copied from the source case's expected.json (tshark- and peer-log-derived)
where the derivation keeps the DICOM byte streams intact; where it does not (mid-stream
start, gap, cut), a small DICOM framing decoder here computes what the remaining bytes
hold, and that decoder is first checked against every source's expected.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

try:
    import dpkt
except ImportError:  # pragma: no cover - environment problem, said in one line
    sys.exit("derive.py: needs dpkt; run it with the project's venv python3 (make pcaps does)")

HERE = Path(__file__).resolve().parent
SNAPLEN = 262144
LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
ETH_IP4 = 0x0800
ETH_IP6 = 0x86DD
TPID_8021Q = 0x8100
TPID_8021AD = 0x88A8
SEQ_MOD = 1 << 32
CORE_KEYS = (
    "requestor_port_is_ephemeral",
    "acceptor_port",
    "calling_ae_title",
    "called_ae_title",
    "result",
    "end",
    "abort_by",
    "reject",
    "dimse",
    "user_identity",
    "ip_version",
    "requestor_ip",
    "acceptor_ip",
    "abort",
    "dimse_status",
)
STREAM_KEYS = (
    "pdu_counts",
    "presentation_contexts",
    "implementation",
    "tcp_end",
    "tcp_closed_first_by",
)


# --------------------------------------------------------------------------- packets


@dataclass(frozen=True)
class Pkt:
    """One captured TCP/IP packet, with everything needed to rebuild it byte for byte."""

    ts: float
    smac: bytes
    dmac: bytes
    src: bytes  # packed address: 4 bytes IPv4, 16 bytes IPv6
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    win: int
    opts: bytes
    payload: bytes
    ipf: tuple[int, ...] = ()  # IPv4 (tos, id, off, ttl); IPv6 (v_fc_flow, hlim)
    urp: int = 0

    @property
    def v6(self) -> bool:
        return len(self.src) == 16

    @property
    def ethertype(self) -> int:
        return ETH_IP6 if self.v6 else ETH_IP4

    @property
    def a(self) -> tuple[bytes, int]:
        return self.src, self.sport

    @property
    def b(self) -> tuple[bytes, int]:
        return self.dst, self.dport

    def ip_bytes(self) -> bytes:
        """The IP packet, lengths and checksums recomputed."""
        tcp = dpkt.tcp.TCP(
            sport=self.sport,
            dport=self.dport,
            seq=self.seq,
            ack=self.ack,
            win=self.win,
            urp=self.urp,
            opts=self.opts,
            data=self.payload,
        )
        tcp.off = 5 + len(self.opts) // 4
        tcp.flags = self.flags
        tcp.sum = 0
        if self.v6:
            flow, hlim = self.ipf or (0x60000000, 64)
            ip6 = dpkt.ip6.IP6(
                src=self.src,
                dst=self.dst,
                nxt=6,
                hlim=hlim,
                plen=20 + len(self.opts) + len(self.payload),
                data=tcp,
            )
            ip6._v_fc_flow = flow
            return bytes(ip6)
        tos, ident, off, ttl = self.ipf or (0, 0, 0x4000, 64)
        ip = dpkt.ip.IP(src=self.src, dst=self.dst, p=6, tos=tos, id=ident, ttl=ttl, data=tcp)
        ip._flags_offset = off
        ip.sum = 0
        return bytes(ip)


def ip_text(addr: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(addr) == 16 else socket.AF_INET, addr)


def ip_packed(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def read_capture(path: Path) -> list[Pkt]:
    """Every TCP packet of an Ethernet pcap (the source captures hold nothing else)."""
    out = []
    with open(path, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        if reader.datalink() != LINKTYPE_ETHERNET:
            raise SystemExit(f"derive.py: {path}: not an Ethernet capture")
        for ts, frame in reader:
            eth = dpkt.ethernet.Ethernet(frame)
            ip = eth.data
            tcp = ip.data
            if not isinstance(tcp, dpkt.tcp.TCP):
                raise SystemExit(f"derive.py: {path}: a frame that is not TCP")
            if isinstance(ip, dpkt.ip6.IP6):
                ipf: tuple[int, ...] = (ip._v_fc_flow, ip.hlim)
            else:
                ipf = (ip.tos, ip.id, ip._flags_offset, ip.ttl)
            out.append(
                Pkt(
                    ts,
                    eth.src,
                    eth.dst,
                    ip.src,
                    ip.dst,
                    tcp.sport,
                    tcp.dport,
                    tcp.seq,
                    tcp.ack,
                    tcp.flags,
                    tcp.win,
                    bytes(tcp.opts),
                    bytes(tcp.data),
                    ipf,
                    tcp.urp,
                )
            )
    return out


def source(case: str) -> list[Pkt]:
    return read_capture(HERE / case / "capture.pcap")


def source_expected(case: str) -> list[dict]:
    return json.loads((HERE / case / "expected.json").read_text())


# link layers: each returns the frame for a packet


def eth_frame(p: Pkt, tags: Iterable[tuple[int, int]] = ()) -> bytes:
    """Ethernet II, optionally with a stack of (TPID, TCI) tags, outermost first."""
    head = p.dmac + p.smac
    for tpid, tci in tags:
        head += struct.pack(">HH", tpid, tci)
    return head + struct.pack(">H", p.ethertype) + p.ip_bytes()


def sll_frame(p: Pkt, outgoing: bool) -> bytes:
    """LINKTYPE_LINUX_SLL: packet type, ARPHRD_ETHER, address length 6, address, protocol."""
    head = struct.pack(">HHH8sH", 4 if outgoing else 0, 1, 6, p.smac + b"\0\0", p.ethertype)
    return head + p.ip_bytes()


def sll2_frame(p: Pkt, outgoing: bool, ifindex: int = 2) -> bytes:
    """LINKTYPE_LINUX_SLL2: protocol, reserved, ifindex, ARPHRD_ETHER, type, 6, address."""
    head = struct.pack(
        ">HHIHBB8s", p.ethertype, 0, ifindex, 1, 4 if outgoing else 0, 6, p.smac + b"\0\0"
    )
    return head + p.ip_bytes()


def write_pcap(path: Path, frames: Iterable[tuple[float, bytes]], linktype: int) -> None:
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=SNAPLEN, linktype=linktype)
        for ts, frame in frames:
            writer.writepkt(frame, ts=ts)


def write_eth(path: Path, pkts: Iterable[Pkt]) -> None:
    write_pcap(path, ((p.ts, eth_frame(p)) for p in pkts), LINKTYPE_ETHERNET)


# --------------------------------------------------------------------------- TCP view


@dataclass
class Conn:
    """One TCP connection of a packet list: the client (SYN sender) is side 0."""

    client: tuple[bytes, int]
    server: tuple[bytes, int]
    isn: list[int | None] = field(default_factory=lambda: [None, None])
    idx: list[int] = field(default_factory=list)  # indexes into the packet list

    def side(self, p: Pkt) -> int:
        return 0 if p.a == self.client else 1

    def offset(self, p: Pkt) -> int:
        """Stream offset of the packet's first payload byte."""
        isn = self.isn[self.side(p)]
        if isn is None:
            raise ValueError("no SYN seen for this direction")
        return (p.seq - isn - 1) % SEQ_MOD

    def seq_at(self, side: int, offset: int) -> int:
        isn = self.isn[side]
        if isn is None:
            raise ValueError("no SYN seen for this direction")
        return (isn + 1 + offset) % SEQ_MOD


def connections(pkts: list[Pkt]) -> list[Conn]:
    """The connections of a capture in order of their SYN (every source capture has them)."""
    conns: dict[frozenset, Conn] = {}
    order: list[Conn] = []
    for i, p in enumerate(pkts):
        key = frozenset((p.a, p.b))
        conn = conns.get(key)
        if conn is None:
            if not p.flags & dpkt.tcp.TH_SYN or p.flags & dpkt.tcp.TH_ACK:
                continue
            conn = conns[key] = Conn(p.a, p.b)
            order.append(conn)
        if p.flags & dpkt.tcp.TH_SYN:
            conn.isn[conn.side(p)] = p.seq
        conn.idx.append(i)
    return order


def streams(pkts: list[Pkt], conn: Conn, keep: Callable[[int], bool] = lambda i: True):
    """Both directions' bytes, in order, first copy wins, of the packets ``keep`` admits.

    Returns per side (bytes, first offset, holes) where holes lists missing (start, end).
    """
    out = []
    for side in (0, 1):
        pieces: dict[int, bytes] = {}
        for i in conn.idx:
            p = pkts[i]
            if conn.side(p) == side and p.payload and keep(i):
                off = conn.offset(p)
                if off not in pieces or len(pieces[off]) < len(p.payload):
                    pieces[off] = p.payload
        if not pieces:
            out.append((b"", 0, []))
            continue
        first = min(pieces)
        buf = bytearray()
        holes = []
        for off in sorted(pieces):
            data = pieces[off]
            at = first + len(buf)
            if off > at:
                holes.append((at, off))
                buf += b"\0" * (off - at)
            elif off < at:
                data = data[at - off :]
            buf += data
        out.append((bytes(buf), first, holes))
    return out


# --------------------------------------------------------------------------- DICOM oracle

PDU_TYPES = {
    1: "A-ASSOCIATE-RQ",
    2: "A-ASSOCIATE-AC",
    3: "A-ASSOCIATE-RJ",
    4: "P-DATA-TF",
    5: "A-RELEASE-RQ",
    6: "A-RELEASE-RP",
    7: "A-ABORT",
}
COMMANDS = {
    0x0001: "C-STORE",
    0x0010: "C-GET",
    0x0020: "C-FIND",
    0x0021: "C-MOVE",
    0x0030: "C-ECHO",
    0x0100: "N-EVENT-REPORT",
    0x0110: "N-GET",
    0x0120: "N-SET",
    0x0130: "N-ACTION",
    0x0140: "N-CREATE",
    0x0150: "N-DELETE",
    0x0FFF: "C-CANCEL",
}


@dataclass
class Pdu:
    off: int  # stream offset of the PDU header
    type: int
    length: int
    body: bytes  # empty for P-DATA-TF (its PDVs are listed instead)
    pdvs: list[tuple[int, int, int, int]] = field(default_factory=list)  # off, len, ctx, ctrl

    @property
    def end(self) -> int:
        return self.off + 6 + self.length


@dataclass
class Command:
    first_pdu: int  # stream offset of the PDU holding the first command fragment
    end: int  # stream offset just past the last command fragment
    name: str
    status: int | None


def parse_pdus(data: bytes, start: int = 0) -> tuple[list[Pdu], int]:
    """Complete PDUs from ``start``; also where the first incomplete one starts."""
    pdus = []
    pos = start
    while pos + 6 <= len(data):
        ptype, length = struct.unpack_from(">BxI", data, pos)
        if ptype not in PDU_TYPES:
            raise ValueError(f"no PDU at stream offset {pos}")
        if pos + 6 + length > len(data):
            break
        pdu = Pdu(pos, ptype, length, b"" if ptype == 4 else data[pos + 6 : pos + 6 + length])
        if ptype == 4:
            at = pos + 6
            while at < pdu.end:
                plen, ctx, ctrl = struct.unpack_from(">IBB", data, at)
                pdu.pdvs.append((at, plen, ctx, ctrl))
                at += 4 + plen
        pdus.append(pdu)
        pos = pdu.end
    return pdus, pos


def parse_commands(data: bytes, pdus: list[Pdu]) -> list[Command]:
    """DIMSE commands whose every fragment is in ``pdus``."""
    out = []
    buf = bytearray()
    first = -1
    for pdu in pdus:
        for at, plen, _, ctrl in pdu.pdvs:
            if not ctrl & 1:
                continue
            if not buf:
                first = pdu.off
            buf += data[at + 6 : at + 4 + plen]
            if ctrl & 2:
                elements = {}
                pos = 0
                while pos + 8 <= len(buf):
                    group, elem, vlen = struct.unpack_from("<HHI", buf, pos)
                    elements[(group, elem)] = bytes(buf[pos + 8 : pos + 8 + vlen])
                    pos += 8 + vlen
                fld = struct.unpack("<H", elements[(0, 0x0100)])[0]
                status = elements.get((0, 0x0900))
                name = COMMANDS[fld & 0x7FFF] + ("-RSP" if fld & 0x8000 else "-RQ")
                out.append(
                    Command(
                        first,
                        at + 4 + plen,
                        name,
                        struct.unpack("<H", status)[0] if status else None,
                    )
                )
                buf.clear()
    return out


def ae(raw: bytes) -> str:
    return raw.decode("ascii").strip(" \0")


def association_facts(req: bytes, acc: bytes, since: tuple[int, int] = (0, 0)) -> dict:
    """What the requestor's and acceptor's bytes hold, counting DIMSE from ``since`` on.

    ``since`` gives, per direction, the stream offset from which a PDU must start for its
    command to count (a capture that begins mid-association sees only those).
    """
    (rq_pdus, rq_cut), (ac_pdus, ac_cut) = parse_pdus(req), parse_pdus(acc)
    facts: dict = {
        "calling_ae_title": None,
        "called_ae_title": None,
        "result": "no-response",
        "reject": None,
        "abort": None,
        "abort_by": None,
    }
    types: Counter = Counter()
    released = [False, False]
    for who, pdus in (("requestor", rq_pdus), ("acceptor", ac_pdus)):
        for pdu in pdus:
            types[f"0x{pdu.type:02x}"] += 1
            if pdu.type == 1:
                facts["called_ae_title"] = ae(pdu.body[4:20])
                facts["calling_ae_title"] = ae(pdu.body[20:36])
            elif pdu.type == 2:
                facts["result"] = "accepted"
            elif pdu.type == 3:
                facts["result"] = "rejected"
                facts["reject"] = dict(
                    zip(("result", "source", "reason"), pdu.body[1:4], strict=True)
                )
            elif pdu.type == 7 and facts["abort"] is None:
                facts["abort"] = {"source": pdu.body[2], "reason": pdu.body[3]}
                facts["abort_by"] = who
            elif pdu.type in (5, 6):
                released[pdu.type - 5] = True
    dimse: Counter = Counter()
    status: dict[str, Counter] = {}
    for data, pdus, start in ((req, rq_pdus, since[0]), (acc, ac_pdus, since[1])):
        for cmd in parse_commands(data, pdus):
            if cmd.first_pdu < start:
                continue
            dimse[cmd.name] += 1
            if cmd.status is not None:
                status.setdefault(cmd.name, Counter())[f"0x{cmd.status:04X}"] += 1
    facts["dimse"] = dict(sorted(dimse.items()))
    facts["dimse_status"] = {k: dict(sorted(v.items())) for k, v in sorted(status.items())}
    facts["released"] = all(released)
    facts["truncated"] = rq_cut < len(req) or ac_cut < len(acc)
    facts["pdu_counts"] = dict(sorted(types.items()))
    return facts


def check_oracle() -> None:
    """The framing decoder above must agree with tshark on every source capture."""
    for exp_path in sorted(HERE.glob("*/expected.json")):
        case = exp_path.parent.name
        if case.startswith("derived-"):
            continue
        pkts = source(case)
        expected = source_expected(case)
        conns = [c for c in connections(pkts) if any(pkts[i].payload for i in c.idx)]
        if len(conns) != len(expected):
            raise SystemExit(
                f"derive.py: {case}: {len(conns)} connections with data, "
                f"expected.json lists {len(expected)}"
            )
        for conn, exp in zip(conns, expected, strict=True):
            (req, _, _), (acc, _, _) = streams(pkts, conn)
            facts = association_facts(req, acc)
            for key in (
                "calling_ae_title",
                "called_ae_title",
                "result",
                "reject",
                "abort",
                "abort_by",
                "dimse",
                "dimse_status",
            ):
                if facts[key] != exp[key]:
                    raise SystemExit(
                        f"derive.py: oracle disagrees with {case}/expected.json "
                        f"on {key}: {facts[key]!r} != {exp[key]!r}"
                    )


# --------------------------------------------------------------------------- case output


@dataclass
class Case:
    name: str
    source: str
    how: str  # markdown: how the capture was made
    expect: str  # markdown: what a reader must report
    expected: list[dict]
    tshark: str = ""  # markdown: what tshark sees, when it differs


def expected_from(exp: dict, **changes: object) -> dict:
    """A source association's expectation, core and stream keys, with ``changes``."""
    out = {k: exp[k] for k in CORE_KEYS + STREAM_KEYS if k in exp}
    out.update(changes)
    return out


def finish_case(case: Case, capture: Path) -> None:
    """Write README.md and expected.json beside the capture."""
    folder = capture.parent
    (folder / "expected.json").write_text(json.dumps(case.expected, indent=2) + "\n")
    rows = "\n".join(
        f"| {i} | {e['requestor_ip']} -> {e['acceptor_ip']}:{e['acceptor_port']} | "
        f"{e['calling_ae_title'] or '(unknown)'} -> {e['called_ae_title'] or '(unknown)'} | "
        f"{e['result']} | {e['end']} | "
        + (", ".join(f"{k} x{v}" for k, v in e["dimse"].items()) or "none")
        + f" | {e.get('detected_by', 'associate-rq')} |"
        for i, e in enumerate(case.expected)
    )
    table = (
        "| # | requestor -> acceptor | calling -> called | result | end | DIMSE | detected by |\n"
        "|---|---|---|---|---|---|---|\n" + rows
        if rows
        else "No DICOM association at all (`expected.json` is `[]`)."
    )
    src = f"[`{case.source}`](../{case.source}/)" if case.source else "nothing (crafted)"
    text = (
        f"# {folder.name}\n\nDerived by `pcaps/derive.py` (case `{case.name}`) from {src}; "
        f"regenerate with `python3 pcaps/derive.py {case.name}`. Do not edit by hand.\n\n"
        f"File: `{capture.name}`, {capture.stat().st_size} bytes.\n\n"
        f"## How\n\n{case.how.strip()}\n\n## Expected\n\n{case.expect.strip()}\n\n{table}\n"
    )
    if case.tshark:
        text += f"\n## tshark\n\n{case.tshark.strip()}\n"
    (folder / "README.md").write_text(text)


def case_dir(name: str) -> Path:
    folder = HERE / f"derived-{name}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    return folder


# --------------------------------------------------------------------------- helpers


def piece(p: Pkt, conn: Conn, off: int, data: bytes, **changes: object) -> Pkt:
    """A copy of ``p`` carrying ``data`` at stream offset ``off`` of its direction."""
    return replace(p, seq=conn.seq_at(conn.side(p), off), payload=data, **changes)


def chop(start: int, end: int, sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    """[start, end) cut into pieces whose sizes cycle through ``sizes``."""
    out = []
    k = 0
    while start < end:
        step = min(sizes[k % len(sizes)], end - start)
        out.append((start, start + step))
        start += step
        k += 1
    return out


TINY = (1, 3, 2, 7, 5, 4, 6)  # 1-7 byte segments, a fixed irregular cycle


def data_indexes(pkts: list[Pkt], conn: Conn, side: int) -> list[int]:
    return [i for i in conn.idx if pkts[i].payload and conn.side(pkts[i]) == side]


def single(pkts: list[Pkt]) -> Conn:
    conns = connections(pkts)
    if len(conns) != 1:
        raise SystemExit(f"derive.py: expected one connection, found {len(conns)}")
    return conns[0]


# --------------------------------------------------------------------------- cases

STORE = "dcmtk-store-11112"
FMG = "dcmtk-find-move-get"


def case_split_pdus() -> Case:
    pkts = source(STORE)
    conn = single(pkts)
    (req, _, _), (acc, _, _) = streams(pkts, conn)
    rq_pdus, _ = parse_pdus(req)
    ac_pdus, _ = parse_pdus(acc)
    commands = parse_commands(req, rq_pdus)
    # From the third C-STORE-RQ on, the requestor's segments are coalesced instead.
    coalesce_from = [c for c in commands if c.name == "C-STORE-RQ"][2].first_pdu
    fine: list[list[tuple[int, int]]] = [[(0, rq_pdus[0].end)], []]
    for side, pdus in ((0, rq_pdus[1:]), (1, ac_pdus)):
        for pdu in pdus:
            if side == 1 or pdu.off < coalesce_from or pdu.type != 4:
                fine[side].append((pdu.off, min(pdu.off + 12, pdu.end)))

    def cuts(side: int, s: int, e: int) -> list[tuple[int, int]]:
        out = []
        pos = s
        for a, b in fine[side]:
            if b <= pos or a >= e:
                continue
            if a > pos:
                out.append((pos, a))
            out += chop(max(a, pos), min(b, e), TINY)
            pos = min(b, e)
        if pos < e:
            out.append((pos, e))
        return out

    out: list[Pkt] = []
    group: list[Pkt] = []
    group_at = -1
    max_coalesced = 60000

    def flush() -> None:
        nonlocal group, group_at
        if group:
            first = group[0]
            data = b"".join(p.payload for p in group)
            merged = piece(
                first, conn, conn.offset(first), data, flags=group[-1].flags, ack=group[-1].ack
            )
            out.insert(group_at, merged)
        group = []
        group_at = -1

    for i in conn.idx:
        p = pkts[i]
        side = conn.side(p)
        if not p.payload:
            out.append(p)
            continue
        off = conn.offset(p)
        if side == 0 and off >= coalesce_from and p.payload[:1] != b"\x05":
            if sum(len(g.payload) for g in group) + len(p.payload) > max_coalesced:
                flush()
            if not group:
                group_at = len(out)
            group.append(p)
            continue
        flush()
        for s, e in cuts(side, off, off + len(p.payload)):
            out.append(piece(p, conn, s, p.payload[s - off : e - off]))
    flush()
    folder = case_dir("split-pdus")
    write_eth(folder / "capture.pcap", out)
    n_tiny = sum(1 for p in out if 0 < len(p.payload) <= 7)
    n_big = sum(1 for p in out if len(p.payload) > 1448)
    exp = source_expected(STORE)[0]
    return Case(
        "split-pdus",
        STORE,
        f"""The one association of `{STORE}`, re-segmented (same bytes, same order):

- the whole A-ASSOCIATE-RQ ({rq_pdus[0].end} bytes) in segments of 1 to 7 bytes
  (sizes cycling {", ".join(map(str, TINY))});
- the first 12 bytes (PDU header and, for P-DATA-TF, the first PDV header) of every other
  PDU in 1-7 byte segments: A-ASSOCIATE-AC, every acceptor P-DATA-TF, A-RELEASE-RQ/RP, and
  the requestor's P-DATA-TF up to the third C-STORE-RQ;
- from the third C-STORE-RQ on, the requestor's consecutive data segments coalesced into
  segments of up to {max_coalesced} bytes, each holding many P-DATA-TF PDUs (command and
  data set PDUs of two C-STOREs);
- sequence numbers follow the bytes, ACKs and TCP options are kept, checksums recomputed.

{len(out)} packets ({len(pkts)} in the source): {n_tiny} of them carry 1-7 bytes,
{n_big} carry more than 1448 bytes.""",
        "Exactly what the source capture gives: every field of the association record equal to\n"
        "the source's record except addresses, ports and timestamps.",
        [expected_from(exp, anomalies={})],
        "tshark's DICOM heuristic needs an A-ASSOCIATE-RQ of at least 10 bytes in one segment,\n"
        "so it does not recognise this association at all (no `-d tcp.port==11112,dicom`).",
    )


def honest_acks(pkts: list[Pkt], conn: Conn) -> list[Pkt]:
    """Lower every ACK to what its sender can have received by then, as seen in capture order.

    A receiver never acknowledges bytes it has not got; a capture taken on the path (or at
    the receiver) therefore never shows an ACK before the data it covers. Out of order
    data makes the receiver repeat its last ACK (a duplicate ACK), which is what this gives.
    """
    have: list[list[tuple[int, int]]] = [[], []]  # per side, byte ranges captured so far
    upto = [0, 0]  # per side, contiguous bytes captured from offset 0
    out = []
    for p in pkts:
        side = conn.side(p)
        if p.payload:
            off = conn.offset(p)
            have[side].append((off, off + len(p.payload)))
            for a, b in sorted(have[side]):
                if a <= upto[side] < b:
                    upto[side] = b
        other = 1 - side
        if p.flags & dpkt.tcp.TH_ACK and conn.isn[other] is not None:
            got = conn.seq_at(other, upto[other])
            acked = (p.ack - conn.seq_at(other, 0)) % SEQ_MOD
            fin = 1 if any(q.flags & dpkt.tcp.TH_FIN for q in out if conn.side(q) == other) else 0
            if acked > upto[other] + fin:
                p = replace(p, ack=(got + fin) % SEQ_MOD)
        out.append(p)
    return out


def case_reordered() -> Case:
    pkts = source(STORE)
    conn = single(pkts)
    req_idx = data_indexes(pkts, conn, 0)
    acc_idx = data_indexes(pkts, conn, 1)
    order = list(conn.idx)  # packet indexes in capture order; timestamps stay by position
    notes = []

    def swap(i: int, j: int, why: str) -> None:
        a, b = order.index(i), order.index(j)
        order[a], order[b] = order[b], order[a]
        notes.append(why)

    swap(req_idx[0], req_idx[1], "the first two A-ASSOCIATE-RQ segments swapped")
    swap(acc_idx[1], acc_idx[2], "the second and third A-ASSOCIATE-AC segments swapped")
    big = [i for i in req_idx if len(pkts[i].payload) == 1448]
    for k in range(len(big) // 2, len(big) - 1, 9):
        swap(
            big[k],
            big[k + 1],
            f"data segments at stream offsets {conn.offset(pkts[big[k]])} "
            f"and {conn.offset(pkts[big[k + 1]])} swapped",
        )
    extra: list[tuple[int, Pkt, str]] = []  # (insert after packet index, packet, why)
    # Exact retransmissions of a command header segment, a data segment, an RSP and the FIN.
    headers = [i for i in req_idx if len(pkts[i].payload) == 12]
    fin = next(i for i in conn.idx if pkts[i].flags & dpkt.tcp.TH_FIN)
    for i, why in (
        (headers[1], "a 12-byte P-DATA header segment"),
        (big[5], "a data set segment"),
        (acc_idx[-2], "an acceptor P-DATA segment"),
        (fin, "the first FIN"),
    ):
        later = conn.idx[min(conn.idx.index(i) + 3, len(conn.idx) - 1)]
        extra.append((later, pkts[i], f"{why} retransmitted 3 packets later"))
    # Overlapping retransmissions: half of one segment and half of the next, after both;
    # and one straddling a PDU header, sent before the segments it overlaps.
    a, b = big[3], big[4]
    pa, pb = pkts[a], pkts[b]
    off = conn.offset(pa) + len(pa.payload) // 2
    data = (pa.payload + pb.payload)[len(pa.payload) // 2 : len(pa.payload) + len(pb.payload) // 2]
    extra.append(
        (
            b,
            piece(pa, conn, off, data),
            "an overlapping retransmission of the second "
            "half of one segment and the first half of the next",
        )
    )
    h = headers[3]
    nxt = req_idx[req_idx.index(h) + 1]
    ph, pn = pkts[h], pkts[nxt]
    off = conn.offset(ph) + 6
    data = (ph.payload + pn.payload)[6:400]
    before = order[order.index(h) - 1]
    extra.append(
        (
            before,
            piece(pn, conn, off, data),
            "a segment overlapping a P-DATA header "
            "and the data after it, captured before both originals",
        )
    )
    # A retransmission that covers a whole segment and more, with a different split.
    c, d = big[-6], big[-5]
    pc, pd = pkts[c], pkts[d]
    off = conn.offset(pc) - 100
    whole = (pkts[big[-7]].payload + pc.payload + pd.payload)[1448 - 100 : 1448 * 2 + 100]
    extra.append(
        (
            d,
            piece(pc, conn, off, whole),
            "a retransmission covering a whole segment and 100 bytes either side",
        )
    )
    out: list[Pkt] = []
    times = [pkts[i].ts for i in conn.idx]
    for pos, i in enumerate(order):
        out.append(replace(pkts[i], ts=times[pos]))
        for after, p, _ in extra:
            if after == i:
                out.append(replace(p, ts=out[-1].ts))
    notes += [why for _, _, why in extra]
    out = honest_acks(out, conn)
    folder = case_dir("reordered-retransmitted")
    write_eth(folder / "capture.pcap", out)
    exp = source_expected(STORE)[0]
    listing = "\n".join(f"- {n}" for n in notes)
    return Case(
        "reordered-retransmitted",
        STORE,
        f"""The one association of `{STORE}`, packets moved and repeated (timestamps stay in
capture order, so a moved packet takes the timestamp of the position it lands at; ACK
numbers are lowered where a moved segment would otherwise be acknowledged before it was
captured, turning those ACKs into the duplicate ACKs a receiver really sends):

{listing}

Every copy carries the same bytes as the original at that sequence number.
{len(out)} packets ({len(pkts)} in the source).""",
        "Exactly what the source capture gives (every record field but addresses, ports and\n"
        "timestamps), no DICOM anomaly: retransmissions and overlaps are TCP's business.",
        [expected_from(exp, anomalies={})],
        "tshark (with `-o tcp.reassemble_out_of_order:TRUE`) decodes the association too.",
    )


def case_ack_before_data() -> Case:
    pkts = source(FMG)
    conns = connections(pkts)
    sub = conns[3]  # the C-MOVE sub-association: long runs of full-size segments
    full = [i for i in data_indexes(pkts, sub, 0) if len(pkts[i].payload) == 1448]
    chosen = [full[1], full[len(full) // 2], full[-2]]
    order = list(range(len(pkts)))
    notes = []
    for i in chosen:
        end = sub.offset(pkts[i]) + len(pkts[i].payload)
        acker = next(
            j
            for j in sub.idx
            if j > i
            and sub.side(pkts[j]) == 1
            and (pkts[j].ack - sub.seq_at(0, 0)) % SEQ_MOD >= end
        )
        order.remove(i)
        order.insert(order.index(acker) + 1, i)
        notes.append(
            f"- the requestor's segment at stream offset {sub.offset(pkts[i])} moved to just "
            f"after packet {acker + 1}, the acceptor's ACK that covers it"
        )
    out = [replace(pkts[i], ts=pkts[pos].ts) for pos, i in enumerate(order)]
    folder = case_dir("ack-before-data")
    write_eth(folder / "capture.pcap", out)
    listing = "\n".join(notes)
    return Case(
        "ack-before-data",
        FMG,
        f"""`{FMG}` with three data segments of the C-MOVE sub-association (PACS -> MOVESCU)
each captured just after the ACK that acknowledges it, as a SPAN port or a capture merged
from two interfaces delivers them when the two directions reach the sensor with different
delays (timestamps stay in capture order). No byte is missing. {len(out)} packets.

{listing}""",
        "Exactly the source's records: an ACK above a hole does not prove the bytes are lost\n"
        "when they may still arrive a few packets later.",
        [expected_from(e, anomalies={}) for e in source_expected(FMG)],
    )


def case_gap() -> Case:
    pkts = source(STORE)
    conn = single(pkts)
    (req, _, _), _ = streams(pkts, conn)
    rq_pdus, _ = parse_pdus(req)
    stores = [c for c in parse_commands(req, rq_pdus) if c.name == "C-STORE-RQ"]
    # Data set PDV byte ranges of the last (largest) C-STORE.
    inside = []
    for pdu in rq_pdus:
        for at, plen, _, ctrl in pdu.pdvs:
            if not ctrl & 1 and at > stores[-1].end:
                inside.append((at + 6, at + 4 + plen))
    candidates = [
        i
        for i in data_indexes(pkts, conn, 0)
        if any(
            a <= conn.offset(pkts[i]) and conn.offset(pkts[i]) + len(pkts[i].payload) <= b
            for a, b in inside
        )
    ]
    gone = candidates[len(candidates) // 2]
    lost = pkts[gone]
    out = [pkts[i] for i in conn.idx if i != gone]
    folder = case_dir("gap")
    write_eth(folder / "capture.pcap", out)
    exp = source_expected(STORE)[0]
    off = conn.offset(lost)
    return Case(
        "gap",
        STORE,
        f"""The one association of `{STORE}` with one packet removed, as if the capture
had missed it: the requestor's segment at stream offset {off} ({len(lost.payload)} bytes, wholly
inside a data set PDV of the fourth C-STORE-RQ, the 129 KiB MR). The receiver's ACKs still
acknowledge it. {len(out)} packets.""",
        f"""The association as in the source (4 C-STORE-RQ, 4 C-STORE-RSP, released): the hole
lies inside a data set fragment, so no DIMSE message is lost. Besides, the record says
`dicom.gaps` = 1 and `dicom.missing_bytes` = {len(lost.payload)}, its anomalies are
`{{"gap": 1}}`, and one anomaly event with reason `gap` (sent by the requestor) is written.""",
        [expected_from(exp, anomalies={"gap": 1}, gaps=1, missing_bytes=len(lost.payload))],
        "tshark waits for the missing bytes of that P-DATA PDU and decodes nothing of the\n"
        "requestor's direction after the hole (it sees fewer C-STORE-RQs and no A-RELEASE-RQ).",
    )


def _mid(
    name: str,
    src: str,
    conn_no: int,
    start_at: Callable[[list[Pkt], Conn, bytes, list[Pdu]], int],
    what: str,
) -> Case:
    """``src`` without the packets before the one ``start_at`` picks in connection ``conn_no``."""
    pkts = source(src)
    conns = connections(pkts)
    conn = conns[conn_no]
    (req, _, _), _ = streams(pkts, conn)
    first = start_at(pkts, conn, req, parse_pdus(req)[0])
    expected = []
    notes = []
    for c, exp in zip(conns, source_expected(src), strict=True):
        kept = [i for i in c.idx if i >= first]
        if not any(pkts[i].payload for i in kept):
            notes.append(
                f"{exp['calling_ae_title']} -> {exp['called_ae_title']}: over before "
                "the capture starts"
            )
            continue
        if c.idx[0] >= first:
            expected.append(expected_from(exp, anomalies={}))
            notes.append(f"{exp['calling_ae_title']} -> {exp['called_ae_title']}: whole")
            continue
        since = []
        for side in (0, 1):
            offs = [c.offset(pkts[i]) for i in kept if pkts[i].payload and c.side(pkts[i]) == side]
            since.append(min(offs) if offs else 1 << 62)
        (req, _, _), (acc, _, _) = streams(pkts, c)
        facts = association_facts(req, acc, (since[0], since[1]))
        e = expected_from(
            exp,
            calling_ae_title=None,
            called_ae_title=None,
            result="accepted",
            end="released" if facts["released"] else "connection-closed",
            dimse=facts["dimse"],
            dimse_status=facts["dimse_status"],
            detected_by="mid-stream",
            anomalies={},
        )
        for key in ("pdu_counts", "presentation_contexts", "implementation"):
            e.pop(key, None)
        expected.append(e)
        notes.append(
            f"{exp['calling_ae_title']} -> {exp['called_ae_title']}: from requestor "
            f"stream offset {since[0]}, acceptor stream offset {since[1]} on (mid-stream)"
        )
    folder = case_dir(name)
    capture = folder / "capture.pcapng"
    with open(capture, "wb") as fh:
        writer = dpkt.pcapng.Writer(fh, snaplen=SNAPLEN, linktype=LINKTYPE_ETHERNET)
        for p in pkts[first:]:
            writer.writepkt(eth_frame(p), ts=p.ts)
    listing = "\n".join(f"- {n}" for n in notes)
    return Case(
        name,
        src,
        f"""`{src}` without its first {first} packets: the capture starts {what}.
{len(pkts) - first} packets. What is left of each association of the source:

{listing}

A mid-stream association has no SYN and no A-ASSOCIATE-RQ/AC here: it must be found from a
P-DATA-TF that starts a DIMSE command set.

Written as pcapng (dpkt's writer) so that `tests/sensor/test_read_pcaps.py`, which globs
`pcaps/*/capture.pcap` and requires `detected_by == "associate-rq"` of every record, does
not pick it up; `tests/sensor/test_read_derived.py` covers it.""",
        """Each mid-stream association: `detected_by` = `mid-stream`, `result` = `accepted`
(P-DATA flows), AE titles unknown (`null`), requestor and acceptor told apart by who sends
requests and who responses, `end` as the source says, and exactly the DIMSE messages whose
first command fragment starts in a PDU that begins after the cut (derive.py's own PDU
decoder counts them); no DICOM anomaly. Associations wholly inside the capture: as in the
source.""",
        expected,
        "tshark finds no DICOM in a mid-stream association: without an A-ASSOCIATE-RQ its\n"
        "heuristic never fires. It does decode the associations that start after the cut.",
    )


def _start_mid_dataset(pkts: list[Pkt], conn: Conn, req: bytes, pdus: list[Pdu]) -> int:
    """A requestor segment wholly inside the first C-STORE's data set, after the AC."""
    stores = [c for c in parse_commands(req, pdus) if c.name == "C-STORE-RQ"]
    inside = [
        (at + 6, at + 4 + plen)
        for pdu in pdus
        for at, plen, _, ctrl in pdu.pdvs
        if not ctrl & 1 and stores[0].end < at < stores[1].first_pdu
    ]
    cands = [
        i
        for i in data_indexes(pkts, conn, 0)
        if any(
            a < conn.offset(pkts[i]) and conn.offset(pkts[i]) + len(pkts[i].payload) <= b
            for a, b in inside
        )
    ]
    return cands[len(cands) // 2]


def _start_at_header(pkts: list[Pkt], conn: Conn, req: bytes, pdus: list[Pdu]) -> int:
    """The 12-byte P-DATA header segment before the second C-STORE-RQ command."""
    second = [c for c in parse_commands(req, pdus) if c.name == "C-STORE-RQ"][1].first_pdu
    return next(
        i
        for i in data_indexes(pkts, conn, 0)
        if conn.offset(pkts[i]) == second and len(pkts[i].payload) == 12
    )


def case_mid_dataset() -> Case:
    return _mid(
        "mid-association",
        STORE,
        0,
        _start_mid_dataset,
        "inside the data set of the first C-STORE-RQ, after the A-ASSOCIATE-AC",
    )


def case_mid_header() -> Case:
    return _mid(
        "mid-association-pdata-header",
        FMG,
        3,
        _start_at_header,
        "exactly at the 12-byte segment (P-DATA-TF header and PDV header) that DCMTK "
        "sends before the second C-STORE-RQ command of the C-MOVE sub-association "
        "(PACS -> MOVESCU); the C-MOVE association is then under way too, and its first "
        "C-MOVE-RSP lost its header to the cut",
    )


def _retagged(name: str, src: str, tags: list[tuple[int, int]], how: str, vlan_id: int) -> Case:
    pkts = source(src)
    folder = case_dir(name)
    write_pcap(
        folder / "capture.pcap", ((p.ts, eth_frame(p, tags)) for p in pkts), LINKTYPE_ETHERNET
    )
    expected = [expected_from(e, anomalies={}, vlan_id=vlan_id) for e in source_expected(src)]
    return Case(
        name,
        src,
        f"Every frame of `{src}` {how}; IP and TCP untouched. {len(pkts)} packets.",
        f"Exactly the source's records, plus `network.vlan.id` = {vlan_id} on each"
        + (" (the outer tag's id)." if len(tags) > 1 else "."),
        expected,
    )


def case_vlan() -> Case:
    return _retagged(
        "vlan",
        FMG,
        [(TPID_8021Q, (5 << 13) | 120)],
        "with one 802.1Q tag inserted (TPID 0x8100, PCP 5, VLAN 120)",
        120,
    )


def case_qinq() -> Case:
    return _retagged(
        "qinq",
        "abort-by-acceptor",
        [(TPID_8021AD, (3 << 13) | 300), (TPID_8021Q, (5 << 13) | 120)],
        "with a QinQ tag stack inserted: outer 802.1ad S-tag (TPID 0x88a8, PCP 3, "
        "VLAN 300), inner 802.1Q C-tag (TPID 0x8100, PCP 5, VLAN 120)",
        300,
    )


def case_ipv6_vlan() -> Case:
    return _retagged(
        "ipv6-vlan",
        "pynetdicom-ipv6",
        [(TPID_8021Q, 120)],
        "(IPv6) with one 802.1Q tag inserted (TPID 0x8100, VLAN 120)",
        120,
    )


def _cooked(name: str, src: str, linktype: int, what: str) -> Case:
    pkts = source(src)
    conns = connections(pkts)
    servers = {c.server for c in conns}
    make = sll_frame if linktype == LINKTYPE_LINUX_SLL else sll2_frame
    folder = case_dir(name)
    write_pcap(folder / "capture.pcap", ((p.ts, make(p, p.a in servers)) for p in pkts), linktype)
    return Case(
        name,
        src,
        f"""Every frame of `{src}` re-encapsulated as {what}, as `tcpdump -i any` writes on
Linux: the Ethernet header replaced by the cooked header (packet type 0 "to us" for what
the acceptor receives, 4 "outgoing" for what it sends, ARPHRD_ETHER, the sender's MAC as
link-layer address). IP and TCP untouched. {len(pkts)} packets.""",
        "Exactly the source's records.",
        [expected_from(e, anomalies={}) for e in source_expected(src)],
    )


def case_sll() -> Case:
    return _cooked("sll", STORE, LINKTYPE_LINUX_SLL, "LINKTYPE_LINUX_SLL (113, 16-byte header)")


def case_sll2() -> Case:
    return _cooked(
        "sll2",
        FMG,
        LINKTYPE_LINUX_SLL2,
        "LINKTYPE_LINUX_SLL2 (276, 20-byte header, interface index 2)",
    )


def case_pcapng() -> Case:
    editcap = shutil.which("editcap")
    if editcap is None:
        raise SystemExit("derive.py: the pcapng case needs editcap (wireshark-common)")
    folder = case_dir("pcapng")
    capture = folder / "capture.pcapng"
    subprocess.run(
        [editcap, "-F", "pcapng", str(HERE / FMG / "capture.pcap"), str(capture)], check=True
    )
    version = subprocess.run([editcap, "--version"], capture_output=True, text=True).stdout
    return Case(
        "pcapng",
        FMG,
        f"""`editcap -F pcapng {FMG}/capture.pcap capture.pcapng`
({version.splitlines()[0] if version else "editcap"}): the same packets in pcapng blocks
(section header, interface description, enhanced packet blocks).""",
        "Exactly the source's records.",
        [expected_from(e, anomalies={}) for e in source_expected(FMG)],
    )


PARALLEL = (
    (FMG, 0.0),
    ("dcmtk-echo-104", 0.030),
    ("dcmtk-reject-called-ae", 0.120),
    ("abort-by-acceptor", 0.200),
)


def case_parallel() -> Case:
    merged: list[tuple[float, int, int, Pkt]] = []
    expected = []
    lines = []
    base = None
    for k, (src, delay) in enumerate(PARALLEL, start=1):
        pkts = source(src)
        old, new = ip_packed("10.10.0.1"), ip_packed(f"10.10.{k}.1")
        if base is None:
            base = pkts[0].ts
        shift = base + delay - pkts[0].ts

        def addr(a: bytes, old: bytes = old, new: bytes = new) -> bytes:
            return new if a == old else a

        for n, p in enumerate(pkts):
            q = replace(p, ts=p.ts + shift, src=addr(p.src), dst=addr(p.dst))
            merged.append((q.ts, k, n, q))
        for e in source_expected(src):
            e = expected_from(e, anomalies={})
            for key in ("requestor_ip", "acceptor_ip"):
                e[key] = f"10.10.{k}.1" if e[key] == "10.10.0.1" else e[key]
            expected.append((pkts[0].ts + shift, e))
        span = pkts[-1].ts - pkts[0].ts
        lines.append(
            f"- `{src}`: 10.10.0.1 rewritten to 10.10.{k}.1, starts {delay * 1000:.0f} ms "
            f"after the first, lasts {span:.3f} s"
        )
    merged.sort(key=lambda m: (m[0], m[1], m[2]))
    folder = case_dir("parallel")
    write_eth(folder / "capture.pcap", (m[3] for m in merged))
    # expected.json lists associations by first SYN, as the real cases do.
    pkts = [m[3] for m in merged]
    order = {}
    for n, conn in enumerate(connections(pkts)):
        order[(ip_text(conn.server[0]), conn.server[1], ip_text(conn.client[0]))] = n
    exps = [e for _, e in expected]
    exps.sort(
        key=lambda e: (
            order.get((e["acceptor_ip"], e["acceptor_port"], e["requestor_ip"]), 0),
            e["acceptor_port"],
        )
    )
    listing = "\n".join(lines)
    return Case(
        "parallel",
        ", ".join(s for s, _ in PARALLEL),
        f"""Four real captures merged by timestamp after shifting each to start a few ms after
the first, so their associations overlap in time (the C-MOVE sub-association, the C-ECHO,
the rejection and both aborts all happen while `{FMG}` is under way). Each source's
requestor host 10.10.0.1 gets its own address so no two connections share a 4-tuple;
checksums recomputed. {len(pkts)} packets.

{listing}""",
        f"The {len(exps)} associations of the four sources, each exactly as in its own capture.",
        exps,
    )


def case_cut() -> Case:
    pkts = source(FMG)
    conns = connections(pkts)
    sub = conns[3]  # the C-MOVE sub-association (C-STOREs from PACS to the move destination)
    _, (acc, _, _) = streams(pkts, sub)
    rsp = next(c for c in parse_commands(acc, parse_pdus(acc)[0]) if c.name == "C-STORE-RSP")
    first_rsp_pkt = next(
        i for i in data_indexes(pkts, sub, 1) if sub.offset(pkts[i]) == rsp.first_pdu
    )
    cut_pkt = first_rsp_pkt - 1  # the packet just before: cut in the middle of its record
    folder = case_dir("cut-mid-packet")
    capture = folder / "capture.pcap"
    write_eth(capture, pkts)
    raw = capture.read_bytes()
    # pcap: 24-byte file header, then per packet a 16-byte record header and the frame.
    pos = 24
    for p in pkts[:cut_pkt]:
        pos += 16 + len(eth_frame(p))
    keep = pos + 16 + len(eth_frame(pkts[cut_pkt])) // 2
    capture.write_bytes(raw[:keep])
    expected = []
    for conn, exp in zip(conns, source_expected(FMG), strict=True):
        (req, _, _), (acc, _, _) = streams(pkts, conn, keep=lambda i: i < cut_pkt)
        facts = association_facts(req, acc)
        e = expected_from(exp, anomalies={"truncated": 1} if facts["truncated"] else {})
        if facts["pdu_counts"] != exp["pdu_counts"]:
            e.update(
                dimse=facts["dimse"],
                dimse_status=facts["dimse_status"],
                end="released" if facts["released"] else "capture-ended",
                pdu_counts=facts["pdu_counts"],
            )
            for key in ("tcp_end", "tcp_closed_first_by"):
                e.pop(key, None)
        expected.append(e)
    return Case(
        "cut-mid-packet",
        FMG,
        f"""`{FMG}` written again and then cut {keep} bytes into the file: in the middle of
packet {cut_pkt + 1}'s frame (its 16-byte record header is complete and promises
{len(eth_frame(pkts[cut_pkt]))} bytes, only half of them follow). That packet is the last one
before the first C-STORE-RSP of the C-MOVE sub-association; {cut_pkt} packets are whole.""",
        """`read` exits 0, says `capture cut off` in its stderr summary, and reports everything
before the cut: the two C-FIND associations released, the C-MOVE association and its
sub-association open when the capture ends (`end` = `capture-ended`) with the DIMSE messages
seen so far; the C-GET association is not in the file at all.""",
        [e for e in expected if e.get("pdu_counts")],
        'tshark reads up to the cut too, and warns: "appears to have been cut short in the\n'
        'middle of a packet".',
    )


# not-dicom: crafted conversations


def _conversation(
    client: str,
    server: str,
    cport: int,
    sport: int,
    t0: float,
    exchanges: list[tuple[int, bytes]],
    isn: tuple[int, int],
) -> list[Pkt]:
    """A whole TCP conversation: handshake, the exchanges (side, bytes), FIN both ways."""
    cmac, smac = bytes.fromhex("020000000101"), bytes.fromhex("020000000202")
    ends = [(ip_packed(client), cport, cmac), (ip_packed(server), sport, smac)]
    seq = [isn[0], isn[1]]
    out = []
    ts = t0
    ident = [0x1000, 0x2000]
    opts = b"\x01\x01\x08\x0a" + struct.pack(">II", 1000, 2000)

    def emit(side: int, flags: int, data: bytes = b"", syn_opts: bytes | None = None) -> None:
        nonlocal ts
        (src, sp, smac_), (dst, dp, dmac_) = ends[side], ends[1 - side]
        ack = seq[1 - side] if flags & dpkt.tcp.TH_ACK else 0
        out.append(
            Pkt(
                ts,
                smac_,
                dmac_,
                src,
                dst,
                sp,
                dp,
                seq[side],
                ack,
                flags,
                64240,
                syn_opts if syn_opts is not None else opts,
                data,
                (0, ident[side], 0x4000, 64),
            )
        )
        ident[side] += 1
        seq[side] = (
            seq[side] + len(data) + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)
        ) % SEQ_MOD
        ts += 0.000250

    syn_opts = (
        b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + struct.pack(">II", 1000, 0) + b"\x01\x03\x03\x07"
    )
    emit(0, dpkt.tcp.TH_SYN, syn_opts=syn_opts)
    emit(1, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, syn_opts=syn_opts)
    emit(0, dpkt.tcp.TH_ACK)
    for side, data in exchanges:
        for k in range(0, len(data), 1448):
            emit(side, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, data[k : k + 1448])
        emit(1 - side, dpkt.tcp.TH_ACK)
    emit(0, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)
    emit(1, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)
    emit(0, dpkt.tcp.TH_ACK)
    return out


def _client_hello() -> bytes:
    """A TLS 1.2 ClientHello with SNI pacs.example, fixed random (no real peer's randomness)."""
    sni_name = b"pacs.example"
    sni = struct.pack(">HBH", len(sni_name) + 3, 0, len(sni_name)) + sni_name
    exts = struct.pack(">HH", 0, len(sni)) + sni
    exts += struct.pack(">HHH", 10, 4, 2) + b"\x00\x17"  # supported groups: secp256r1
    exts += struct.pack(">HHH", 13, 4, 2) + b"\x04\x03"  # signature algorithms
    suites = b"\xc0\x2f\xc0\x2b\x00\x9c\x00\x2f"
    body = b"\x03\x03" + bytes(range(32)) + b"\x00" + struct.pack(">H", len(suites)) + suites
    body += b"\x01\x00" + struct.pack(">H", len(exts)) + exts
    hs = b"\x01" + struct.pack(">I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def _noise(seed: int, n: int) -> bytes:
    """Deterministic pseudo-random bytes (xorshift), first byte never 0x01, 0x02 or 0x04."""
    x = seed or 1
    out = bytearray()
    while len(out) < n:
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out += struct.pack("<I", x)
    if out[0] in (1, 2, 4):
        out[0] = 0x99
    return bytes(out[:n])


def case_not_dicom() -> Case:
    http_rq = b"GET /wado?requestType=WADO HTTP/1.1\r\nHost: pacs.example\r\nAccept: */*\r\n\r\n"
    http_rp = (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found"
    )
    server_hello_ish = b"\x16\x03\x03\x00\x31\x02\x00\x00\x2d\x03\x03" + _noise(7, 0x2D - 2)
    fake_rq = (
        b"\x01\x00"
        + b"\x00\x00\x00\x80"
        + b"\x00\x01\x00\x00"  # looks like an RQ head
        + b"\x8f\xfe\x00\x13" * 8
        + _noise(11, 100)
    )  # but no AE titles follow
    fake_pdata = (
        b"\x04\x00\x00\x00\x00\x40"
        + b"\x00\x00\x00\x3c\x02\x07"  # even ctx, bad ctl
        + _noise(13, 60)
    )
    flows = [
        ("HTTP request/response on port 104", 104, [(0, http_rq), (1, http_rp)]),
        (
            "TLS ClientHello and a server answer on port 11112",
            11112,
            [(0, _client_hello()), (1, server_hello_ish)],
        ),
        (
            "random bytes both ways on port 40999",
            40999,
            [(0, _noise(3, 3000)), (1, _noise(5, 700)), (0, _noise(9, 200))],
        ),
        (
            "0x01 0x00 and an RQ-like header, then bytes no A-ASSOCIATE-RQ has, on port 104",
            104,
            [(0, fake_rq), (1, b"\x15\x03\x03\x00\x02\x02\x28")],
        ),
        (
            "0x04 0x00, a P-DATA-like header with an even context and bad control byte, "
            "then noise, on port 11112",
            11112,
            [(0, fake_pdata), (1, _noise(17, 40))],
        ),
        (
            "the server speaks first: an A-ASSOCIATE-AC-like 0x02 0x00 then text, on port 104",
            104,
            [(1, b"\x02\x00\x00\x00\x00\x10" + b"220 ftp.example FTP ready\r\n"), (0, b"QUIT\r\n")],
        ),
    ]
    pkts: list[Pkt] = []
    lines = []
    for k, (what, port, exchanges) in enumerate(flows):
        pkts += _conversation(
            "10.20.0.1",
            f"10.20.0.{10 + k}",
            51000 + k,
            port,
            1700000000.0 + k,
            exchanges,
            (0x10000000 * (k + 1), 0x80000000 + 0x01000000 * k),
        )
        lines.append(f"- 10.20.0.1:{51000 + k} -> 10.20.0.{10 + k}:{port}: {what}")
    folder = case_dir("not-dicom")
    write_eth(folder / "capture.pcap", pkts)
    listing = "\n".join(lines)
    return Case(
        "not-dicom",
        "",
        f"""Crafted with dpkt (no real peer sends these to a DICOM port on purpose): six complete
TCP conversations (SYN, SYN-ACK, ACK, data both ways each ACKed, FIN both ways, ACK), one
second apart, checksums valid. {len(pkts)} packets.

{listing}""",
        "Zero associations, zero DICOM anomaly events: none of these is DICOM, whatever the port.",
        [],
    )


ANY_PORT = 41112


def case_any_loopback_live() -> Case:
    """Re-record derived-any-loopback for real: tcpdump -i any around DCMTK on 127.0.0.1."""
    for tool in ("/usr/bin/storescp", "/usr/bin/echoscu", "tcpdump"):
        if not shutil.which(tool):
            raise SystemExit(f"derive.py --live-any: {tool} not found")
    folder = HERE / "derived-any-loopback"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.pcap"
        dump = subprocess.Popen(
            [
                "tcpdump",
                "-i",
                "any",
                "-n",
                "-s",
                "0",
                "-U",
                "--immediate-mode",
                "-w",
                str(raw),
                f"tcp port {ANY_PORT}",
            ],
            stderr=subprocess.PIPE,
        )
        try:
            time.sleep(1.0)
            scp = subprocess.Popen(["/usr/bin/storescp", "-aet", "ANY-SCP", str(ANY_PORT)])
            time.sleep(0.5)
            subprocess.run(
                [
                    "/usr/bin/echoscu",
                    "-aet",
                    "ANYSCU",
                    "-aec",
                    "ANY-SCP",
                    "127.0.0.1",
                    str(ANY_PORT),
                ],
                check=True,
            )
            time.sleep(0.5)
            scp.terminate()
            scp.wait()
        finally:
            time.sleep(0.5)
            dump.terminate()
            dump.wait()
        folder.mkdir(exist_ok=True)
        shutil.copy(raw, folder / "capture.pcap")
    version = subprocess.run(["tcpdump", "--version"], capture_output=True, text=True).stdout
    (folder / "provenance.txt").write_text(
        f"recorded by pcaps/derive.py --live-any\n{version}"
        f"storescp -aet ANY-SCP {ANY_PORT}; echoscu -aet ANYSCU -aec ANY-SCP 127.0.0.1 {ANY_PORT}\n"
    )
    return case_any_loopback()


def case_any_loopback() -> Case:
    """Rewrite README/expected.json of the recorded capture (the capture itself is kept)."""
    capture = HERE / "derived-any-loopback" / "capture.pcap"
    if not capture.exists():
        raise SystemExit(
            "derive.py: derived-any-loopback/capture.pcap missing; record it with --live-any"
        )
    with open(capture, "rb") as fh:
        linktype = dpkt.pcap.Reader(fh).datalink()
    expected = [
        {
            "requestor_port_is_ephemeral": True,
            "acceptor_port": ANY_PORT,
            "calling_ae_title": "ANYSCU",
            "called_ae_title": "ANY-SCP",
            "result": "accepted",
            "end": "released",
            "abort_by": None,
            "reject": None,
            "dimse": {"C-ECHO-RQ": 1, "C-ECHO-RSP": 1},
            "user_identity": None,
            "ip_version": 4,
            "requestor_ip": "127.0.0.1",
            "acceptor_ip": "127.0.0.1",
            "abort": None,
            "dimse_status": {"C-ECHO-RSP": {"0x0000": 1}},
            "implementation": {
                side: {"class_uid": "1.2.276.0.7230010.3.0.3.6.7", "version": "OFFIS_DCMTK_367"}
                for side in ("requestor", "acceptor")
            },
            "anomalies": {},
        }
    ]
    return Case(
        "any-loopback",
        "",
        f"""Recorded for real, not rewritten: `tcpdump -i any -n -s 0 -U -w capture.pcap 'tcp port
{ANY_PORT}'` while DCMTK 3.6.7 `/usr/bin/storescp -aet ANY-SCP {ANY_PORT}` and
`/usr/bin/echoscu -aet ANYSCU -aec ANY-SCP 127.0.0.1 {ANY_PORT}` ran on this machine's
loopback (re-record with `python3 pcaps/derive.py --live-any`, root). Link type {linktype}
(LINUX_SLL2, what libpcap 1.10 writes for `-i any`); every packet appears once, as `lo`
is a single interface. See provenance.txt for the tool versions.""",
        "One association ANYSCU -> ANY-SCP on 127.0.0.1, C-ECHO, released.",
        expected,
    )


CASES: dict[str, Callable[[], Case]] = {
    "split-pdus": case_split_pdus,
    "reordered-retransmitted": case_reordered,
    "ack-before-data": case_ack_before_data,
    "gap": case_gap,
    "mid-association": case_mid_dataset,
    "mid-association-pdata-header": case_mid_header,
    "vlan": case_vlan,
    "qinq": case_qinq,
    "ipv6-vlan": case_ipv6_vlan,
    "sll": case_sll,
    "sll2": case_sll2,
    "pcapng": case_pcapng,
    "parallel": case_parallel,
    "cut-mid-packet": case_cut,
    "not-dicom": case_not_dicom,
    "any-loopback": case_any_loopback,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help=f"cases to make (default all): {', '.join(CASES)}")
    parser.add_argument(
        "--live-any",
        action="store_true",
        help="re-record derived-any-loopback with tcpdump -i any (root, DCMTK)",
    )
    args = parser.parse_args(argv)
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")
    check_oracle()
    names = args.cases or list(CASES)
    for name in names:
        if name == "any-loopback" and args.live_any:
            case = case_any_loopback_live()
        else:
            case = CASES[name]()
        folder = HERE / f"derived-{name}"
        capture = next(folder.glob("capture.pcap*"))
        finish_case(case, capture)
        print(
            f"derive.py: derived-{name}: {capture.name} {capture.stat().st_size} bytes, "
            f"{len(case.expected)} association(s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
