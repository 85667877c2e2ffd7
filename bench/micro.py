"""Micro-benchmark of the DICOM dissector: probe cost per payload, decode cost per association,
and the decode of a storage SCU's A-ASSOCIATE-RQ with 128 presentation contexts (and its AC).

Not a test: prints figures. Run with ``make bench-micro``. The probe is compared in the same
run with a bare ``dpkt.tcp.TCP`` parse of the same payloads, so the figures can be read as
ratios; ``--against REV`` times the 128-context decode of another git revision in the same
process, in turns with this tree.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
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


def _batch(fn: Callable[[bytes], object], pdu: bytes, calls: int = 100) -> float:
    """Seconds per call of ``fn(pdu)`` over one batch."""
    t0 = time.perf_counter()
    for _ in range(calls):
        fn(pdu)
    return (time.perf_counter() - t0) / calls


def _decode_cold(pdu: bytes) -> object:
    """Decode with the UID and transfer-run memos emptied first, as for a first association."""
    UID_MEMO.clear()
    TRANSFER_RUNS.clear()
    return parse_pdu(pdu)


def _parse_pdu_at(rev: str, into: Path) -> Callable[[bytes], object]:
    """``parse_pdu`` of revision ``rev``, its dissectors/ loaded as package dissectors_at_rev."""
    # dissectors/ imports itself only relatively, so it runs under another top-level name.
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "dissectors"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "dissectors").rename(into / "dissectors_at_rev")
    sys.path.insert(0, str(into))
    module = importlib.import_module("dissectors_at_rev.dicom.pdu")
    parse: Callable[[bytes], object] = module.parse_pdu
    return parse


def associate_128(against: str | None, rounds: int = 20) -> None:
    """Per-PDU decode of pynetdicom's 128-context storage RQ and an AC answering it.

    The contenders run in turns, round after round, and each keeps its fastest batch: on a
    shared machine that is the figure least disturbed by neighbours.
    """
    with tempfile.TemporaryDirectory() as tmp:
        cases: dict[str, Callable[[bytes], object]] = {}
        if against:
            cases[against] = _parse_pdu_at(against, Path(tmp))
        cases["this tree"] = parse_pdu
        cases["this tree, memos emptied before each PDU"] = _decode_cold
        for name, pdu in (("A-ASSOCIATE-RQ", storage_rq()), ("A-ASSOCIATE-AC", storage_ac())):
            best = dict.fromkeys(cases, float("inf"))
            for _ in range(rounds):
                for label, fn in cases.items():
                    best[label] = min(best[label], _batch(fn, pdu))
            first = next(iter(best.values()))
            figures = "; ".join(
                f"{label} {t * 1e6:,.0f} us" + (f" (x{first / t:.1f})" if against else "")
                for label, t in best.items()
            )
            print(f"decode, {name} with 128 presentation contexts ({len(pdu):,} bytes): {figures}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--against", metavar="REV", help="also time the 128-context decode of this git revision"
    )
    args = parser.parse_args()
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
    associate_128(args.against)
    print(f"python {sys.version.split()[0]}, pid {os.getpid()}")


if __name__ == "__main__":
    main()
