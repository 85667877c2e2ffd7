"""Helpers for the hostile-input tests: pcap writing, frame building, running the sensor.

Frames are built with dpkt (checksums and lengths filled in by dpkt unless a test sets a
field to lie); pcap and pcapng files are written with ``struct`` so that a test can make
any header field wrong on purpose.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
PCAPS = ROOT / "pcaps"

# (timestamp, captured bytes) or (timestamp, captured bytes, length on the wire)
Record = tuple[float, bytes] | tuple[float, bytes, int]

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1

# -- pcap and pcapng files -----------------------------------------------------------------


def pcap_header(linktype: int = LINKTYPE_ETHERNET, snaplen: int = 262144) -> bytes:
    """A classic little-endian microsecond pcap global header."""
    return struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(ts: float, data: bytes, orig_len: int | None = None) -> bytes:
    """One classic pcap record header followed by its captured bytes."""
    sec = int(ts)
    usec = round((ts - sec) * 1e6)
    wire = len(data) if orig_len is None else orig_len
    return struct.pack("<IIII", sec, usec, len(data), wire) + data


def pcap_bytes(
    records: Iterable[Record], linktype: int = LINKTYPE_ETHERNET, snaplen: int = 262144
) -> bytes:
    """A whole classic pcap file in memory."""
    parts = [pcap_header(linktype, snaplen)]
    for rec in records:
        parts.append(pcap_record(rec[0], rec[1], rec[2] if len(rec) > 2 else None))  # type: ignore[misc]
    return b"".join(parts)


def write_pcap(
    path: Path,
    records: Iterable[Record],
    linktype: int = LINKTYPE_ETHERNET,
    snaplen: int = 262144,
) -> Path:
    """Write a classic pcap file and return its path."""
    path.write_bytes(pcap_bytes(records, linktype, snaplen))
    return path


def pcapng_block(block_type: int, body: bytes, total: int | None = None) -> bytes:
    """A pcapng block: type, total length, body padded to 32 bits, total length again."""
    body = body + b"\x00" * (-len(body) % 4)
    length = 12 + len(body) if total is None else total
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def pcapng_shb() -> bytes:
    """A section header block (little endian, version 1.0, section length unknown)."""
    return pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def pcapng_idb(linktype: int = LINKTYPE_ETHERNET, snaplen: int = 262144) -> bytes:
    """An interface description block (default microsecond resolution)."""
    return pcapng_block(0x00000001, struct.pack("<HHI", linktype, 0, snaplen))


def pcapng_epb(ts: float, data: bytes, total: int | None = None) -> bytes:
    """An enhanced packet block on interface 0."""
    usec = round(ts * 1e6)
    body = struct.pack("<IIIII", 0, usec >> 32, usec & 0xFFFFFFFF, len(data), len(data)) + data
    return pcapng_block(0x00000006, body, total)


def read_pcap(path: Path) -> tuple[int, list[tuple[float, bytes]]]:
    """(link type, records) of a pcap or pcapng file, read with dpkt."""
    with path.open("rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        reader: Any = (
            dpkt.pcapng.Reader(fh) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        )
        return reader.datalink(), [(ts, bytes(buf)) for ts, buf in reader]


# -- frames --------------------------------------------------------------------------------

SYN, FIN, RST, PSH, ACK = (dpkt.tcp.TH_SYN, dpkt.tcp.TH_FIN, dpkt.tcp.TH_RST, dpkt.tcp.TH_PUSH,
                           dpkt.tcp.TH_ACK)  # fmt: skip


def ip4(a: str) -> bytes:
    return socket.inet_aton(a)


def ip6(a: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, a)


def tcp4(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    **ip_fields: Any,
) -> dpkt.ip.IP:
    """An IPv4 packet holding one TCP segment (dpkt fills lengths and checksums)."""
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=65535,
                       data=payload)  # fmt: skip
    ip = dpkt.ip.IP(src=ip4(src), dst=ip4(dst), p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=tcp)
    for k, v in ip_fields.items():
        setattr(ip, k, v)
    return ip


def eth(l3: Any, ethertype: int = dpkt.ethernet.ETH_TYPE_IP) -> bytes:
    """An Ethernet II frame around ``l3``."""
    return bytes(
        dpkt.ethernet.Ethernet(
            src=b"\x02\x00\x00\x00\x00\x01", dst=b"\x02\x00\x00\x00\x00\x02", type=ethertype,
            data=l3,
        )
    )  # fmt: skip


@dataclass
class Conversation:
    """A TCP connection built segment by segment: index 0 is the client, 1 the server."""

    client: tuple[str, int] = ("10.9.0.1", 50001)
    server: tuple[str, int] = ("10.9.0.2", 104)
    ts: float = 1_767_225_600.0
    mss: int = 1460
    records: list[tuple[float, bytes]] = field(default_factory=list)
    seq: list[int] = field(default_factory=lambda: [1000, 900_000])

    def packet(self, side: int, flags: int, payload: bytes = b"", **ip_fields: Any) -> dpkt.ip.IP:
        """The IP packet ``side`` sends next (not yet recorded)."""
        a, b = (self.client, self.server) if side == 0 else (self.server, self.client)
        ack = self.seq[1 - side] if flags & ACK else 0
        return tcp4(a[0], b[0], a[1], b[1], self.seq[side], ack, flags, payload, **ip_fields)

    def send(self, side: int, flags: int, payload: bytes = b"") -> None:
        """Record one segment from ``side`` and advance its sequence number."""
        self.ts += 0.001
        self.records.append((self.ts, eth(self.packet(side, flags, payload))))
        self.seq[side] = (self.seq[side] + len(payload) + (1 if flags & (SYN | FIN) else 0)) % (
            1 << 32
        )

    def handshake(self) -> Conversation:
        self.send(0, SYN)
        self.send(1, SYN | ACK)
        self.send(0, ACK)
        return self

    def data(self, side: int, payload: bytes) -> Conversation:
        """Send ``payload`` from ``side`` in MSS-sized segments, each acknowledged."""
        for i in range(0, len(payload), self.mss):
            self.send(side, ACK | PSH, payload[i : i + self.mss])
            self.send(1 - side, ACK)
        return self

    def close(self) -> Conversation:
        self.send(0, FIN | ACK)
        self.send(1, FIN | ACK)
        self.send(0, ACK)
        return self


# -- DICOM PDUs ----------------------------------------------------------------------------


def item(item_type: int, value: bytes, length: int | None = None) -> bytes:
    """An item or sub-item: type, reserved, 2-byte length (``length`` may lie), value."""
    return struct.pack(">BxH", item_type, len(value) if length is None else length) + value


def pdu(pdu_type: int, body: bytes, length: int | None = None) -> bytes:
    """A PDU: type, reserved, 4-byte length (``length`` may lie), body."""
    return struct.pack(">BxI", pdu_type, len(body) if length is None else length) + body


def ae(title: str) -> bytes:
    return title.encode().ljust(16)


VERIFICATION = b"1.2.840.10008.1.1"
IMPLICIT_LE = b"1.2.840.10008.1.2"
APP_CONTEXT = item(0x10, b"1.2.840.10008.3.1.1.1")


def presentation_context(context_id: int = 1, abstract: bytes = VERIFICATION) -> bytes:
    return item(0x20, bytes((context_id, 0, 0, 0)) + item(0x30, abstract) + item(0x40, IMPLICIT_LE))


def user_information(*sub_items: bytes) -> bytes:
    return item(0x50, item(0x51, struct.pack(">I", 16384)) + b"".join(sub_items))


def associate_rq(
    items: bytes | None = None,
    calling: str = "HOSTILE-SCU",
    called: str = "PACS",
    length: int | None = None,
) -> bytes:
    """An A-ASSOCIATE-RQ; by default one Verification context and a max PDU length."""
    if items is None:
        items = APP_CONTEXT + presentation_context() + user_information()
    fixed = struct.pack(">HH", 1, 0) + ae(called) + ae(calling) + bytes(32)
    return pdu(0x01, fixed + items, length)


def associate_ac(calling: str = "HOSTILE-SCU", called: str = "PACS") -> bytes:
    fixed = struct.pack(">HH", 1, 0) + ae(called) + ae(calling) + bytes(32)
    pc = item(0x21, bytes((1, 0, 0, 0)) + item(0x40, IMPLICIT_LE))
    return pdu(0x02, fixed + APP_CONTEXT + pc + user_information())


def pdv(context_id: int, control: int, fragment: bytes, length: int | None = None) -> bytes:
    return struct.pack(">IBB", len(fragment) + 2 if length is None else length, context_id,
                       control) + fragment  # fmt: skip


def echo_rq_command() -> bytes:
    """A C-ECHO-RQ command set, implicit VR little endian, with its group length."""
    elems = (
        _elem(0x0000, 0x0002, VERIFICATION + b"\x00")
        + _elem(0x0000, 0x0100, struct.pack("<H", 0x0030))
        + _elem(0x0000, 0x0110, struct.pack("<H", 1))
        + _elem(0x0000, 0x0800, struct.pack("<H", 0x0101))
    )
    return _elem(0x0000, 0x0000, struct.pack("<I", len(elems))) + elems


def _elem(group: int, element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", group, element, len(value)) + value


RELEASE_RQ = pdu(0x05, bytes(4))
RELEASE_RP = pdu(0x06, bytes(4))


def dicom_conversation(
    requests: Sequence[bytes],
    answers: Sequence[bytes] = (),
    client: tuple[str, int] = ("10.9.0.1", 50001),
    server: tuple[str, int] = ("10.9.0.2", 104),
    close: bool = True,
) -> list[tuple[float, bytes]]:
    """Handshake, the client's PDUs interleaved with the server's answers, FIN."""
    conv = Conversation(client, server).handshake()
    for i, req in enumerate(requests):
        conv.data(0, req)
        if i < len(answers):
            conv.data(1, answers[i])
    if close:
        conv.close()
    return conv.records


# -- running the sensor --------------------------------------------------------------------


@dataclass
class Run:
    """How one ``dicom-sensor read`` subprocess ended, and what it wrote."""

    rc: int | None  # None: killed after the timeout
    stdout: str
    stderr: str
    peak_rss_mb: float
    seconds: float
    out: Path

    @property
    def timed_out(self) -> bool:
        return self.rc is None

    def text(self, name: str) -> str:
        path = self.out / name
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text("associations.jsonl").splitlines()]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text("events.jsonl").splitlines()]

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return parse_metrics(self.text("metrics.prom"))

    def all_outputs(self) -> dict[str, str]:
        """Every file written plus stdout and stderr, by name."""
        out = {p.name: p.read_text(encoding="utf-8", errors="replace") for p in self.out.iterdir()}
        out["<stdout>"] = self.stdout
        out["<stderr>"] = self.stderr
        return out


OUTPUTS = {
    "--associations": "associations.jsonl",
    "--events": "events.jsonl",
    "--metrics": "metrics.prom",
    "--inventory": "inventory.json",
    "--inventory-csv": "inventory.csv",
}


def run_sensor(
    captures: Sequence[Path | str],
    out: Path,
    timeout: float = 60.0,
    extra: Sequence[str] = (),
    outputs: bool = True,
    stdin: bytes | None = None,
) -> Run:
    """Run ``python -m sensor.cli read`` in a subprocess with every output in ``out``.

    The child's peak RSS comes from ``wait4`` (its own rusage, not the cumulative
    ``RUSAGE_CHILDREN`` of this test process). After ``timeout`` seconds the child is
    killed and ``rc`` is None.
    """
    out.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "sensor.cli", "read", *map(str, captures)]
    if outputs:
        for flag, name in OUTPUTS.items():
            args += [flag, str(out / name)]
    args += list(extra)
    stdout_path, stderr_path = out.parent / f"{out.name}.stdout", out.parent / f"{out.name}.stderr"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    started = time.monotonic()
    with stdout_path.open("wb") as so, stderr_path.open("wb") as se:
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=so,
            stderr=se,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        if stdin is not None and proc.stdin is not None:
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass
        rc: int | None = None
        rss_kb = 0
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                rc = os.waitstatus_to_exitcode(status)
                rss_kb = usage.ru_maxrss
                break
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                rss_kb = usage.ru_maxrss
                break
            time.sleep(0.02)
        proc.returncode = rc if rc is not None else -9  # keep Popen from waiting again
    return Run(
        rc,
        stdout_path.read_text(encoding="utf-8", errors="replace"),
        stderr_path.read_text(encoding="utf-8", errors="replace"),
        rss_kb / 1024,
        time.monotonic() - started,
        out,
    )


MetricKey = tuple[str, tuple[tuple[str, str], ...]]


def parse_metrics(text: str) -> dict[MetricKey, float]:
    """Prometheus text exposition as {(sample name, sorted labels): value}."""
    out: dict[MetricKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def metric_sum(metrics: dict[MetricKey, float], name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for (sample, lbls), value in metrics.items():
        if sample == name and all(dict(lbls).get(k) == v for k, v in labels.items()):
            total += value
    return total


def counted_trouble(run: Run) -> dict[str, float]:
    """Non-zero anomaly, decode-drop and truncation counters, by a short name."""
    m = run.metrics()
    out: dict[str, float] = {}
    for (name, labels), value in m.items():
        if not value:
            continue
        if name == "dicom_anomalies_total":
            out[f"anomaly:{dict(labels)['reason']}"] = value
        elif name == "dicom_sensor_decode_drops_total":
            out[f"drop:{dict(labels)['reason']}"] = value
    for rec in run.records():
        for reason in rec["dicom"].get("anomalies", []):
            out.setdefault(f"record:{reason}", 1)
    return out
