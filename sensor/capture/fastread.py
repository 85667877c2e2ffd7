"""The compiled packet loop (fastpath.c) seen from Python: keys, availability, the readers.

A classic pcap file of Ethernet frames is read in C when the extension is built: packets of
nothing followed are dropped there, and the data-set segments and pure ACKs of flows the
engine registered are absorbed by arithmetic and reported in sums. Everything else, and
every other capture, takes the Python path through libpcap; both give the same records.

Live, the same loop takes an Ethernet interface's packets from libpcap (pcapy's ``next``)
and absorbs them the same way (``LiveReader``): the kernel's filter chose them, so nothing
is dropped there, and what it does not absorb goes to Python as it comes.
"""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

fastpath: Any
try:
    fastpath = importlib.import_module(f"{__package__}.fastpath")
except ImportError:  # not built (no compiler at install time): the Python path is used
    fastpath = None

NO_VLAN = 0xFFFF
# key, bytes, data packets, ACKs, last time, the absorbed bytes not yet acknowledged (only in
# a final report), bytes let go unacknowledged at the keep cap and how many of them Python
# kept (its oldest, to let go), the highest ACK of the data and the highest ACK the data
# direction sent, in sequence order (-1: none seen), and what a framed entry crossed:
# (header bytes, PDUs, their bytes, PDVs, then the PDU bytes after the current PDV, the bytes
# left of it, whether it is the data set's last fragment).
Crossed = tuple[int, int, int, int, int, int, int]
Report = tuple[bytes, int, int, int, float, bytes | None, int, int, int, int, Crossed]
Packet = tuple[float, bytes, int]


def available() -> bool:
    """Whether the compiled reader was built (and not turned off for a comparison)."""
    return fastpath is not None and not os.environ.get("DICOM_SENSOR_NO_FASTPATH")


def endpoint(ip: str, port: int) -> bytes:
    """An endpoint as the C side spells it: address bytes, then the port big-endian."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    return socket.inet_pton(family, ip) + port.to_bytes(2, "big")


def flow_key(a: bytes, b: bytes, vlan: int | None) -> tuple[bytes, bool]:
    """(key, whether ``a`` is the lower endpoint) for the connection between two endpoints."""
    tag = (NO_VLAN if vlan is None else vlan).to_bytes(2, "big")
    return (a + b + tag, True) if a <= b else (b + a + tag, False)


class FastReader:
    """One second pass over a file in C; the engine registers and drops skip entries."""

    def __init__(self, path: str | None, services: set[bytes], flows: set[bytes]) -> None:
        if fastpath is None:
            raise RuntimeError("the compiled reader is not built")
        self.scanner = fastpath.Scanner(path, services, flows)

    @property
    def error(self) -> str | None:
        """Why reading stopped early (a file cut mid-packet), if it did."""
        error: str | None = self.scanner.error
        return error

    def register(
        self,
        key: bytes,
        data_dir: int,
        next_seq: int,
        end: int,
        keep: int,
        pre: int,
        framed: tuple[int, int, int] | None = None,
        need_ack: bool = False,
    ) -> None:
        """Absorb the flow's segments in [next_seq, end) from direction ``data_dir``, and ACKs;
        keep a copy of absorbed bytes until the peer acknowledges them, at most ``keep`` with
        the ``pre`` bytes Python keeps before ``next_seq``. ``framed`` (PDU bytes after the
        data-set PDV ending at ``end``, its context, the largest P-DATA-TF length) lets the
        window go on across the headers of more of the same data set. ``need_ack``: Python
        has seen no ACK of the peer yet, so the first one is Python's (it keeps copies of
        delivered bytes from then on, which an entry of ``keep`` 0 would not)."""
        pdu_left, ctx, max_pdu = framed if framed is not None else (-1, 0, 0)
        self.scanner.register(
            key,
            data_dir,
            next_seq & 0xFFFFFFFF,
            end & 0xFFFFFFFF,
            keep,
            pre,
            pdu_left,
            ctx,
            max_pdu,
            need_ack,
        )

    def unregister(self, key: bytes) -> Report | None:
        """Stop absorbing for the flow; what it absorbed since the last report."""
        report: Report | None = self.scanner.unregister(key)
        return report

    def packets(
        self,
        apply: Callable[[Report, bool], None],
        progress: Callable[[int], None] | None = None,
        every: int = 65536,
    ) -> Iterator[Packet]:
        """The packets Python must see, in order.

        ``apply(report, final)`` accounts what a flow's entry absorbed: before the packet it
        precedes (final: the entry is gone), and for the others every ``every`` packets read
        and at the end, before that batch's packet.
        """
        scanner: Any = self.scanner
        while True:
            # One item at a time: handling it may register an entry for what follows.
            items, reports, done = scanner.batch(1, every)
            # Every packet an entry absorbed in this batch came before the batch's item.
            for report in reports:
                apply(report, False)
            for ts, frame, wire, report in items:
                if report is not None:
                    apply(report, True)
                yield ts, frame, wire
            if progress is not None and reports:
                progress(scanner.tell())
            if done:
                return


class LiveReader(FastReader):
    """The compiled loop on live Ethernet interfaces: packets come from libpcap one by one.

    One reader serves every interface of a process (its entries are the engine's flows).
    """

    def __init__(self) -> None:
        if fastpath is None:
            raise RuntimeError("the compiled reader is not built")
        self.scanner = fastpath.Scanner(None, None, None)

    def from_next(
        self,
        nxt: Callable[[], tuple[Any, bytes]],
        apply: Callable[[Report, bool], None],
        limit: int,
    ) -> Iterator[Packet]:
        """Up to ``limit`` packets waiting in ``nxt``'s buffer; yields those for Python.

        An entry's final report is applied before the packet that ended it, as offline.
        """
        pump = self.scanner.pump
        left = limit
        while left > 0:
            item, read = pump(nxt, left)
            left -= read
            if item is None:
                return
            ts, frame, wire, report = item
            if report is not None:
                apply(report, True)
            yield ts, frame, wire

    def progress(self, apply: Callable[[Report, bool], None]) -> None:
        """Account what every entry absorbed since it was last reported (a timer's tick)."""
        for report in self.scanner.progress():
            apply(report, False)
