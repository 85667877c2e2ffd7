"""Live sources: network interfaces opened with libpcap, their kernel filter, privilege drop."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pcapy

from .bpf import all_tcp_filter
from .decode import decoder_for
from .errors import CaptureError, one_line
from .fastread import Packet

# pcap_activate()'s negative results (pcap/pcap.h), as pcapy-ng returns them.
_ACTIVATE_ERRORS = {
    -1: "capture error",
    -5: "no such device",
    -8: "permission denied (run as root, or grant the program CAP_NET_RAW and CAP_NET_ADMIN)",
    -9: "interface is not up",
    -6: "monitor mode not supported",
    -11: "promiscuous mode not permitted",
}

# linux/if_packet.h: a fanout group of sockets sharing one interface's packets
SOL_PACKET = 263
PACKET_FANOUT = 18
PACKET_FANOUT_FLAG_UNIQUEID = 0x2000  # Linux 4.4: the kernel picks an id no group has
ETH_P_ALL = 3


def free_fanout_group(interface: str) -> int:
    """A PACKET_FANOUT group id no socket uses now, as the kernel picks it (OSError if it
    cannot: a kernel before 4.4, no permission).

    A group spans one interface (joining a group of another interface fails), and the ids
    are shared by every process: several sensors, or one on several interfaces, each need
    their own. The probe's group ends when it closes; the workers then create it anew.
    """
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as probe:
        probe.bind((interface, ETH_P_ALL))
        flags = pcapy.PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID
        probe.setsockopt(SOL_PACKET, PACKET_FANOUT, flags << 16)
        return int(probe.getsockopt(SOL_PACKET, PACKET_FANOUT)) & 0xFFFF


@dataclass(slots=True)
class LiveSource:
    """One interface opened with libpcap, non-blocking, its filter in the kernel."""

    interface: str
    handle: Any
    linktype: int
    decode: Callable[[float, bytes], Any]
    fd: int
    stats_base: tuple[int, int, int] = field(default=(0, 0, 0))
    user_filter: str | None = None

    @classmethod
    def open(
        cls,
        interface: str,
        snaplen: int,
        promisc: bool,
        buffer_mb: int,
        user_filter: str | None,
        fanout_group: int | None = None,
    ) -> LiveSource:
        """Open, activate and filter the interface; CaptureError with one line on failure."""
        try:
            handle = pcapy.create(interface)
            handle.set_snaplen(snaplen)
            handle.set_promisc(1 if promisc else 0)
            handle.set_timeout(100)
            handle.set_buffer_size(buffer_mb << 20)
            status = handle.activate()
        except pcapy.PcapError as exc:
            text = one_line(exc)
            lower = text.lower()
            if "no such device" in lower or "doesn't exist" in lower:
                raise CaptureError(f"interface {interface}: no such device") from None
            if "permission" in lower or "not permitted" in lower:
                raise CaptureError(
                    f"interface {interface}: permission denied (run as root, or grant the "
                    "program CAP_NET_RAW and CAP_NET_ADMIN)"
                ) from None
            raise CaptureError(f"interface {interface}: {text}") from None
        if isinstance(status, int) and status < 0:
            raise CaptureError(
                f"interface {interface}: {_ACTIVATE_ERRORS.get(status, f'error {status}')}"
            )
        linktype = handle.datalink()
        source = cls(interface, handle, linktype, decoder_for(linktype), handle.getfd())
        source.user_filter = user_filter
        source.install_filter(all_tcp_filter(linktype))
        if fanout_group is not None:
            try:
                handle.set_fanout(fanout_group, pcapy.PACKET_FANOUT_HASH)
            except (pcapy.PcapError, OSError) as exc:
                raise CaptureError(f"interface {interface}: fanout: {one_line(exc)}") from None
        handle.setnonblock(1)
        return source

    def install_filter(self, expr: str) -> None:
        """Put ``expr`` (ANDed with the user's filter) in the kernel for this interface."""
        if self.user_filter:
            expr = f"({self.user_filter}) and ({expr})"
        try:
            self.handle.setfilter(expr)
        except pcapy.PcapError as exc:
            raise CaptureError(f"BPF filter does not compile: {one_line(exc)}") from None

    def stats(self) -> tuple[int, int, int]:
        """(received, dropped by the kernel, dropped by the interface) since opening."""
        try:
            received, dropped, ifdropped = self.handle.stats()
        except pcapy.PcapError:
            return self.stats_base
        self.stats_base = (int(received), int(dropped), int(ifdropped))
        return self.stats_base

    def compiled_packets(self, reader: Any, apply: Any, limit: int) -> Iterator[Packet]:
        """Up to ``limit`` packets through the compiled loop (fastread.LiveReader): those it
        absorbs are accounted by ``apply``, the others come out as from ``packets``."""
        try:
            yield from reader.from_next(self.handle.next, apply, limit)
        except pcapy.PcapError as exc:
            raise CaptureError(f"interface {self.interface}: {one_line(exc)}") from None

    def packets(self, limit: int) -> Iterator[tuple[float, bytes, int]]:
        """Up to ``limit`` packets waiting in the kernel buffer: (time, bytes, wire length)."""
        nxt = self.handle.next
        for _ in range(limit):
            try:
                header, data = nxt()
            except pcapy.PcapError as exc:
                raise CaptureError(f"interface {self.interface}: {one_line(exc)}") from None
            if header is None:
                return
            sec, usec = header.getts()
            yield sec + usec * 1e-6, data, header.getlen()


def drop_privileges(user: str) -> None:
    """Become ``user`` (and its group) for good, once the captures are open."""
    import grp
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise CaptureError(f"--user {user}: no such user") from None
    if os.getuid() == entry.pw_uid:
        return
    try:
        groups = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]
        os.setgroups(groups)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except PermissionError:
        raise CaptureError(f"--user {user}: cannot switch user (not running as root)") from None
