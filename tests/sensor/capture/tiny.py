"""Re-cut every TCP payload of a capture into 1-7 byte segments (legal TCP, an IDS evasion)."""

from __future__ import annotations

import random
from pathlib import Path

import dpkt
import pcapy

ETHERTYPE_IP, ETHERTYPE_IP6 = 0x0800, 0x86DD
TAGS = (0x8100, 0x88A8, 0x9100)


def _l3_offset(frame: bytes) -> tuple[int, int] | None:
    """(offset of the IP header, ethertype) in an Ethernet frame, stepping over VLAN tags."""
    off = 12
    while len(frame) >= off + 2:
        ethertype = int.from_bytes(frame[off : off + 2], "big")
        if ethertype in TAGS:
            off += 4
            continue
        if ethertype in (ETHERTYPE_IP, ETHERTYPE_IP6):
            return off + 2, ethertype
        return None
    return None


def _pieces(ip: dpkt.Packet, tcp: dpkt.tcp.TCP, rng: random.Random, most: int = 7) -> list[bytes]:
    """The IP packets carrying ``tcp``'s payload in 1-``most`` byte slices, FIN on the last."""
    payload = bytes(tcp.data)
    out: list[bytes] = []
    pos = 0
    while pos < len(payload):
        n = rng.randint(1, most)
        piece = payload[pos : pos + n]
        last = pos + len(piece) >= len(payload)
        seg = dpkt.tcp.TCP(bytes(tcp))  # a copy, options included
        seg.data = piece
        seg.seq = (tcp.seq + pos) & 0xFFFFFFFF
        if not last:
            seg.flags &= ~dpkt.tcp.TH_FIN
        seg.sum = 0
        if isinstance(ip, dpkt.ip.IP):
            new = dpkt.ip.IP(bytes(ip))
            new.data = seg
            new.len = 0
            new.sum = 0
            out.append(bytes(new))
        else:
            new6 = dpkt.ip6.IP6(bytes(ip))
            new6.data = seg
            new6.plen = len(new6) - new6.__hdr_len__  # extension headers included
            out.append(bytes(new6))
        pos += len(piece)
    return out


def recut(src: Path, dst: Path, seed: int = 1, most: int = 7) -> int:
    """Write ``src`` to ``dst`` with every TCP payload of 8+ bytes cut into 1-7 byte pieces
    (1-``most``: larger ones put PDU and PDV headers anywhere in a segment).

    Ethernet captures only (VLAN tags kept); returns the number of segments written.
    """
    rng = random.Random(seed)
    reader = pcapy.open_offline(str(src))
    if reader.datalink() != 1:
        raise ValueError(f"{src}: link type {reader.datalink()} is not Ethernet")
    written = 0
    with dst.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=262144, linktype=1)
        while True:
            try:
                header, frame = reader.next()
            except pcapy.PcapError:
                break  # a capture cut mid-packet: the variant ends where the original does
            if header is None:
                break
            sec, usec = header.getts()
            ts = sec + usec * 1e-6
            found = _l3_offset(frame)
            pieces: list[bytes] | None = None
            if found is not None:
                off, ethertype = found
                layer = dpkt.ip.IP if ethertype == ETHERTYPE_IP else dpkt.ip6.IP6
                try:
                    ip = layer(frame[off:])
                except (dpkt.UnpackError, ValueError):
                    ip = None
                tcp = getattr(ip, "data", None)
                if ip is not None and isinstance(tcp, dpkt.tcp.TCP) and len(tcp.data) > 7:
                    pieces = _pieces(ip, tcp, rng, most)
                    header_bytes = frame[:off]
            if pieces is None:
                writer.writepkt(frame, ts)
                written += 1
                continue
            for i, packet in enumerate(pieces):
                writer.writepkt(header_bytes + packet, ts + i * 1e-6)
                written += 1
    return written


def remap_ports(src: Path, dst: Path, mapping: dict[int, int]) -> None:
    """Write ``src`` to ``dst`` with TCP ports renamed (Ethernet, IPv4; checksums redone)."""
    reader = pcapy.open_offline(str(src))
    with dst.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=262144, linktype=1)
        while True:
            header, frame = reader.next()
            if header is None:
                break
            sec, usec = header.getts()
            eth = dpkt.ethernet.Ethernet(frame)
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                tcp = ip.data
                tcp.sport = mapping.get(tcp.sport, tcp.sport)
                tcp.dport = mapping.get(tcp.dport, tcp.dport)
                tcp.sum = 0
                ip.sum = 0
            writer.writepkt(bytes(eth), sec + usec * 1e-6)
