"""Differential test: our DICOM dissector against tshark's (Wireshark 4.0) on every capture.

Every ``pcaps/<case>/capture.pcap`` is found by glob, so a new case folder is picked up
without touching this file. For each TCP connection both decoders see, this compares:

* the sequence of PDU types sent in each direction;
* A-ASSOCIATE-RQ/AC: AE titles, application context name, presentation contexts (RQ: id,
  abstract syntax, transfer syntaxes; AC: id, result, transfer syntax), user information
  (max PDU length, implementation class UID and version name, role selection, asynchronous
  operations window, extended negotiation SOP classes, user identity type/username/whether a
  passcode is present; the passcode itself is never compared or printed, only checked to be
  absent from everything our dissector produced);
* A-ASSOCIATE-RJ result/source/reason and A-ABORT source/reason;
* per DIMSE message, per direction: command field, message id, message id being responded
  to, affected SOP class UID, status, move destination.

Our side: the pcap is read with dpkt, each direction of each TCP connection is put back in
sequence order (out-of-order segments are held until the hole is filled, retransmitted bytes
dropped) and fed, in capture order, to a DicomSession from the DICOM plug-in, following the
feed contract (the unconsumed tail is passed again, followed by the next bytes). ORIGIN is the
side that sent the first payload; the plug-in's probe must match it.

tshark's side: ``tshark -T pdml -Y dicom`` with out-of-order TCP reassembly and
``dicom.tag_tree`` on (so the DIMSE command elements are fields, not just text), plus
``-d tcp.port==P,dicom`` for each acceptor port (the destination port of each connection's
A-ASSOCIATE-RQ, as found by our side).

Normalisations (each also noted where it is applied):

N1  AE titles: tshark shows the 16-byte field as is, with its space padding; PS3.8 9.3.2 says
    leading and trailing spaces are not significant, so tshark's are stripped (and NULs, which
    our decoder also trims).
N2  UIDs: tshark decorates known UIDs with their names, ``Name (uid)`` in A-ASSOCIATE items
    and ``uid (Name)`` in DIMSE elements, and may keep a trailing NUL pad byte (PS3.5 9.1);
    the UID alone is taken, without the pad.
N3  Numbers: tshark shows some in hex (``0x01``), some in decimal; both are parsed to ints.
N4  P-DATA-TF: tshark shows one PDU type entry per complete PDU, but DIMSE per reassembled
    command set (in the frame of its last fragment); so PDU types are compared per PDU and
    DIMSE per message, each in its own list, never PDU-to-message.
N5  A PDU cut off by the end of the connection is never shown by tshark (TCP reassembly never
    completes it); our session counts a P-DATA-TF when its header arrives, and says at close
    that the connection ended inside a PDU. Such a last, incomplete P-DATA-TF is left out of
    our PDU sequence. DIMSE commands that did complete are compared as usual.
N6  Our session emits no event per P-DATA-TF; the PDU sequence is rebuilt from its public
    per-direction counters (``state.counters[d].pdus`` / ``.pdata_pdus``) between feed calls,
    ordered by the events of that call. When one call completed both P-DATA-TF and other PDUs
    (order not knowable from counters), the same bytes are replayed one byte per call into a
    fresh session (the feed contract says any split gives the same events, which is checked).
N7  User-information sub-items tshark 4.0 does not decode (it shows them as unknown: 0x57 SOP
    class common extended negotiation, 0x59 user identity AC) are not compared; for those we
    assert our decoder did decode them, and note tshark's gap.
N8  Requests' status: a DIMSE request has no status element; both sides give None.
N9  Connections: tshark's heuristic needs the A-ASSOCIATE-RQ, so an association already open
    when the capture started (which we pick up mid-stream, or from its AC) is ours alone; such
    a connection is asserted to be decoded by us and noted as tshark's gap, not failed. Every
    connection tshark decodes must be one we decode, with the same requestor.

Our TCP reassembly declares a hole lost only at the end of the capture (the captures are
clean; a hole there would be reported as a gap to the session, after the data before it).

The test fails, not skips, when tshark is missing: CI installs it.
"""

from __future__ import annotations

import functools
import re
import shutil
import socket
import struct
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt
import pytest

from dissectors.base import CloseReason, Direction, Verdict
from dissectors.dicom import DICOM, DicomSession, Reason
from dissectors.dicom.dimse import DimseCommand
from dissectors.dicom.events import (
    Aborted,
    Anomaly,
    AssociationAccepted,
    AssociationRejected,
    AssociationRequested,
    DimseMessage,
    ReleaseReplied,
    ReleaseRequested,
)
from dissectors.dicom.items import UserInformation
from dissectors.dicom.pdu import AssociateAC, AssociateRQ
from dissectors.dicom.probe import DETECTED_BY_RQ

PCAPS = Path(__file__).resolve().parents[3] / "pcaps"
# Real-peer captures only: the derived-* cases (rewritten, cut, crafted) are compared with
# tshark in tests/sensor/test_read_derived.py, which documents where tshark sees less.
CASES = sorted(
    p.parent.name for p in PCAPS.glob("*/capture.pcap") if not p.parent.name.startswith("derived-")
)
TSHARK_TIMEOUT = 120

