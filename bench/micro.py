"""Micro-benchmark of the DICOM dissector: probe cost per payload, decode cost per association,
and the decode of a storage SCU's A-ASSOCIATE-RQ with 128 presentation contexts (and its AC).

Not a test: prints figures. Run with ``make bench-micro``. Compared in the same run with a
bare ``dpkt.tcp.TCP`` parse of the same payloads, so the figures can be read as ratios.
"""

from __future__ import annotations

import functools
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dpkt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dissectors.base import CloseReason, Direction  # noqa: E402
from dissectors.dicom import DICOM, probe  # noqa: E402
from dissectors.dicom.items import TRANSFER_RUNS  # noqa: E402
from dissectors.dicom.pdu import parse_pdu  # noqa: E402
from dissectors.dicom.text import UID_MEMO  # noqa: E402
from tests.dissectors.dicom.framing import storage_ac, storage_rq  # noqa: E402


def _payloads(n: int) -> list[bytes]:
    """Non-DICOM first payloads: HTTP, TLS, SSH banners, random bytes, 0x01 0x00 lookalikes."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            out.append(b"GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n")
        elif kind == 1:
            out.append(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(200))
        elif kind == 2:
            out.append(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        elif kind == 3:
            out.append(rng.randbytes(rng.randint(1, 1460)))
        else:
            out.append(b"\x01\x00" + rng.randbytes(300))
    return out


def _time(fn: Callable[[], object], repeat: int = 7) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _association_streams() -> list[tuple[Direction, bytes]]:
    """The PDUs of a real pcaps/ association, in capture order, by direction."""
    pcap = ROOT / "pcaps" / "dcmtk-store-11112" / "capture.pcap"
    if not pcap.exists():
        pcap = next(iter(sorted(ROOT.glob("pcaps/*/capture.pcap"))))
    chunks: list[tuple[Direction, bytes]] = []
    client = None
    with open(pcap, "rb") as fh:
        for _, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            tcp = ip.data
            if not isinstance(tcp, dpkt.tcp.TCP) or not tcp.data:
                continue
            if client is None:
                client = tcp.sport
            chunks.append(
                (Direction.ORIGIN if tcp.sport == client else Direction.PEER, bytes(tcp.data))
            )
            if len(chunks) > 5000:
                break
    return chunks


def _per_call(fn: Callable[[], object], calls: int = 200, repeat: int = 15) -> float:
    """Seconds per call: the fastest of ``repeat`` batches (the least disturbed by neighbours)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def _decode_cold(pdu: bytes) -> object:
    """Decode with the UID and transfer-run memos emptied first, as for a first association."""
    UID_MEMO.clear()
    TRANSFER_RUNS.clear()
    return parse_pdu(pdu)


def associate_128() -> None:
    """Per-PDU decode of pynetdicom's 128-context storage RQ and an AC answering it."""
    for name, pdu in (("A-ASSOCIATE-RQ", storage_rq()), ("A-ASSOCIATE-AC", storage_ac())):
        warm = _per_call(functools.partial(parse_pdu, pdu))
        cold = _per_call(functools.partial(_decode_cold, pdu))
        print(
            f"decode, {name} with 128 presentation contexts ({len(pdu):,} bytes): "
            f"{warm * 1e6:,.0f} us per PDU, {cold * 1e6:,.0f} us with the memos emptied first"
        )


def main() -> None:
    payloads = _payloads(20000)
    frames = [bytes(dpkt.tcp.TCP(sport=40000, dport=104, data=p)) for p in payloads]
    t_probe = _time(lambda: [probe(p) for p in payloads])
    t_dpkt = _time(lambda: [dpkt.tcp.TCP(f) for f in frames])
    n = len(payloads)
    print(
        f"probe, non-DICOM first payloads: {t_probe / n * 1e9:,.0f} ns each "
        f"({t_probe / t_dpkt:.2f} x a bare dpkt TCP header parse, {t_dpkt / n * 1e9:,.0f} ns)"
    )

    chunks = _association_streams()
    total = sum(len(c) for _, c in chunks)

    def decode() -> None:
        session = DICOM.new_session("associate-rq")
        tails = {Direction.ORIGIN: b"", Direction.PEER: b""}
        for direction, data in chunks:
            buf = tails[direction] + data if tails[direction] else data
            used, _ = session.feed(direction, buf, 0.0)
            tails[direction] = buf[used:]
        session.close(CloseReason.CONNECTION_CLOSED, 0.0)

    t_decode = _time(decode)
    print(
        f"decode, one real association ({len(chunks)} segments, {total:,} bytes): "
        f"{t_decode * 1e6:,.0f} us, {total / t_decode / 1e6:,.0f} MB/s, "
        f"{t_decode / len(chunks) * 1e6:.2f} us per segment"
    )
    associate_128()
    print(f"python {sys.version.split()[0]}, pid {os.getpid()}")


if __name__ == "__main__":
    main()
