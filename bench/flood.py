"""Flood captures: a million short TCP flows, or a million A-ASSOCIATE-RQs, with real
associations from pcaps/ mixed in; and a runner that reads them with the sensor.

Usage (from the repository root, with the project's venv)::

    python bench/flood.py --kind syn --flows 1000000 --out /tmp/syn.pcap     # generate only
    python bench/flood.py --run                       # both kinds at 1M flows: generate, read,
                                                      # report peak RSS, time, evictions
    python bench/flood.py --run --kind associate --flows 200000

Kinds:

- ``syn``: SYN floods and port scans. 70% of the flows are spoofed SYNs (random sources
  in 10.64.0.0/10) to the DICOM services of the real associations: a SYN alone, SYN and
  SYN-ACK, or SYN and RST-ACK. 30% are port scans of the same hosts from a few scanners:
  SYN then RST-ACK (closed) or SYN, SYN-ACK, RST (open).
- ``associate``: each flow is its own connection carrying one A-ASSOCIATE-RQ (handshake,
  RQ), to the real acceptors and to 4 more "PACS" addresses, from distinct sources; then
  nothing more (half open, 40%), an A-ASSOCIATE-RJ and FINs (40%), or an RST (20%).

Both add the real associations of ``pcaps/dcmtk-echo-104``, ``pcaps/pynetdicom-user-identity``
and ``pcaps/abort-by-requestor`` three times (at 5%, 50% and 95% of the flood, each copy on
its own client port), frames copied byte for byte with their timing. Flows start at
``--rate`` per second of capture time, so the flow table (100,000 entries by default)
overflows and must evict. Frames are built from ``struct`` templates (no checksums: the
sensor does not check them); 1M flows take about 10-30 s to write.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

ROOT = Path(__file__).resolve().parent.parent
PCAPS = ROOT / "pcaps"
REAL_CASES = ("dcmtk-echo-104", "pynetdicom-user-identity", "abort-by-requestor")
BASE_TS = 1_767_225_600.0

PCAP_GLOBAL = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
REC = struct.Struct("<IIII")
ETH_IP4 = bytes.fromhex("0200000000020200000000010800")
IP4 = struct.Struct("!BBHHHBBH4s4s")
TCP = struct.Struct("!HHIIBBHHH")
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
EXTRA_PACS = (bytes([10, 30, 0, 1]), bytes([10, 30, 0, 2]), bytes([10, 30, 0, 3]),
              bytes([10, 30, 0, 4]))  # fmt: skip


def frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
          payload: bytes = b"") -> bytes:  # fmt: skip
    """Ethernet, IPv4 (no options), TCP (no options) and the payload; checksums left 0."""
    ip = IP4.pack(0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    return ETH_IP4 + ip + TCP.pack(sport, dport, seq, ack, 0x50, flags, 65535, 0, 0) + payload


def _ae(title: str) -> bytes:
    return title.encode().ljust(16)


def _item(t: int, v: bytes) -> bytes:
    return struct.pack(">BxH", t, len(v)) + v


def associate_rq(called: str, calling: str) -> bytes:
    """A plausible A-ASSOCIATE-RQ: Verification and CT Image Storage, max PDU 16 KiB."""
    ts = _item(0x40, b"1.2.840.10008.1.2")
    pcs = b"".join(
        _item(0x20, bytes((cid, 0, 0, 0)) + _item(0x30, uid) + ts)
        for cid, uid in ((1, b"1.2.840.10008.1.1"), (3, b"1.2.840.10008.5.1.4.1.1.2"))
    )
    ui = _item(0x50, _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3.4.5.6.7")
               + _item(0x55, b"FLOOD_1"))  # fmt: skip
    body = (struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + bytes(32)
            + _item(0x10, b"1.2.840.10008.3.1.1.1") + pcs + ui)  # fmt: skip
    return struct.pack(">BxI", 1, len(body)) + body


ASSOCIATE_RJ = bytes.fromhex("03000000000400010107")  # rejected-permanent, called AE unknown


@dataclass
class RealCopy:
    """One copy of a real case's frames, absolute times, client port rewritten."""

    case: str
    frames: list[tuple[float, bytes]]
    client_port_map: dict[int, int]


