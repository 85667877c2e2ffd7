"""Offline capture sources on libpcap (pcapy-ng): pcap and pcapng files, or standard input."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pcapy

from .decode import decoder_for
from .errors import CaptureError, one_line
from .mixed import MixedError, link_types, read_mixed

Packet = tuple[float, bytes, int]  # timestamp, captured bytes, length on the wire


def _pcap_snaplen(path: str) -> int | None:
    """The snapshot length in a classic pcap file header (None for pcapng or unreadable)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError:
        return None
    if len(head) < 24:
        return None
    magic = head[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        return int.from_bytes(head[16:20], "little")
    if magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        return int.from_bytes(head[16:20], "big")
    return None


@dataclass(slots=True)
class ReadResult:
    """How one pass over a capture ended."""

    packets: int = 0
    cut_off: str | None = None  # why reading stopped early (a file truncated mid-packet)


_MIXED_TYPES = "different from the type of the first interface"  # libpcap's refusal


class OfflineCapture:
    """One capture file (or ``-`` for standard input), readable in one or more passes.

    ``user_bpf`` (``read --bpf``) is ANDed with every filter the sensor installs. A pcapng
    whose interfaces have different link types is read with dpkt instead (every frame
    comes to Python, decoded with its interface's link type; ``mixed`` says so).
    """

    def __init__(self, path: str, user_bpf: str | None = None) -> None:
        self.path = path
        self.is_stdin = path == "-"
        self.user_bpf = user_bpf
        if not self.is_stdin:
            if not os.path.exists(path):
                raise CaptureError(f"{path}: no such file")
            if os.path.isdir(path):
                raise CaptureError(f"{path}: is a directory, not a capture file")
            if not os.access(path, os.R_OK):
                raise CaptureError(f"{path}: permission denied")
        self.size = 0 if self.is_stdin else os.path.getsize(path)
        if not self.is_stdin and self.size == 0:
            raise CaptureError(f"{path}: empty file (0 bytes), not a capture")
        self.snaplen = None if self.is_stdin else _pcap_snaplen(path)
        self._reader = self._open()
        self.linktype: int = self._reader.datalink()
        self.linktypes = [self.linktype] if self.is_stdin else (link_types(path) or [self.linktype])
        self.mixed = len(set(self.linktypes)) > 1
        self._current = self.linktype  # the link type of the packet just yielded (mixed)
        self._used = False
        if user_bpf:
            for linktype in set(self.linktypes):
                self._user_program(linktype)  # a filter that does not compile fails here

    def _open(self) -> pcapy.Reader:
        try:
            return pcapy.open_offline(self.path)
        except pcapy.PcapError as exc:
            raise CaptureError(
                f"{self.path}: not a readable pcap or pcapng file ({one_line(exc)})"
            ) from None

    @property
    def passes_allowed(self) -> int:
        """Standard input can be read once; a file as often as needed."""
        return 1 if self.is_stdin else 2

    def _user_program(self, linktype: int) -> pcapy.BPFProgram:
        try:
            return pcapy.compile(linktype, 65535, self.user_bpf, 1, 0)
        except pcapy.PcapError as exc:
            raise CaptureError(f"BPF filter does not compile: {one_line(exc)}") from None

    def decoder(self) -> Callable[[float, bytes], object]:
        """The frame decoder for this capture's packets (per packet when link types mix)."""
        if not self.mixed:
            return decoder_for(self.linktype)
        decoders = {t: decoder_for(t) for t in set(self.linktypes)}

        def decode(ts: float, data: bytes) -> object:
            return decoders.get(self._current, decoders[self.linktype])(ts, data)

        return decode

    def packets(
        self, bpf: str | None, result: ReadResult, progress: Callable[[int], None] | None = None
    ) -> Iterator[Packet]:
        """Yield the packets ``bpf`` admits; a file reopens for each further pass.

        The filter may be changed between packets with :meth:`set_filter`; libpcap
        applies it to the packets read after the change.
        """
        if self.mixed:
            yield from self._mixed_packets(result, progress)
            return
        if self._used:
            if self.is_stdin:
                raise CaptureError("standard input can be read only once")
            self._reader = self._open()
        self._used = True
        reader = self._reader
        if bpf or self.user_bpf:
            self.set_filter(bpf or "")
        fd = -1
        if progress is not None and not self.is_stdin:
            try:
                fd = reader.getfd()
            except pcapy.PcapError:
                fd = -1
        count = 0
        next_packet = reader.next
        while True:
            try:
                header, data = next_packet()
            except pcapy.PcapError as exc:
                if _MIXED_TYPES in str(exc):
                    raise CaptureError(
                        f"{self.path}: an interface described after the first packets has "
                        "another link type; split it with editcap or tshark"
                    ) from None
                result.cut_off = one_line(exc)
                break
            if header is None:
                break
            count += 1
            sec, usec = header.getts()
            yield sec + usec * 1e-6, data, header.getlen()
            if fd >= 0 and count & 0x3FF == 0 and progress is not None:
                progress(os.lseek(fd, 0, os.SEEK_CUR))
        result.packets += count
        if fd >= 0 and progress is not None:
            progress(self.size)

    def _mixed_packets(
        self, result: ReadResult, progress: Callable[[int], None] | None
    ) -> Iterator[Packet]:
        """Every interface's packets through dpkt, the user's filter applied per link type."""
        programs = {t: self._user_program(t) for t in set(self.linktypes)} if self.user_bpf else {}
        count = 0
        try:
            for ts, data, wire, linktype in read_mixed(self.path):
                program = programs.get(linktype)
                if program is not None and not program.filter(data):
                    continue
                self._current = linktype
                count += 1
                yield ts, data, wire
        except MixedError as exc:
            result.cut_off = str(exc)
        result.packets += count
        if progress is not None:
            progress(self.size)

    def set_filter(self, bpf: str) -> None:
        """Install a BPF filter on the open reader (ANDed with the user's)."""
        if self.user_bpf:
            bpf = f"({bpf}) and ({self.user_bpf})" if bpf else self.user_bpf
        try:
            self._reader.setfilter(bpf)
        except pcapy.PcapError as exc:
            raise CaptureError(f"BPF filter does not compile: {one_line(exc)}") from None

    def start_count(self) -> Callable[[], int | None]:
        """Count every packet of the file in a forked child, on another core.

        libpcap's C loop holds the GIL, so a thread would not run in parallel. The
        returned function waits for the child and gives its count (None for stdin, or
        when the count could not be made).
        """
        if self.is_stdin or self.mixed:
            return lambda: None  # a mixed file: the packets read are all there are
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_end)
            os.close(write_end)
            counted = self.count_packets()
            return lambda: counted
        if pid == 0:  # the child: count, report, leave without running any cleanup
            os.close(read_end)
            try:
                os.write(write_end, str(self.count_packets()).encode())
            finally:
                os._exit(0)
        os.close(write_end)

        def result() -> int | None:
            with os.fdopen(read_end, "rb") as fh:
                text = fh.read()
            os.waitpid(pid, 0)
            return int(text) if text.isdigit() else None

        return result

    def count_packets(self) -> int:
        """Every packet in the file, counted in C (no Python object per packet)."""
        if self.is_stdin:
            return 0
        reader = pcapy.open_offline(self.path)
        try:
            stats = reader.loop_filtered(-1, _never, 0)
        except pcapy.PcapError:
            # A file cut mid-packet: libpcap stops with an error and the C count is lost,
            # so count again up to the cut (rare, and only that file pays for it).
            return self._count_slowly()
        return int(stats[0]) + int(stats[1])

    def _count_slowly(self) -> int:
        reader = pcapy.open_offline(self.path)
        count = 0
        while True:
            try:
                header, _ = reader.next()
            except pcapy.PcapError:
                break
            if header is None:
                break
            count += 1
        return count


def _never(*_: object) -> None:
    """Callback for a counting loop that admits nothing."""