ORIGIN = Direction.ORIGIN
PEER = Direction.PEER

Endpoint = tuple[str, int]
ConnKey = tuple[Endpoint, Endpoint]  # the two endpoints, sorted

_CONTROL_PDU = {
    AssociationRequested: 0x01,
    AssociationAccepted: 0x02,
    AssociationRejected: 0x03,
    ReleaseRequested: 0x05,
    ReleaseReplied: 0x06,
    Aborted: 0x07,
}
UNKNOWN_PDU = 0  # a PDU our session counted but reported no event for
_SEQ_MASK = 0xFFFFFFFF


def _conn_key(a: Endpoint, b: Endpoint) -> ConnKey:
    return (a, b) if a <= b else (b, a)


# --------------------------------------------------------------------------------------
# The normalised view both sides are reduced to
# --------------------------------------------------------------------------------------


@dataclass
class ConnView:
    """What one decoder showed for one TCP connection, normalised for comparison."""

    origin: Endpoint
    pdus: dict[Direction, list[int]] = field(default_factory=lambda: {ORIGIN: [], PEER: []})
    rq: list[dict[str, Any]] = field(default_factory=list)
    ac: list[dict[str, Any]] = field(default_factory=list)
    rj: list[tuple[int | None, int | None, int | None]] = field(default_factory=list)
    aborts: list[tuple[Direction, int | None, int | None]] = field(default_factory=list)
    dimse: dict[Direction, list[dict[str, Any]]] = field(
        default_factory=lambda: {ORIGIN: [], PEER: []}
    )
    # tshark only: user-information sub-item types it showed undecoded, per "rq"/"ac" index.
    undecoded: dict[str, list[set[int]]] = field(default_factory=lambda: {"rq": [], "ac": []})
    # tshark only: user identity secondary fields, for the absence check; never compared.
    secrets: list[str] = field(default_factory=list, repr=False)


# --------------------------------------------------------------------------------------
# tshark
# --------------------------------------------------------------------------------------


def _tshark_path() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.fail(
            "tshark is not installed: this differential test needs Wireshark's tshark 4.0 "
            "(Debian/Ubuntu: apt-get install tshark). It is not skipped on purpose: CI installs it."
        )
    return path