def _load_real(case: str) -> tuple[list[tuple[float, bytes]], bytes, int, bytes]:
    """(frames relative to the first, acceptor ip, acceptor port, requestor ip)."""
    import dpkt

    out = []
    acceptor: tuple[bytes, int] | None = None
    requestor = b""
    with (PCAPS / case / "capture.pcap").open("rb") as fh:
        t0 = None
        for ts, buf in dpkt.pcap.Reader(fh):
            t0 = ts if t0 is None else t0
            out.append((ts - t0, bytes(buf)))
            tcp = dpkt.ethernet.Ethernet(buf).data.data
            if acceptor is None and tcp.flags & SYN and not tcp.flags & ACK:
                ip = dpkt.ethernet.Ethernet(buf).data
                acceptor = (bytes(ip.dst), tcp.dport)
                requestor = bytes(ip.src)
    assert acceptor is not None
    return out, acceptor[0], acceptor[1], requestor


def _rewrite_port(buf: bytes, acceptor_port: int, port_map: dict[int, int]) -> bytes:
    """Move the requestor's ephemeral port (whichever side it is on) to its new value."""
    ihl = (buf[14] & 0x0F) * 4
    at = 14 + ihl
    sport, dport = struct.unpack_from("!HH", buf, at)
    b = bytearray(buf)
    if sport != acceptor_port and sport in port_map:
        struct.pack_into("!H", b, at, port_map[sport])
    if dport != acceptor_port and dport in port_map:
        struct.pack_into("!H", b, at + 2, port_map[dport])
    return bytes(b)


def real_copies(
    span: float,
) -> tuple[list[RealCopy], list[tuple[bytes, int]], list[dict[str, Any]]]:
    """Three copies of each real case across the span; the acceptors; the expected records."""
    copies, acceptors, expected = [], [], []
    new_port = 61000
    for case in REAL_CASES:
        frames, acc_ip, acc_port, _ = _load_real(case)
        if (acc_ip, acc_port) not in acceptors:
            acceptors.append((acc_ip, acc_port))
        exp = json.loads((PCAPS / case / "expected.json").read_text())
        ports = sorted({p for _, b in frames for p in struct.unpack_from("!HH", b, 14 + 20)}
                       - {acc_port})  # fmt: skip
        for at in (0.05, 0.5, 0.95):
            port_map = {}
            for p in ports:
                port_map[p] = new_port
                new_port += 1
            start = BASE_TS + span * at
            copies.append(RealCopy(
                case,
                [(start + dt, _rewrite_port(b, acc_port, port_map)) for dt, b in frames],
                port_map,
            ))  # fmt: skip
            for e in exp:
                expected.append({
                    "case": case,
                    "calling_ae_title": e["calling_ae_title"],
                    "called_ae_title": e["called_ae_title"],
                    "acceptor_port": e["acceptor_port"],
                    "result": e["result"],
                    "end": e["end"],
                    "dimse": e["dimse"],
                    "requestor_ports": sorted(port_map.values()),
                })  # fmt: skip
    return copies, acceptors, expected


def _syn_flow(i: int, rng: random.Random, targets: list[tuple[bytes, int]], t: float,
              scanners: list[bytes]) -> Iterator[tuple[float, bytes]]:  # fmt: skip
    dst, dport = targets[i % len(targets)]
    seq = rng.getrandbits(32)
    if rng.random() < 0.7:  # spoofed SYN flood at a DICOM service
        src = struct.pack("!I", 0x0A400000 | rng.getrandbits(22))
        sport = 1024 + rng.getrandbits(15)
        yield t, frame(src, dst, sport, dport, seq, 0, SYN)
        kind = rng.random()
        if kind < 0.4:
            yield t + 0.0001, frame(dst, src, dport, sport, 77, seq + 1, SYN | ACK)
        elif kind < 0.7:
            yield t + 0.0001, frame(dst, src, dport, sport, 0, seq + 1, RST | ACK)
        return
    src = scanners[i % len(scanners)]  # a port scan of the same host
    sport = 40000 + (i % 20000)
    port = 1 + (i * 7919) % 65535
    yield t, frame(src, dst, sport, port, seq, 0, SYN)
    if rng.random() < 0.9:
        yield t + 0.0001, frame(dst, src, port, sport, 0, seq + 1, RST | ACK)
    else:
        yield t + 0.0001, frame(dst, src, port, sport, 99, seq + 1, SYN | ACK)
        yield t + 0.0002, frame(src, dst, sport, port, seq + 1, 0, RST)


