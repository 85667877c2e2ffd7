"""pcapng files whose interfaces have different link types, read with dpkt's block classes.

libpcap gives a whole file one link type and refuses a second interface of another type
(mergecap of an SLL and an Ethernet capture). dpkt's pcapng blocks carry the interface of
each packet, so every interface is read, each packet with its interface's link type.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

import dpkt
from dpkt import pcapng

_SHB = pcapng.PCAPNG_BT_SHB
_IDB = pcapng.PCAPNG_BT_IDB
_EPB = pcapng.PCAPNG_BT_EPB
_PB = pcapng.PCAPNG_BT_PB
_SPB = 3  # Simple Packet Block: interface 0, no timestamp
_MAGIC = b"\x0a\x0d\x0d\x0a"
_BOM = 0x1A2B3C4D

MixedPacket = tuple[float, bytes, int, int]  # timestamp, captured bytes, wire length, link type


class MixedError(Exception):
    """A block dpkt cannot decode; the message is one line."""


def _interface(idb: pcapng.InterfaceDescriptionBlock) -> tuple[int, float, int]:
    """(link type, timestamp divisor, timestamp offset) of an interface description."""
    divisor, offset = 1e6, 0
    for opt in idb.opts:
        if opt.code == pcapng.PCAPNG_OPT_IF_TSRESOL and opt.data:
            value = opt.data[0]
            divisor = float((2 if value & 0x80 else 10) ** (value & 0x7F))
        elif opt.code == pcapng.PCAPNG_OPT_IF_TSOFFSET and len(opt.data) == 8:
            offset = struct.unpack("<q" if idb.__byte_order__ == "<" else ">q", opt.data)[0]
    return int(idb.linktype), divisor, offset


class _Blocks:
    """Walks the blocks of one pcapng file (several sections allowed)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.little = True

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        fh = self.fh
        while True:
            head = fh.read(8)
            if len(head) < 8:
                return
            if head[:4] == _MAGIC:
                bom = fh.read(4)
                if len(bom) < 4:
                    return
                self.little = struct.unpack("<I", bom)[0] == _BOM
                head += bom
                length = struct.unpack("<I" if self.little else ">I", head[4:8])[0]
                rest = fh.read(length - 12)
            else:
                length = struct.unpack("<I" if self.little else ">I", head[4:8])[0]
                rest = fh.read(length - 8)
            if length < 12 or len(head) + len(rest) < length:
                return  # cut off inside a block
            kind = struct.unpack("<I" if self.little else ">I", head[:4])[0]
            yield kind, head + rest


def link_types(path: str) -> list[int]:
    """The link type of each interface described before the first packet."""
    out: list[int] = []
    with open(path, "rb") as fh:
        if fh.read(4) != _MAGIC:
            return out
        fh.seek(0)
        blocks = _Blocks(fh)
        for kind, data in blocks:
            if kind in (_EPB, _PB, _SPB):
                break
            if kind == _IDB:
                idb = (pcapng.InterfaceDescriptionBlockLE if blocks.little
                       else pcapng.InterfaceDescriptionBlock)(data)  # fmt: skip
                out.append(int(idb.linktype))
    return out


def read_mixed(path: str) -> Iterator[MixedPacket]:
    """Every packet of every interface, in file order, with its interface's link type."""
    interfaces: list[tuple[int, float, int]] = []
    ts = 0.0
    with open(path, "rb") as fh:
        blocks = _Blocks(fh)
        for kind, data in blocks:
            le = blocks.little
            try:
                if kind == _SHB:
                    interfaces = []
                elif kind == _IDB:
                    idb = (pcapng.InterfaceDescriptionBlockLE if le
                           else pcapng.InterfaceDescriptionBlock)(data)  # fmt: skip
                    interfaces.append(_interface(idb))
                elif kind in (_EPB, _PB):
                    if kind == _EPB:
                        epb = (pcapng.EnhancedPacketBlockLE if le
                               else pcapng.EnhancedPacketBlock)(data)  # fmt: skip
                    else:
                        epb = (pcapng.PacketBlockLE if le else pcapng.PacketBlock)(data)
                    if epb.iface_id >= len(interfaces):
                        raise MixedError(f"packet of undescribed interface {epb.iface_id}")
                    linktype, divisor, offset = interfaces[epb.iface_id]
                    ts = offset + ((epb.ts_high << 32) | epb.ts_low) / divisor
                    yield ts, bytes(epb.pkt_data), int(epb.pkt_len), linktype
                elif kind == _SPB and interfaces:
                    # No timestamp in a simple packet block: it takes the previous packet's.
                    wire = struct.unpack("<I" if le else ">I", data[8:12])[0]
                    yield ts, data[12 : min(12 + wire, len(data) - 4)], wire, interfaces[0][0]
            except (dpkt.Error, ValueError, struct.error, IndexError) as exc:
                raise MixedError(f"undecodable pcapng block: {exc}") from None