@functools.lru_cache(maxsize=1)
def _tshark_version() -> str:
    out = subprocess.run(
        [_tshark_path(), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def _child(node: ET.Element, name: str) -> ET.Element | None:
    for ch in node:
        if ch.get("name") == name:
            return ch
    return None


def _find(node: ET.Element, name: str) -> ET.Element | None:
    for el in node.iter("field"):
        if el.get("name") == name:
            return el
    return None


def _find_all(node: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in node.iter("field") if el.get("name") == name]


def _show(node: ET.Element | None) -> str | None:
    return None if node is None else node.get("show")


def _int(node: ET.Element | None) -> int | None:
    # N3: tshark shows some integers in hex ("0x01"), others in decimal.
    text = _show(node)
    return None if text is None else int(text, 0)


def _ae(text: str | None) -> str | None:
    # N1: AE titles keep their space padding in tshark; spaces (and NULs) are not significant.
    return None if text is None else text.strip(" \x00")


_UID_FIRST = re.compile(r"([0-9.]+)(?:\\000|\\x00|\x00)?(?: \(.*\))?")
_UID_LAST = re.compile(r".* \(([0-9.]+)\)")


def _uid(text: str | None) -> str | None:
    # N2: "Name (uid)" in items, "uid (Name)" in DIMSE elements; a trailing NUL pad dropped.
    if text is None:
        return None
    text = text.rstrip(" \x00")
    for pattern in (_UID_FIRST, _UID_LAST):
        m = pattern.fullmatch(text)
        if m:
            return m[1]
    return text


def _item_type(node: ET.Element) -> int | None:
    return _int(_child(node, "dicom.assoc.item.type"))


_TSHARK_DECODED_SUB_ITEMS = {0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x58}


def _tshark_user_info(pdu: ET.Element, view: ConnView) -> tuple[dict[str, Any] | None, set[int]]:
    node = _find(pdu, "dicom.userinfo")
    if node is None:
        return None, set()
    undecoded: set[int] = set()
    for sub in node:
        sub_type = _item_type(sub)
        if sub_type is None:
            continue
        # N7: a sub-item tshark shows as "unknown" (or, defensively, one of a type it has no
        # decoder for) is left out of the comparison and checked on our side only.
        if (
            sub.get("name") == "dicom.userinfo.unknown"
            or _find(sub, "dicom.userinfo.data") is not None
            or sub_type not in _TSHARK_DECODED_SUB_ITEMS
        ):
            undecoded.add(sub_type)
    identity = None
    ident = _find(node, "dicom.userinfo.user_identify")
    if ident is not None:
        secondary = _find(ident, "dicom.userinfo.user_identify.secondary_field")
        if secondary is not None and secondary.get("show"):
            view.secrets.append(secondary.get("show", ""))
        identity_type = _int(_find(ident, "dicom.userinfo.user_identify.type"))
        primary = _show(_find(ident, "dicom.userinfo.user_identify.primary_field"))
        identity = {
            "type": identity_type,
            "positive_response_requested": bool(
                _int(_find(ident, "dicom.userinfo.user_identify.response_requested"))
            ),
            # Only types 1 and 2 carry a username (PS3.7 D.3.3.7.1).
            "username": primary if identity_type in (1, 2) else None,
            "passcode_present": bool(
                _int(_find(ident, "dicom.userinfo.user_identify.secondary_field_length"))
            ),
        }
    asyncneg = _find(node, "dicom.userinfo.asyncneg")
    info = {
        "max_pdu_length": _int(_find(node, "dicom.max_pdu_len")),
        "implementation_class_uid": _uid(_show(_find(node, "dicom.userinfo.uid"))),
        "implementation_version_name": _ae(_show(_find(node, "dicom.userinfo.version"))),
        "async_operations_window": None
        if asyncneg is None
        else (
            _int(_find(asyncneg, "dicom.userinfo.asyncneg.maxnumopsinv")),
            _int(_find(asyncneg, "dicom.userinfo.asyncneg.maxnumopsper")),
        ),
        "role_selections": [
            (
                _uid(_show(_find(sel, "dicom.userinfo.rolesel.sopclassuid"))),
                _int(_find(sel, "dicom.userinfo.rolesel.scurole")),
                _int(_find(sel, "dicom.userinfo.rolesel.scprole")),
            )
            for sel in _find_all(node, "dicom.userinfo.rolesel")
        ],
        "extended_negotiation_sop_classes": [
            _uid(_show(_find(ext, "dicom.userinfo.extneg.sopclassuid")))
            for ext in _find_all(node, "dicom.userinfo.extneg")
        ],
        "user_identity": identity,
    }
    return info, undecoded


def _tshark_associate(pdu: ET.Element, pdu_type: int, view: ConnView) -> None:
    contexts: list[tuple[Any, ...]] = []
    for item in pdu.iter("field"):
        item_type = _item_type(item)
        if pdu_type == 0x01 and item_type == 0x20:
            contexts.append(
                (
                    _int(_child(item, "dicom.pctx.id")),
                    _uid(_show(_find(item, "dicom.pctx.abss.syntax"))),
                    tuple(_uid(_show(x)) for x in _find_all(item, "dicom.pctx.xfer.syntax")),
                )
            )
        elif pdu_type == 0x02 and item_type == 0x21:
            contexts.append(
                (
                    _int(_child(item, "dicom.pctx.id")),
                    _int(_child(item, "dicom.pctx.result")),
                    # PS3.8 9.3.3.2: an empty transfer syntax sub-item is allowed when rejected.
                    _uid(_show(_find(item, "dicom.pctx.xfer.syntax"))) or None,
                )
            )
    user_info, undecoded = _tshark_user_info(pdu, view)
    if pdu_type == 0x02 and user_info is not None:
        user_info.pop("user_identity")  # 0x58 belongs to the RQ; 0x59 is N7
    decoded = {
        "called_ae_title": _ae(_show(_find(pdu, "dicom.assoc.ae.called"))),
        "calling_ae_title": _ae(_show(_find(pdu, "dicom.assoc.ae.calling"))),
        "application_context_name": _uid(_show(_find(pdu, "dicom.actx"))),
        "presentation_contexts": contexts,
        "user_information": user_info,
    }
    key = "rq" if pdu_type == 0x01 else "ac"
    getattr(view, key).append(decoded)
    view.undecoded[key].append(undecoded)


_DIMSE_ELEMENTS = {
    0x0100: "command_field",
    0x0110: "message_id",
    0x0120: "message_id_being_responded_to",
    0x0002: "affected_sop_class_uid",
    0x0900: "status",
    0x0600: "move_destination",
}


def _tshark_dimse(pdu: ET.Element) -> list[dict[str, Any]]:
    out = []
    for pdv in pdu.iter("field"):
        flags = _int(_child(pdv, "dicom.pdv.flags"))
        if flags is None or not flags & 1:
            continue  # not a PDV, or a data set fragment: never looked at
        elements: dict[int, str | None] = {}
        for wrapper in pdv.iter("field"):
            tag = _int(_child(wrapper, "dicom.tag"))
            if tag is None or tag >> 16 != 0x0000:
                continue
            value = next(
                (ch for ch in wrapper if ch.get("name", "").startswith("dicom.tag.value")), None
            )
            elements[tag & 0xFFFF] = _show(value)
        if 0x0100 not in elements:
            continue  # a command fragment tshark has not reassembled into a command set (N4)
        msg: dict[str, Any] = dict.fromkeys(_DIMSE_ELEMENTS.values())
        for element, key in _DIMSE_ELEMENTS.items():
            text = elements.get(element)
            if text is None:
                continue
            if key == "affected_sop_class_uid":
                msg[key] = _uid(text)
            elif key == "move_destination":
                msg[key] = _ae(text)
            else:
                msg[key] = int(text, 0)
        out.append(msg)
    return out


def _packet_endpoints(packet: ET.Element) -> tuple[Endpoint, Endpoint, int] | None:
    src = dst = None
    sport = dport = stream = None
    for proto in packet.iter("proto"):
        name = proto.get("name")
        if name in ("ip", "ipv6") and src is None:
            src = _show(_child(proto, f"{name}.src"))
            dst = _show(_child(proto, f"{name}.dst"))
        elif name == "tcp" and sport is None:
            sport = _int(_child(proto, "tcp.srcport"))
            dport = _int(_child(proto, "tcp.dstport"))
            stream = _int(_child(proto, "tcp.stream"))
    if src is None or dst is None or sport is None or dport is None or stream is None:
        return None
    return (src, sport), (dst, dport), stream


@functools.cache
def tshark_view(case: str) -> dict[ConnKey, ConnView]:
    """tshark's decoding of one case's capture, per TCP connection."""
    pcap = PCAPS / case / "capture.pcap"
    ports = sorted(
        {conn.acceptor_port for conn in our_connections(case).values() if conn.acceptor_port}
    )
    cmd = [
        _tshark_path(),
        "-n",
        "-r",
        str(pcap),
        "-o",
        "tcp.reassemble_out_of_order:TRUE",
        "-o",
        "tcp.desegment_tcp_streams:TRUE",
        "-o",
        "dicom.tag_tree:TRUE",
        "-o",
        "dicom.pdv_reassemble:TRUE",
    ]
    for port in ports:
        cmd += ["-d", f"tcp.port=={port},dicom"]
    cmd += ["-Y", "dicom", "-T", "pdml"]
    proc = subprocess.run(cmd, capture_output=True, timeout=TSHARK_TIMEOUT, check=False)
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, f"tshark failed ({proc.returncode}): {' '.join(cmd)}\n{stderr}"
    views: dict[ConnKey, ConnView] = {}
    streams: dict[int, ConnKey] = {}
    root = ET.fromstring(proc.stdout)
    for packet in root.iter("packet"):
        where = _packet_endpoints(packet)
        protos = [p for p in packet.iter("proto") if p.get("name") == "dicom"]
        if where is None or not protos:
            continue
        src, dst, stream = where
        key = _conn_key(src, dst)
        assert streams.setdefault(stream, key) == key, f"tcp.stream {stream} changed endpoints"
        view = views.get(key)
        if view is None:
            # The sender of the first DICOM PDU tshark shows (the A-ASSOCIATE-RQ) is ORIGIN.
            view = views[key] = ConnView(origin=src)
        direction = ORIGIN if src == view.origin else PEER
        for pdu in protos:
            pdu_type = _int(_find(pdu, "dicom.pdu.type"))
            assert pdu_type is not None
            view.pdus[direction].append(pdu_type)
            if pdu_type in (0x01, 0x02):
                _tshark_associate(pdu, pdu_type, view)
            elif pdu_type == 0x03:
                view.rj.append(
                    (
                        _int(_find(pdu, "dicom.assoc.reject.result")),
                        _int(_find(pdu, "dicom.assoc.reject.source")),
                        _int(_find(pdu, "dicom.assoc.reject.reason")),
                    )
                )
            elif pdu_type == 0x07:
                view.aborts.append(
                    (
                        direction,
                        _int(_find(pdu, "dicom.assoc.abort.source")),
                        _int(_find(pdu, "dicom.assoc.abort.reason")),
                    )
                )
            elif pdu_type == 0x04:
                view.dimse[direction].extend(_tshark_dimse(pdu))
    return views


# --------------------------------------------------------------------------------------
# Our side: pcap -> TCP connections -> in-order byte chunks -> DicomSession
# --------------------------------------------------------------------------------------


@dataclass
class Chunk:
    """In-order bytes (or a hole of ``missing`` bytes) of one direction, in capture order."""

    src: Endpoint
    ts: float
    data: bytes = b""
    missing: int = 0


class _Receiver:
    """One direction of a TCP connection: delivers bytes in sequence order, once."""

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self.held: dict[int, bytes] = {}  # out-of-order segments by sequence number

    def syn(self, seq: int) -> None:
        if self.next_seq is None:
            self.next_seq = (seq + 1) & _SEQ_MASK

    def _offset(self, seq: int) -> int:
        """Signed distance of ``seq`` from the next expected sequence number."""
        assert self.next_seq is not None
        return ((seq - self.next_seq + (1 << 31)) & _SEQ_MASK) - (1 << 31)

    def push(self, seq: int, payload: bytes) -> list[bytes]:
        if self.next_seq is None:
            self.next_seq = seq  # capture started after the SYN
        self.held[seq] = max(payload, self.held.get(seq, b""), key=len)
        return self._drain()

    def _drain(self) -> list[bytes]:
        out = []
        progress = True
        while progress:
            progress = False
            for seq in sorted(self.held, key=self._offset):
                off = self._offset(seq)
                payload = self.held[seq]
                if off > 0:
                    break  # a hole before this one
                del self.held[seq]
                if off + len(payload) > 0:  # else: a pure retransmission
                    fresh = payload[-off:] if off else payload
                    out.append(fresh)
                    assert self.next_seq is not None
                    self.next_seq = (self.next_seq + len(fresh)) & _SEQ_MASK
                    progress = True
                    break
        return out

    def flush(self) -> list[tuple[int, bytes]]:
        """At the end of the capture: (hole size, bytes) for what is still held after holes."""
        out = []
        while self.held:
            seq = min(self.held, key=self._offset)
            hole = self._offset(seq)
            assert self.next_seq is not None
            self.next_seq = seq
            drained = self._drain()
            out.append((hole, b"".join(drained)))
        return out


@dataclass
class Connection:
    """One TCP connection as our side sees it."""

    key: ConnKey
    first_index: int
    chunks: list[Chunk] = field(default_factory=list)
    receivers: dict[Endpoint, _Receiver] = field(default_factory=dict)
    closed: bool = False  # FIN or RST seen
    last_ts: float = 0.0
    origin: Endpoint | None = None
    acceptor_port: int | None = None


def _ip_of(buf: bytes, linktype: int) -> Any:
    """The IPv4/IPv6 packet inside one captured frame, or None."""
    if linktype == dpkt.pcap.DLT_EN10MB:
        return dpkt.ethernet.Ethernet(buf).data
    if linktype == dpkt.pcap.DLT_LINUX_SLL:
        return dpkt.sll.SLL(buf).data
    if linktype == 276:  # DLT_LINUX_SLL2
        return dpkt.sll2.SLL2(buf).data
    if linktype in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        return dpkt.loopback.Loopback(buf).data
    if linktype in (12, 14, 101):  # DLT_RAW (OS-specific values) and LINKTYPE_RAW
        if buf and buf[0] >> 4 == 4:
            return dpkt.ip.IP(buf)
        if buf and buf[0] >> 4 == 6:
            return dpkt.ip6.IP6(buf)
        return None
    raise AssertionError(f"link type {linktype} not handled by this test")


def _frames(path: Path) -> Iterator[tuple[float, bytes, int]]:
    with path.open("rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        reader: Any = (
            dpkt.pcapng.Reader(fh) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        )
        linktype = reader.datalink()
        for ts, buf in reader:
            yield float(ts), bytes(buf), linktype


def read_connections(path: Path) -> list[Connection]:
    """The TCP connections in a capture, each with its in-order chunks in capture order."""
    conns: dict[ConnKey, Connection] = {}
    done: list[Connection] = []
    for index, (ts, buf, linktype) in enumerate(_frames(path)):
        try:
            ip = _ip_of(buf, linktype)
        except (dpkt.UnpackError, struct.error):
            continue
        tcp = getattr(ip, "data", None)
        if not isinstance(tcp, dpkt.tcp.TCP):
            continue
        family = socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
        src = (socket.inet_ntop(family, ip.src), tcp.sport)
        dst = (socket.inet_ntop(family, ip.dst), tcp.dport)
        key = _conn_key(src, dst)
        conn = conns.get(key)
        is_new_syn = tcp.flags & dpkt.tcp.TH_SYN and not tcp.flags & dpkt.tcp.TH_ACK
        if conn is not None and conn.closed and is_new_syn:
            done.append(conns.pop(key))  # the 4-tuple is reused by a new connection
            conn = None
        if conn is None:
            conn = conns[key] = Connection(key, index)
        conn.last_ts = ts
        receiver = conn.receivers.setdefault(src, _Receiver())
        if tcp.flags & dpkt.tcp.TH_SYN:
            receiver.syn(tcp.seq)
        if tcp.flags & (dpkt.tcp.TH_FIN | dpkt.tcp.TH_RST):
            conn.closed = True
        payload = bytes(tcp.data)
        if payload:
            for data in receiver.push(tcp.seq, payload):
                conn.chunks.append(Chunk(src, ts, data))
    done.extend(conns.values())
    for conn in done:
        for src, receiver in conn.receivers.items():
            for hole, data in receiver.flush():
                conn.chunks.append(Chunk(src, conn.last_ts, missing=hole))
                if data:
                    conn.chunks.append(Chunk(src, conn.last_ts, data))
    return sorted(done, key=lambda c: c.first_index)


def _counts(session: DicomSession, direction: Direction) -> tuple[int, int]:
    c = session.state.counters[direction]
    return c.pdus, c.pdata_pdus


def _pdu_order(
    direction: Direction, before: tuple[int, int], after: tuple[int, int], events: list[Any]
) -> list[int] | None:
    """PDU types one feed call completed, in order; None when counters cannot tell (N6)."""
    controls = [
        _CONTROL_PDU[type(e)]
        for e in events
        if type(e) in _CONTROL_PDU and e.direction == direction
    ]
    n_pdata = after[1] - before[1]
    n_other = (after[0] - before[0]) - n_pdata
    unknown = n_other - len(controls)
    assert unknown >= 0, f"{len(controls)} PDU events but only {n_other} PDUs counted"
    kinds = (n_pdata > 0) + (len(controls) > 0) + (unknown > 0)
    if kinds > 1:
        return None
    return [0x04] * n_pdata + controls + [UNKNOWN_PDU] * unknown


@dataclass
class OurDecode:
    """Everything our session produced for one connection."""

    origin: Endpoint
    detected_by: str
    events: list[Any] = field(default_factory=list)
    close_events: list[Any] = field(default_factory=list)
    pdus: dict[Direction, list[int]] = field(default_factory=lambda: {ORIGIN: [], PEER: []})
    session: DicomSession | None = None
    replays: int = 0


class Feeder:
    """The caller's side of the feed contract, recording the PDU order per direction (N6)."""

    def __init__(self, origin: Endpoint, detected_by: str) -> None:
        self.out = OurDecode(origin, detected_by)
        self.session = DICOM.new_session(detected_by)
        self.out.session = self.session
        self.tail: dict[Direction, bytes] = {ORIGIN: b"", PEER: b""}
        self.log: list[tuple[Direction, bytes | None, int, float]] = []

    def feed(self, direction: Direction, chunk: bytes, ts: float) -> None:
        data = self.tail[direction] + chunk
        before = _counts(self.session, direction)
        consumed, events = self.session.feed(direction, data, ts)
        assert 0 <= consumed <= len(data)
        self.tail[direction] = data[consumed:]
        order = _pdu_order(direction, before, _counts(self.session, direction), events)
        if order is None:
            order = self._one_byte_at_a_time(direction, data, ts, events)
        self.log.append((direction, data, 0, ts))
        self.out.pdus[direction].extend(order)
        self.out.events.extend(events)

    def gap(self, direction: Direction, missing: int, ts: float) -> None:
        # As sensor/flow/stream.py does: bytes kept before a hole cannot join bytes after it.
        self.tail[direction] = b""
        self.log.append((direction, None, missing, ts))
        self.out.events.extend(self.session.gap(direction, missing, ts))

    def _one_byte_at_a_time(
        self, direction: Direction, data: bytes, ts: float, events: list[Any]
    ) -> list[int]:
        """Replay ``data`` one byte per call into a fresh session in the same state (N6)."""
        self.out.replays += 1
        fresh = DICOM.new_session(self.out.detected_by)
        for d, logged, missing, when in self.log:
            if logged is None:
                fresh.gap(d, missing, when)
            else:
                fresh.feed(d, logged, when)
        order: list[int] = []
        replayed: list[Any] = []
        tail = b""
        for i in range(len(data)):
            buf = tail + data[i : i + 1]
            before = _counts(fresh, direction)
            consumed, evs = fresh.feed(direction, buf, ts)
            tail = buf[consumed:]
            one = _pdu_order(direction, before, _counts(fresh, direction), evs)
            assert one is not None, "one byte completed PDUs of two kinds"
            order.extend(one)
            replayed.extend(evs)
        # The feed contract: any split of the byte stream gives the same events and tail.
        assert replayed == events, "events differ when the same bytes are fed one at a time"
        assert tail == self.tail[direction], "unconsumed tail differs when fed one at a time"
        return order


def _probe_origin(conn: Connection) -> str | None:
    """The plug-in's verdict on the first bytes ORIGIN sent: detected_by, or None."""
    assert conn.origin is not None
    seen = b""
    for chunk in conn.chunks:
        if chunk.src != conn.origin:
            continue
        if chunk.missing:
            break
        seen += chunk.data
        result = DICOM.probe(seen)
        if result.verdict is Verdict.MATCH:
            return result.detected_by
        if result.verdict is Verdict.NO_MATCH:
            return None
    return None


def decode_ours(conn: Connection, chunks: list[Chunk] | None = None) -> OurDecode | None:
    """Feed one connection to a DicomSession; None when the plug-in's probe does not match."""
    assert conn.origin is not None
    detected_by = _probe_origin(conn)
    if detected_by is None:
        return None
    feeder = Feeder(conn.origin, detected_by)
    for chunk in conn.chunks if chunks is None else chunks:
        direction = ORIGIN if chunk.src == conn.origin else PEER
        if chunk.missing:
            feeder.gap(direction, chunk.missing, chunk.ts)
        else:
            feeder.feed(direction, chunk.data, chunk.ts)
    reason = CloseReason.CONNECTION_CLOSED if conn.closed else CloseReason.CAPTURE_ENDED
    feeder.out.close_events = feeder.session.close(reason, conn.last_ts)
    return feeder.out


@functools.cache
def our_connections(case: str) -> dict[ConnKey, Connection]:
    """The capture's TCP connections that carried payload, with ORIGIN and acceptor port."""
    conns = {}
    for conn in read_connections(PCAPS / case / "capture.pcap"):
        data_chunks = [c for c in conn.chunks if c.data]
        if not data_chunks:
            continue
        conn.origin = data_chunks[0].src  # ORIGIN: the side that sent the first payload
        first = data_chunks[0].data
        if first[:1] == b"\x01":
            (peer,) = [e for e in conn.key if e != conn.origin]
            conn.acceptor_port = peer[1]
        assert conn.key not in conns, f"{conn.key} reused: the test keys connections by 4-tuple"
        conns[conn.key] = conn
    return conns


@functools.cache
def our_decodes(case: str) -> dict[ConnKey, OurDecode]:
    """Our dissector's decoding of one case, per DICOM connection."""
    out = {}
    for key, conn in our_connections(case).items():
        decoded = decode_ours(conn)
        if decoded is not None:
            out[key] = decoded
    return out


# --------------------------------------------------------------------------------------
# Our events -> the normalised view
# --------------------------------------------------------------------------------------


def _our_user_info(info: UserInformation | None, is_request: bool) -> dict[str, Any] | None:
    if info is None:
        return None
    out: dict[str, Any] = {
        "max_pdu_length": info.max_pdu_length,
        "implementation_class_uid": info.implementation_class_uid,
        "implementation_version_name": info.implementation_version_name,
        "async_operations_window": None
        if info.async_operations_window is None
        else (
            info.async_operations_window.max_operations_invoked,
            info.async_operations_window.max_operations_performed,
        ),
        "role_selections": [
            (r.sop_class_uid, r.scu_role, r.scp_role) for r in info.role_selections
        ],
        "extended_negotiation_sop_classes": [e.sop_class_uid for e in info.extended_negotiations],
    }
    if is_request:
        ident = info.user_identity
        out["user_identity"] = (
            None
            if ident is None
            else {
                "type": ident.identity_type,
                "positive_response_requested": ident.positive_response_requested,
                "username": ident.username,
                "passcode_present": ident.passcode_present,
            }
        )
    return out


def _our_associate(pdu: AssociateRQ | AssociateAC) -> dict[str, Any]:
    is_request = isinstance(pdu, AssociateRQ)
    contexts: list[tuple[Any, ...]]
    if isinstance(pdu, AssociateRQ):
        contexts = [
            (pc.context_id, pc.abstract_syntax, pc.transfer_syntaxes)
            for pc in pdu.presentation_contexts
        ]
    else:
        contexts = [
            (pc.context_id, pc.result, pc.transfer_syntax) for pc in pdu.presentation_contexts
        ]
    return {
        "called_ae_title": pdu.called_ae_title,
        "calling_ae_title": pdu.calling_ae_title,
        "application_context_name": pdu.application_context_name,
        "presentation_contexts": contexts,
        "user_information": _our_user_info(pdu.user_information, is_request),
    }


def _our_dimse(command: DimseCommand) -> dict[str, Any]:
    return {
        "command_field": command.command_field,
        "message_id": command.message_id,
        "message_id_being_responded_to": command.message_id_being_responded_to,
        "affected_sop_class_uid": command.affected_sop_class_uid,
        "status": command.status,  # N8: None for requests on both sides
        "move_destination": command.move_destination,
    }


def our_view(decoded: OurDecode) -> ConnView:
    """Our decoding of one connection in the same shape as tshark's."""
    view = ConnView(origin=decoded.origin)
    for direction in (ORIGIN, PEER):
        pdus = list(decoded.pdus[direction])
        truncated = any(
            isinstance(e, Anomaly)
            and e.direction == direction
            and e.reason is Reason.TRUNCATED
            and "inside a PDU" in e.detail
            for e in decoded.close_events
        )
        # N5: a P-DATA-TF cut off by the end of the connection is not a PDU tshark shows.
        if truncated and pdus and pdus[-1] == 0x04:
            pdus.pop()
        view.pdus[direction] = pdus
    for e in decoded.events:
        if isinstance(e, AssociationRequested):
            view.rq.append(_our_associate(e.pdu))
        elif isinstance(e, AssociationAccepted):
            view.ac.append(_our_associate(e.pdu))
        elif isinstance(e, AssociationRejected):
            view.rj.append((e.pdu.result, e.pdu.source, e.pdu.reason))
        elif isinstance(e, Aborted):
            view.aborts.append((e.direction, e.pdu.source, e.pdu.reason))
        elif isinstance(e, DimseMessage):
            view.dimse[e.direction].append(_our_dimse(e.command))
    return view


def _associate_pdus(decoded: OurDecode, key: str) -> list[AssociateRQ | AssociateAC]:
    cls = AssociationRequested if key == "rq" else AssociationAccepted
    return [e.pdu for e in decoded.events if isinstance(e, cls)]


# --------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------


def _both(case: str) -> tuple[dict[ConnKey, ConnView], dict[ConnKey, ConnView]]:
    _tshark_path()  # fails clearly when tshark is missing
    theirs = tshark_view(case)
    ours = {key: our_view(d) for key, d in our_decodes(case).items()}
    return theirs, ours


def _label(key: ConnKey) -> str:
    return " <-> ".join(f"[{a}]:{p}" for a, p in key)


def test_cases_found() -> None:
    assert CASES, f"no capture found under {PCAPS}/*/capture.pcap"


@pytest.mark.parametrize("case", CASES)
def test_same_dicom_connections(case: str) -> None:
    theirs, ours = _both(case)
    assert theirs, f"tshark ({_tshark_version()}) decoded no DICOM in {case}"
    missing = sorted(theirs.keys() - ours.keys())
    assert not missing, f"tshark decoded DICOM on connections we did not: {missing}"
    for key in sorted(ours.keys() - theirs.keys()):
        # N9: tshark cannot follow an association whose A-ASSOCIATE-RQ is not in the capture.
        decoded = our_decodes(case)[key]
        assert decoded.detected_by != DETECTED_BY_RQ, (
            f"{_label(key)}: we decoded an association from its RQ, tshark saw no DICOM"
        )
        assert decoded.events, f"{_label(key)}: detected as DICOM but nothing decoded"
    for key in theirs:
        assert ours[key].origin == theirs[key].origin, f"{_label(key)}: requestor differs"


@pytest.mark.parametrize("case", CASES)
def test_pdu_type_sequences(case: str) -> None:
    theirs, ours = _both(case)
    for key in sorted(theirs.keys() & ours.keys()):
        for direction in (ORIGIN, PEER):
            assert [f"0x{t:02x}" for t in ours[key].pdus[direction]] == [
                f"0x{t:02x}" for t in theirs[key].pdus[direction]
            ], f"{case} {_label(key)} {direction.name}: PDU types differ"


@pytest.mark.parametrize("case", CASES)
def test_associate_rq_ac(case: str) -> None:
    theirs, ours = _both(case)
    decodes = our_decodes(case)
    for key in sorted(theirs.keys() & ours.keys()):
        if _passcode_leaked(case, key):
            # A diff below would print it: test_passcode_never_in_our_objects names the fault.
            pytest.fail(f"{_label(key)}: passcode in our objects; comparison not shown")
        for kind in ("rq", "ac"):
            mine = getattr(ours[key], kind)
            tsh = getattr(theirs[key], kind)
            assert len(mine) == len(tsh), f"{_label(key)}: number of {kind.upper()} PDUs"
            pdus = _associate_pdus(decodes[key], kind)
            for i, (a, b) in enumerate(zip(mine, tsh, strict=True)):
                # N7: sub-items tshark 4.0 leaves undecoded: ours must have decoded them.
                info = pdus[i].user_information
                for sub_type in theirs[key].undecoded[kind][i]:
                    assert info is not None
                    if sub_type == 0x57:
                        assert info.common_extended_negotiations, "0x57 not decoded by us"
                    elif sub_type == 0x59:
                        assert info.user_identity_response is not None, "0x59 not decoded by us"
                    else:
                        assert any(u.item_type == sub_type for u in info.unknown), (
                            f"sub-item 0x{sub_type:02x}: neither tshark nor we kept it"
                        )
                for part in a:
                    assert a[part] == b[part], f"{case} {_label(key)} {kind.upper()}: {part}"


@pytest.mark.parametrize("case", CASES)
def test_reject_and_abort(case: str) -> None:
    theirs, ours = _both(case)
    for key in sorted(theirs.keys() & ours.keys()):
        assert ours[key].rj == theirs[key].rj, f"{_label(key)}: A-ASSOCIATE-RJ"
        assert ours[key].aborts == theirs[key].aborts, f"{_label(key)}: A-ABORT"


@pytest.mark.parametrize("case", CASES)
def test_dimse_messages(case: str) -> None:
    theirs, ours = _both(case)
    for key in sorted(theirs.keys() & ours.keys()):
        for direction in (ORIGIN, PEER):
            assert ours[key].dimse[direction] == theirs[key].dimse[direction], (
                f"{case} {_label(key)} {direction.name}: DIMSE messages differ"
            )


def _passcode_leaked(case: str, key: ConnKey) -> bool | None:
    """Whether a passcode tshark saw is in anything we produced; None if there was none.

    Kept out of the test's frame so that no local variable there holds the passcode.
    """
    secrets = [s for view in tshark_view(case).values() for s in view.secrets]
    if not secrets:
        return None
    decoded = our_decodes(case)[key]
    texts = repr(decoded.events) + repr(decoded.close_events) + repr(decoded.session.state)
    return any(s in texts for s in secrets)


@pytest.mark.parametrize("case", CASES)
def test_passcode_never_in_our_objects(case: str) -> None:
    _both(case)
    for key in sorted(our_decodes(case)):
        # A bare boolean, so that a failure can never print the passcode.
        leaked = _passcode_leaked(case, key)
        assert leaked is not True, f"{_label(key)}: a user identity passcode is in our objects"


# The harness's own check of N6: feeding each direction whole (so one call completes many
# PDUs of several types and forces the one-byte replay) must give the same PDU sequences and
# DIMSE as feeding in capture order. Only connections with at most this many bytes per
# direction, to keep the one-byte replay fast.
_WHOLE_STREAM_MAX = 1024 * 1024


@pytest.mark.parametrize("case", CASES)
def test_harness_pdu_order_does_not_depend_on_chunking(case: str) -> None:
    for key, conn in our_connections(case).items():
        reference = our_decodes(case).get(key)
        if reference is None:
            continue
        per_direction: dict[Endpoint, bytes] = {}
        if any(c.missing for c in conn.chunks):
            continue
        for chunk in conn.chunks:
            per_direction[chunk.src] = per_direction.get(chunk.src, b"") + chunk.data
        if max(len(b) for b in per_direction.values()) > _WHOLE_STREAM_MAX:
            continue
        whole = [Chunk(src, conn.last_ts, data) for src, data in per_direction.items()]
        whole.sort(key=lambda c: c.src != conn.origin)
        again = decode_ours(conn, whole)
        assert again is not None
        assert again.replays > 0 or all(len(p) <= 1 for p in again.pdus.values())
        assert our_view(again).pdus == our_view(reference).pdus, _label(key)
        assert our_view(again).dimse == our_view(reference).dimse, _label(key)