def _associate_flow(i: int, rng: random.Random, targets: list[tuple[bytes, int]], t: float,
                    rqs: list[bytes]) -> Iterator[tuple[float, bytes]]:  # fmt: skip
    dst, dport = targets[i % len(targets)]
    src = struct.pack("!I", 0x0A400000 | (i & 0x3FFFFF))  # a distinct source per flow
    sport = 1024 + (i >> 22) * 4096 + (i % 4096) + 20000
    c, s = rng.getrandbits(32), rng.getrandbits(32)
    rq = rqs[i % len(rqs)]
    yield t, frame(src, dst, sport, dport, c, 0, SYN)
    yield t + 0.0001, frame(dst, src, dport, sport, s, c + 1, SYN | ACK)
    yield t + 0.0002, frame(src, dst, sport, dport, c + 1, s + 1, ACK)
    yield t + 0.0003, frame(src, dst, sport, dport, c + 1, s + 1, PSH | ACK, rq)
    c += 1 + len(rq)
    kind = rng.random()
    if kind < 0.4:
        return  # half open: the acceptor never answers
    if kind < 0.8:
        yield t + 0.0004, frame(dst, src, dport, sport, s + 1, c, PSH | ACK, ASSOCIATE_RJ)
        s += 1 + len(ASSOCIATE_RJ)
        yield t + 0.0005, frame(dst, src, dport, sport, s, c, FIN | ACK)
        yield t + 0.0006, frame(src, dst, sport, dport, c, s + 1, FIN | ACK)
        return
    yield t + 0.0004, frame(dst, src, dport, sport, s + 1, c, RST | ACK)


def generate(
    kind: str, flows: int, out: Path, rate: float = 10_000.0, seed: int = 1
) -> dict[str, Any]:
    """Write the flood capture; return what it holds (expected real associations included)."""
    rng = random.Random(seed)
    span = flows / rate
    copies, acceptors, expected = real_copies(span)
    real = sorted((f for c in copies for f in c.frames), key=lambda x: x[0])
    targets = list(acceptors)
    if kind == "associate":
        targets += [(ip, port) for ip in EXTRA_PACS for port in (104, 11112)]
    scanners = [bytes([10, 99, 0, n]) for n in range(1, 9)]
    rqs = [associate_rq(called, f"MOD{n:04d}") for n in range(64) for called in ("PACS", "ARCHIVE")]
    packets = 0
    started = time.monotonic()
    rec = REC.pack
    with out.open("wb") as fh:
        w: BinaryIO = fh
        w.write(PCAP_GLOBAL)
        ri = 0
        chunk: list[bytes] = []
        for i in range(flows):
            t = BASE_TS + i / rate
            while ri < len(real) and real[ri][0] <= t:
                ts, buf = real[ri]
                sec = int(ts)
                chunk.append(rec(sec, int((ts - sec) * 1e6), len(buf), len(buf)) + buf)
                ri += 1
            gen = (_syn_flow(i, rng, targets, t, scanners) if kind == "syn"
                   else _associate_flow(i, rng, targets, t, rqs))  # fmt: skip
            for ts, buf in gen:
                sec = int(ts)
                chunk.append(rec(sec, int((ts - sec) * 1e6), len(buf), len(buf)) + buf)
            if len(chunk) > 4096:
                packets += len(chunk)
                w.write(b"".join(chunk))
                chunk = []
        for ts, buf in real[ri:]:
            sec = int(ts)
            chunk.append(rec(sec, int((ts - sec) * 1e6), len(buf), len(buf)) + buf)
        packets += len(chunk)
        w.write(b"".join(chunk))
    return {
        "kind": kind,
        "flows": flows,
        "packets": packets,
        "bytes": out.stat().st_size,
        "seconds": time.monotonic() - started,
        "real_associations": expected,
    }


# -- running the sensor --------------------------------------------------------------------


def read_with_sensor(capture: Path, outdir: Path, timeout: float = 3600.0) -> dict[str, Any]:
    """Run ``python -m sensor.cli read`` on a capture; time, peak RSS, metrics, records."""
    outdir.mkdir(parents=True, exist_ok=True)
    assoc, metrics = outdir / "associations.jsonl", outdir / "metrics.prom"
    args = [sys.executable, "-m", "sensor.cli", "read", str(capture), "--associations",
            str(assoc), "--metrics", str(metrics), "--no-progress"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.monotonic()
    with (outdir / "stderr.txt").open("wb") as err:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                start_new_session=True)  # fmt: skip
        rc: int | None = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                rc = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() - started > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = rc if rc is not None else -9
    elapsed = time.monotonic() - started
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, float] = {}
    if metrics.exists():
        for family in text_string_to_metric_families(metrics.read_text()):
            for s in family.samples:
                label = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{label}}}" if label else s.name] = s.value
    return {
        "rc": rc,
        "seconds": elapsed,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "metrics": samples,
        "stderr": (outdir / "stderr.txt").read_text(errors="replace"),
        "associations_path": str(assoc),
    }


def find_real(associations: Path, expected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The expected real associations missing from the association log (or wrong)."""
    wanted: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for e in expected:
        for port in e["requestor_ports"]:
            wanted.setdefault((e["calling_ae_title"], port), []).append(e)
    found: dict[tuple[str, int], dict[str, Any]] = {}
    with associations.open(encoding="utf-8") as fh:
        for line in fh:
            if '"10.10.0.' not in line:  # the real peers' addresses; the flood's are 10.64/10
                continue
            rec = json.loads(line)
            key = (rec["dicom"]["calling_ae_title"], rec["source"]["port"])
            if key in wanted:
                found[key] = rec
    missing = []
    for e in expected:
        recs = [found.get((e["calling_ae_title"], p)) for p in e["requestor_ports"]]
        ok = [r for r in recs if r is not None and r["dicom"]["dimse"] == e["dimse"]
              and r["dicom"]["association"]["result"] == e["result"]
              and r["dicom"]["association"]["end"] == e["end"]]  # fmt: skip
        if not ok:
            missing.append(e)
    return missing


def summarize(info: dict[str, Any], result: dict[str, Any], missing: list[dict[str, Any]]) -> str:
    m = result["metrics"]
    closed = {k.split("reason=")[1].rstrip("}"): int(v) for k, v in m.items()
              if k.startswith("dicom_sensor_flows_closed_total{")}  # fmt: skip
    associations = int(sum(v for k, v in m.items() if k.startswith("dicom_associations_total")))
    return (
        f"{info['kind']}: {info['flows']:,} flows, {info['packets']:,} packets, "
        f"{info['bytes'] / 1e6:.0f} MB (generated in {info['seconds']:.1f} s)\n"
        f"  sensor exit {result['rc']}, {result['seconds']:.1f} s, "
        f"peak RSS {result['peak_rss_mb']:.0f} MB\n"
        f"  flows tracked {int(m.get('dicom_sensor_flows_total', 0)):,}, "
        f"closed by reason {closed}\n"
        f"  associations {associations:,}"
        f", real associations found {len(info['real_associations']) - len(missing)}"
        f"/{len(info['real_associations'])}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("syn", "associate", "both"), default="both")
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=10_000.0, help="new flows per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", help="capture to write (one kind only; default: a temp dir)")
    parser.add_argument("--run", action="store_true", help="read it with the sensor and report")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--max-rss-mb", type=float, default=200.0)
    args = parser.parse_args(argv)
    kinds = ["syn", "associate"] if args.kind == "both" else [args.kind]
    if args.out and len(kinds) > 1:
        parser.error("--out needs a single --kind")
    work = Path(tempfile.mkdtemp(prefix="flood-"))
    failed = False
    try:
        for kind in kinds:
            path = Path(args.out) if args.out else work / f"{kind}.pcap"
            info = generate(kind, args.flows, path, args.rate, args.seed)
            print(f"wrote {path}: {info['packets']:,} packets, {info['bytes'] / 1e6:.0f} MB in "
                  f"{info['seconds']:.1f} s", flush=True)  # fmt: skip
            if not args.run:
                continue
            result = read_with_sensor(path, work / f"{kind}-out")
            missing = find_real(Path(result["associations_path"]), info["real_associations"])
            print(summarize(info, result, missing), flush=True)
            evicted = result["metrics"].get("dicom_sensor_flows_closed_total{reason=evicted}", 0)
            problems = []
            if result["rc"] != 0:
                problems.append(f"exit {result['rc']}: {result['stderr'][-500:]}")
            if result["peak_rss_mb"] > args.max_rss_mb:
                problems.append(f"peak RSS {result['peak_rss_mb']:.0f} MB > {args.max_rss_mb:.0f}")
            if not evicted:
                problems.append("no eviction counted")
            if missing:
                problems.append(f"{len(missing)} real associations missing")
            for p in problems:
                print(f"  PROBLEM: {p}")
            failed = failed or bool(problems)
            Path(result["associations_path"]).unlink(missing_ok=True)
            if not args.out:
                path.unlink(missing_ok=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(generator peak RSS {self_rss:.0f} MB)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
