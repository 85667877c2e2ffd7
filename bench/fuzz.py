"""Fuzz the DICOM session and the whole offline pipeline, seeded from the captures in pcaps/.

Usage (from the repository root, with the project's venv)::

    python bench/fuzz.py --seconds 600                  # both targets, atheris if installed
    python bench/fuzz.py --seconds 60 --target session  # DicomSession only
    python bench/fuzz.py --seconds 60 --engine random   # no atheris: mutation loop

Targets:

- ``session``: a program of operations on one :class:`DicomSession` (feed either direction
  in any chunking, report gaps, close), seeded from every TCP connection of the real-peer
  captures, as the engine would have fed them. Invariants: nothing raises (not even
  ``DicomError``), ``consumed`` stays within the data, the unconsumed tail stays under one
  associate PDU cap, and the association record built from the session is JSON with the
  required fields.
- ``pipeline``: a whole capture file through :class:`sensor.capture.offline.OfflineCapture` and
  :class:`sensor.pipeline.Pipeline` (two-pass BPF read, decode, flow table, reassembly,
  policy), seeded from the real captures and mutated by records: bytes flipped in headers
  and payloads, records truncated, duplicated, reordered, dropped, lengths and link type
  changed, the file cut. Invariants: nothing raises except ``CaptureError`` while opening
  a file whose header is unreadable, each input finishes in ``--exec-timeout`` seconds,
  memory stays under ``--rss-mb``, every association line and event line is JSON with the
  required fields, and the metrics and inventories can be written.

Engines: ``atheris`` (coverage-guided libFuzzer, one worker process per target, the
structural pcap mutations as a custom mutator) when ``import atheris`` works, else
``random`` (the same mutations in a plain loop). Prints the executions per target and every
distinct finding; the inputs that triggered them are kept under ``--out``. Exit status 1
when anything was found.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
PCAPS = ROOT / "pcaps"
MAX_SEED_BYTES = 200_000

# -- seeds ---------------------------------------------------------------------------------

Op = tuple[str, int, Any]  # ("feed", direction, bytes) | ("gap", direction, int | None)


def capture_files(max_bytes: int = MAX_SEED_BYTES) -> list[Path]:
    """Real and derived captures small enough to mutate quickly."""
    files = sorted(PCAPS.glob("*/capture.pcap*")) + sorted(PCAPS.glob("*/*/capture.pcap*"))
    return [p for p in files if p.stat().st_size <= max_bytes]


def _frames(path: Path) -> Iterator[tuple[float, Any]]:
    """(ts, dpkt IP or IP6 packet) of every frame dpkt can decode in ``path``."""
    import dpkt

    with path.open("rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        reader: Any = (
            dpkt.pcapng.Reader(fh) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        )
        linktype = reader.datalink()
        for ts, buf in reader:
            try:
                if linktype == 1:
                    l3: Any = dpkt.ethernet.Ethernet(buf).data
                elif linktype == 113:
                    l3 = dpkt.sll.SLL(buf).data
                elif linktype == 276:
                    l3 = dpkt.sll2.SLL2(buf).data
                else:
                    continue
            except (dpkt.UnpackError, struct.error, IndexError, ValueError):
                continue
            if isinstance(l3, dpkt.ip.IP | dpkt.ip6.IP6) and isinstance(l3.data, dpkt.tcp.TCP):
                yield ts, l3


def pdu_programs(path: Path) -> list[tuple[str, list[Op]]]:
    """Each TCP connection of a capture as a session program: (detected_by, ops).

    Direction 0 (ORIGIN) is the side whose first payload starts with 0x01 (an RQ), else the
    SYN sender. Bytes are taken in capture order, retransmissions dropped, holes as gaps.
    """
    conns: dict[tuple[Any, ...], dict[str, Any]] = {}
    for _, ip in _frames(path):
        tcp = ip.data
        a, b = (bytes(ip.src), tcp.sport), (bytes(ip.dst), tcp.dport)
        key = (a, b) if (a, b) in conns else (b, a)
        conn = conns.setdefault(key, {"first": a, "next": {}, "ops": [], "origin": None})
        side = 0 if a == conn["first"] else 1
        payload = bytes(tcp.data)
        if tcp.flags & 0x02:
            conn["next"][side] = (tcp.seq + 1) & 0xFFFFFFFF
            continue
        if not payload:
            continue
        if conn["origin"] is None:
            conn["origin"] = side if payload[0] == 1 else 1 - side if payload[0] == 2 else side
        nxt = conn["next"].get(side, tcp.seq)
        delta = (tcp.seq - nxt) & 0xFFFFFFFF
        if delta >= 1 << 31:  # starts before what was delivered: keep only the new bytes
            payload = payload[(nxt - tcp.seq) & 0xFFFFFFFF :]
            if not payload:
                continue
        elif delta:
            conn["ops"].append(("gap", side, delta))
        conn["ops"].append(("feed", side, payload))
        conn["next"][side] = (tcp.seq + len(tcp.data)) & 0xFFFFFFFF
    out = []
    for conn in conns.values():
        if not conn["ops"] or conn["origin"] is None:
            continue
        origin = conn["origin"]
        ops = [(kind, 0 if side == origin else 1, arg) for kind, side, arg in conn["ops"]]
        first = next(arg for kind, _, arg in ops if kind == "feed")
        detected = {1: "associate-rq", 2: "associate-ac"}.get(first[0], "mid-stream")
        out.append((detected, ops))
    return out


DETECTED_BY = ("associate-rq", "associate-ac", "mid-stream")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def encode_program(detected_by: str, ops: list[Op]) -> bytes:
    """A session program as bytes, the fuzzer's input format (see :func:`decode_program`)."""
    out = bytearray([DETECTED_BY.index(detected_by)])
    for kind, direction, arg in ops:
        if kind == "feed":
            for i in range(0, len(arg), 0xFFFF):
                chunk = arg[i : i + 0xFFFF]
                out += bytes([direction]) + _U16.pack(len(chunk)) + chunk
        else:
            unknown = arg is None
            out += bytes([2 | direction << 2 | unknown << 3])
            out += _U32.pack(0 if unknown else min(arg, 0xFFFFFFFF))
    return bytes(out)


def decode_program(data: bytes) -> tuple[str, list[Op]]:
    """Byte 0 picks detected_by; then ops: ``d`` (0/1) feed n=u16 bytes from direction d,
    ``2|d<<2|unknown<<3`` gap of u32 bytes, ``3|d<<2`` feed as a memoryview."""
    if not data:
        return DETECTED_BY[0], []
    detected = DETECTED_BY[data[0] % 3]
    ops: list[Op] = []
    pos, n = 1, len(data)
    while pos < n:
        op = data[pos]
        pos += 1
        kind = op & 3
        direction = (op >> 2) & 1 if kind >= 2 else kind
        if kind == 2:
            missing = _U32.unpack(data[pos : pos + 4].ljust(4, b"\x00"))[0]
            pos += 4
            ops.append(("gap", direction, None if op & 8 else missing))
            continue
        length = _U16.unpack(data[pos : pos + 2].ljust(2, b"\x00"))[0]
        pos += 2
        chunk = data[pos : pos + length]
        pos += length
        ops.append(("view" if kind == 3 else "feed", direction, chunk))
    return detected, ops


def session_seeds() -> list[bytes]:
    """Every connection of every small capture as a program, plus mid-stream and rechunked
    variants."""
    rng = random.Random(8)
    seeds: list[bytes] = []
    for path in capture_files():
        for detected, ops in pdu_programs(path):
            seeds.append(encode_program(detected, ops))
            # The same bytes in random chunks, and the second half as a mid-stream start.
            joined: list[Op] = []
            for kind, d, arg in ops:
                if kind == "feed" and len(arg) > 8:
                    cut = rng.randrange(1, len(arg))
                    joined += [(kind, d, arg[:cut]), (kind, d, arg[cut:])]
                else:
                    joined.append((kind, d, arg))
            seeds.append(encode_program(detected, joined))
            if len(ops) > 4:
                seeds.append(encode_program("mid-stream", ops[len(ops) // 2 :]))
    unique = {hashlib.sha1(s).digest(): s for s in seeds}
    return sorted(unique.values(), key=len)[:400]


def pcap_seeds() -> list[bytes]:
    """The small captures' bytes."""
    return [p.read_bytes() for p in capture_files()]


# -- invariants ----------------------------------------------------------------------------


class Finding(Exception):
    """An invariant broke."""


# Findings already reported (tests/hostile asserts the right behaviour for each); the
# fuzzers count their hits and go on instead of stopping at the first one. Keep a pattern
# after the fix: it then simply never matches.
KNOWN = {
    r"BPF filter does not compile: (DLT N link-layer type filtering not implemented"
    r"|unknown data link type N|.*not supported for this data link type|.*link-layer type)": (
        "readable capture with a link type libpcap cannot filter: CaptureError, exit 2 "
        "(test_malformed.py::test_odd_link_type)"
    ),
}


def known(sig: str) -> str | None:
    """The note of a known finding whose pattern matches ``sig``, else None."""
    for pattern, note in KNOWN.items():
        if re.search(pattern, sig):
            return note
    return None


REQUIRED_RECORD = {
    "@timestamp": None,
    "event": {"kind": None, "dataset": None, "start": None, "end": None},
    "source": {"ip": None, "port": None},
    "destination": {"ip": None, "port": None},
    "network": {"transport": None},
    "dicom": {
        "calling_ae_title": None,
        "called_ae_title": None,
        "association": {"result": None, "end": None},
        "detected_by": None,
        "dimse": None,
        "pdata": None,
    },
}


def check_fields(obj: Any, required: dict[str, Any], where: str = "") -> None:
    """``obj`` holds every key of ``required`` (recursively)."""
    if not isinstance(obj, dict):
        raise Finding(f"record{where} is {type(obj).__name__}, not an object")
    for key, sub in required.items():
        if key not in obj:
            raise Finding(f"record lacks {where}.{key}")
        if sub is not None:
            check_fields(obj[key], sub, f"{where}.{key}")


def check_record_line(line: str) -> dict[str, Any]:
    try:
        rec = json.loads(line)
    except ValueError as exc:
        raise Finding(f"association line is not JSON: {exc}") from None
    check_fields(rec, REQUIRED_RECORD)
    if rec["event"]["dataset"] != "dicom.association":
        raise Finding("association record with the wrong event.dataset")
    return rec


def run_session_program(data: bytes) -> int:
    """Drive one DicomSession with a program; the number of events. Raises Finding."""
    from dissectors.base import CloseReason, Direction
    from dissectors.dicom import DEFAULT_LIMITS, DicomSession
    from sensor.flow.table import FlowInfo
    from sensor.outputs.records import build_record

    detected, ops = decode_program(data)
    session = DicomSession(detected)
    pending = [b"", b""]
    events = 0
    ts = 1_767_225_600.0
    bound = DEFAULT_LIMITS.max_associate_pdu + 6
    for kind, d, arg in ops:
        ts += 0.001
        direction = Direction(d)
        if kind == "gap":
            pending[d] = b""
            events += len(session.gap(direction, arg, ts))
            continue
        buf = pending[d] + arg
        consumed, evs = session.feed(direction, memoryview(buf) if kind == "view" else buf, ts)
        if not 0 <= consumed <= len(buf):
            raise Finding(f"feed consumed {consumed} of {len(buf)} bytes")
        pending[d] = buf[consumed:]
        if len(pending[d]) > bound:
            raise Finding(f"unconsumed tail of {len(pending[d])} bytes (cap {bound})")
        events += len(evs)
    events += len(session.close(CloseReason.CAPTURE_ENDED, ts + 1))
    info = FlowInfo("192.0.2.1", 50000, "192.0.2.2", 104, None, 1.0, ts, True, "192.0.2.1", 50000)
    check_record_line(json.dumps(build_record(info, session)))
    return events


@dataclass
class PipelineOutcome:
    """What one pipeline execution produced."""

    opened: bool
    records: int
    events: int
    seconds: float


def run_pipeline_capture(data: bytes, workdir: Path) -> PipelineOutcome:
    """One capture file through OfflineCapture and Pipeline, outputs checked. Raises Finding."""
    from dissectors.registry import load_dissectors
    from sensor.capture.offline import CaptureError, OfflineCapture
    from sensor.outputs.jsonl import JsonLines
    from sensor.outputs.metrics import exposition
    from sensor.pipeline import Pipeline

    started = time.monotonic()
    path = workdir / "input.pcap"
    path.write_bytes(data)
    try:
        capture = OfflineCapture(str(path))
    except CaptureError as exc:
        if "\n" in str(exc):
            raise Finding("CaptureError message spans several lines") from None
        return PipelineOutcome(False, 0, 0, time.monotonic() - started)
    assoc_path, events_path = workdir / "assoc.jsonl", workdir / "events.jsonl"
    assoc, events = JsonLines(str(assoc_path)), JsonLines(str(events_path))
    pipeline = Pipeline(_dissectors(load_dissectors), associations=assoc, events=events)
    try:
        pipeline.read(capture)
    except CaptureError as exc:
        raise Finding(f"CaptureError after the header was read: {exc}") from None
    finally:
        pipeline.finish()
        assoc.close()
        events.close()
    exposition(pipeline)
    for write in (pipeline.policy.inventory.write_json, pipeline.policy.inventory.write_csv):
        write(io.StringIO())
    n_records = 0
    for line in assoc_path.read_text(encoding="utf-8").splitlines():
        check_record_line(line)
        n_records += 1
    n_events = 0
    for line in events_path.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise Finding(f"event line is not JSON: {exc}") from None
        if "event" not in event or "@timestamp" not in event:
            raise Finding("event without event/@timestamp")
        n_events += 1
    return PipelineOutcome(True, n_records, n_events, time.monotonic() - started)


_DISSECTORS: list[Any] = []


def _dissectors(load: Callable[[], Any]) -> Any:
    if not _DISSECTORS:
        _DISSECTORS.extend(load())
    return _DISSECTORS


# -- pcap mutations ------------------------------------------------------------------------

_REC = struct.Struct("<IIII")


def split_pcap(data: bytes) -> tuple[bytes, list[bytes]] | None:
    """(global header, record blobs) of a classic little-endian pcap, else None."""
    if len(data) < 24 or data[:4] not in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        return None
    pos, out = 24, []
    while pos + 16 <= len(data):
        incl = _REC.unpack_from(data, pos)[2]
        end = pos + 16 + incl
        if incl > 1 << 20 or end > len(data):
            break
        out.append(data[pos:end])
        pos = end
    return data[:24], out


def _flip(blob: bytes, rng: random.Random, lo: int, hi: int) -> bytes:
    if hi <= lo:
        return blob
    b = bytearray(blob)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        i = rng.randrange(lo, hi)
        b[i] = rng.choice((rng.randrange(256), b[i] ^ (1 << rng.randrange(8)), 0, 0xFF))
    return bytes(b)


def _set_caplen(rec: bytes, caplen: int) -> bytes:
    sec, usec, _, wire = _REC.unpack_from(rec)
    body = rec[16 : 16 + caplen]
    return _REC.pack(sec, usec, len(body), max(wire, len(body))) + body


def mutate_pcap(data: bytes, rng: random.Random, other: bytes | None = None) -> bytes:
    """One to three structural mutations of a capture (byte flips when it does not parse)."""
    parsed = split_pcap(data)
    if parsed is None or not parsed[1]:
        out = _flip(data, rng, 0, len(data)) if data else data
        return out[: rng.randrange(len(out) + 1)] if rng.random() < 0.2 else out
    header, recs = parsed
    for _ in range(rng.choice((1, 1, 2, 3))):
        if not recs:
            break
        kind = rng.randrange(13)
        i = rng.randrange(len(recs))
        rec = recs[i]
        if kind == 0:  # a byte in the link/IP/TCP headers
            recs[i] = _flip(rec, rng, 16, min(len(rec), 16 + 78))
        elif kind == 1:  # a byte in the payload (PDU headers and items)
            recs[i] = _flip(rec, rng, min(len(rec), 16 + 54), len(rec))
        elif kind == 2:  # duplicate
            recs.insert(rng.randrange(len(recs) + 1), rec)
        elif kind == 3:  # swap two
            j = rng.randrange(len(recs))
            recs[i], recs[j] = recs[j], recs[i]
        elif kind == 4:  # shuffle a window
            j = min(len(recs), i + rng.randint(2, 16))
            window = recs[i:j]
            rng.shuffle(window)
            recs[i:j] = window
        elif kind == 5:  # drop some
            del recs[i : i + rng.randint(1, 4)]
        elif kind == 6:  # snaplen cut of one record or of all
            cut = rng.choice((14, 34, 54, 60, 66, 80, 100))
            if rng.random() < 0.3:
                recs = [_set_caplen(r, cut) for r in recs]
            else:
                recs[i] = _set_caplen(rec, rng.randrange(len(rec) - 15))
        elif kind == 7:  # lie in the record header
            b = bytearray(rec)
            field_ = rng.choice((0, 4, 12))
            struct.pack_into("<I", b, field_, rng.choice((0, 0xFFFFFFFF, rng.getrandbits(32))))
            recs[i] = bytes(b)
        elif kind == 8 and other:  # splice records from another capture
            donor = split_pcap(other)
            if donor and donor[1]:
                k = rng.randrange(len(donor[1]))
                recs[i:i] = donor[1][k : k + rng.randint(1, 20)]
        elif kind == 9:  # IPv4 total length / TCP offset lies
            b = bytearray(rec)
            if len(b) > 16 + 48:
                spot = rng.choice((16 + 16, 16 + 17, 16 + 14 + 20 + 12))
                b[spot] = rng.randrange(256)
            recs[i] = bytes(b)
        elif kind == 10:  # PDU length field of the payload
            b = bytearray(rec)
            at = 16 + 66 if len(b) > 16 + 72 else -1
            if at > 0:
                struct.pack_into(">I", b, at + 2, rng.choice((0, 1, 0xFFFFFFFF, 0x7FFFFFFF,
                                                             rng.getrandbits(32))))  # fmt: skip
            recs[i] = bytes(b)
        elif kind == 11:  # link type or snaplen of the file
            h = bytearray(header)
            if rng.random() < 0.5:
                linktype = rng.choice((0, 1, 12, 101, 105, 108, 113, 147, 228, 229, 276, 300))
                struct.pack_into("<I", h, 20, rng.randrange(300) if linktype == 300 else linktype)
            else:
                struct.pack_into("<I", h, 16, rng.choice((0, 60, 0xFFFFFFFF)))
            header = bytes(h)
        else:  # timestamps going backwards
            b = bytearray(rec)
            struct.pack_into("<I", b, 0, max(0, _REC.unpack_from(rec)[0] - rng.randint(1, 10**6)))
            recs[i] = bytes(b)
    out = header + b"".join(recs)
    if rng.random() < 0.1:
        out = out[: rng.randrange(24, len(out) + 1)]
    return out


# -- engines -------------------------------------------------------------------------------


@dataclass
class Report:
    """Executions and distinct findings of one target."""

    target: str
    executions: int = 0
    seconds: float = 0.0
    findings: dict[str, str] = field(default_factory=dict)  # signature -> first input path
    known: dict[str, int] = field(default_factory=dict)  # known finding note -> hits

    def line(self) -> str:
        rate = self.executions / self.seconds if self.seconds else 0.0
        hits = sum(self.known.values())
        return (
            f"{self.target}: {self.executions} executions in {self.seconds:.0f} s "
            f"({rate:.0f}/s), {len(self.findings)} new distinct findings, "
            f"{hits} hits of {len(self.known)} known findings"
        )


def signature(exc: BaseException) -> str:
    """Exception type, message without numbers, and the innermost project frame."""
    text = re.sub(r"\d+", "N", f"{type(exc).__name__}: {exc}")[:160]
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if "/sensor/" in f.filename
        or "/dissectors/" in f.filename
    ]  # fmt: skip
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return text + where


def _save(out: Path, target: str, data: bytes) -> str:
    out.mkdir(parents=True, exist_ok=True)
    name = out / f"{target}-{hashlib.sha1(data).hexdigest()[:12]}.bin"
    name.write_bytes(data)
    return str(name)


def random_fuzz(
    target: str,
    seconds: float,
    out: Path,
    seed: int = 0,
    exec_timeout: float = 10.0,
    rss_mb: float = 1024.0,
    log: Callable[[str], None] = print,
) -> Report:
    """The mutation loop without coverage feedback (the in-suite run and the fallback)."""
    rng = random.Random(seed)
    report = Report(target)
    started = time.monotonic()
    seeds = session_seeds() if target == "session" else pcap_seeds()
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        while time.monotonic() - started < seconds:
            base = rng.choice(seeds)
            if target == "session":
                data = _mutate_bytes(base, rng) if rng.random() < 0.9 else base
            else:
                data = mutate_pcap(base, rng, rng.choice(seeds))
            t0 = time.monotonic()
            try:
                if target == "session":
                    run_session_program(data)
                else:
                    run_pipeline_capture(data, workdir)
                took = time.monotonic() - t0
                if took > exec_timeout:
                    raise Finding(f"one input took {took:.1f} s (limit {exec_timeout} s)")
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                if rss > rss_mb:
                    raise Finding(f"peak RSS {rss:.0f} MB over {rss_mb:.0f} MB")
            except Exception as exc:  # every escape is a finding
                sig = signature(exc)
                note = known(sig)
                if note is not None:
                    report.known[note] = report.known.get(note, 0) + 1
                elif sig not in report.findings:
                    report.findings[sig] = _save(out, target, data)
                    log(f"FINDING [{target}] {sig} -> {report.findings[sig]}")
            report.executions += 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.seconds = time.monotonic() - started
    return report


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """Byte-level mutations of a session program (flip, cut, splice a chunk, insert a gap)."""
    b = bytearray(data)
    for _ in range(rng.choice((1, 2, 4, 8))):
        if not b:
            break
        kind = rng.randrange(6)
        i = rng.randrange(len(b))
        if kind <= 1:
            b[i] = rng.randrange(256)
        elif kind == 2:
            del b[i : i + rng.randint(1, 64)]
        elif kind == 3:
            j = rng.randrange(len(b))
            b[i:i] = b[j : j + rng.randint(1, 200)]
        elif kind == 4:
            b[i:i] = bytes([2 | rng.randrange(2) << 2]) + _U32.pack(rng.choice((0, 1, 6, 4096)))
        else:
            b[i:i] = rng.choice((b"\xff\xff\xff\xff", b"\x00\x00", b"\x04\x00", b"\x01\x00"))
    return bytes(b)


# -- atheris -------------------------------------------------------------------------------


def atheris_worker(target: str, seconds: int, out: Path, exec_timeout: int, rss_mb: int) -> None:
    """Run libFuzzer on one target in this process (exits when done)."""
    import atheris

    with atheris.instrument_imports(include=["dissectors", "sensor"]):
        import dissectors.dicom.association
        import dissectors.dicom.items
        import dissectors.dicom.pdu  # noqa: F401

    corpus = out / f"corpus-{target}"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = session_seeds() if target == "session" else pcap_seeds()
    for s in seeds:
        (corpus / hashlib.sha1(s).hexdigest()).write_bytes(s)
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-"))
    rng = random.Random(1)

    known_log = out / f"known-{target}.txt"

    def one_input(data: bytes) -> None:
        try:
            if target == "session":
                run_session_program(data)
            else:
                run_pipeline_capture(data, workdir)
        except Exception as exc:
            note = known(signature(exc))
            if note is None:
                raise
            with known_log.open("a", encoding="utf-8") as fh:
                fh.write(note + "\n")

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng.seed(seed)
        if target == "pipeline" and rng.random() < 0.7:
            out_ = mutate_pcap(data, rng, rng.choice(seeds))
        else:
            out_ = atheris.Mutate(data, max_size)
        return out_[:max_size]

    max_len = 65536 if target == "session" else MAX_SEED_BYTES
    args = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-timeout={exec_timeout}",
        f"-rss_limit_mb={rss_mb}",
        f"-max_len={max_len}",
        f"-artifact_prefix={out}/{target}-",
        "-print_final_stats=1",
        str(corpus),
    ]
    atheris.Setup(args, one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


def atheris_run(
    target: str, seconds: int, out: Path, exec_timeout: int, rss_mb: int, log: Callable[[str], None]
) -> Report:
    """One atheris worker subprocess per target; parse libFuzzer's output."""
    report = Report(target)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", target,
           "--seconds", str(seconds), "--out", str(out), "--exec-timeout", str(exec_timeout),
           "--rss-mb", str(rss_mb)]  # fmt: skip
    known_log = out / f"known-{target}.txt"
    known_log.unlink(missing_ok=True)
    started = time.monotonic()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + 300, cwd=ROOT, check=False
    )
    report.seconds = time.monotonic() - started
    text = proc.stdout + proc.stderr
    if known_log.exists():
        for note in known_log.read_text(encoding="utf-8").splitlines():
            report.known[note] = report.known.get(note, 0) + 1
    runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text)
    done = re.findall(r"Done (\d+) runs", text)
    report.executions = int(runs[-1]) if runs else int(done[-1]) if done else 0
    if proc.returncode != 0:
        crash = re.findall(r"(?:Test unit written to|artifact_prefix.*?)\s*(\S+)", text)
        kind = re.findall(r"==\d+== ERROR: libFuzzer: ([^\n]+)", text)
        exc = re.findall(r"^(?:\w+\.)*\w+(?:Error|Exception|Finding)[^\n]*", text, re.M)
        sig = (kind[-1] if kind else "") + (" " + exc[-1] if exc else "")
        report.findings[sig.strip() or f"exit {proc.returncode}"] = crash[-1] if crash else ""
        log(f"FINDING [{target}] {sig.strip()} -> {crash[-1] if crash else '?'}")
        tail = "\n".join(text.splitlines()[-40:])
        log(f"--- last lines of the {target} worker ---\n{tail}")
    return report


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="total time (all targets)")
    parser.add_argument("--target", choices=("session", "pipeline", "both"), default="both")
    parser.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    parser.add_argument("--out", default=None, help="where findings and corpora go")
    parser.add_argument("--seed", type=int, default=0, help="random engine seed")
    parser.add_argument("--exec-timeout", type=int, default=10, help="seconds per input")
    parser.add_argument("--rss-mb", type=int, default=1024, help="memory limit of the fuzzer")
    parser.add_argument("--worker", choices=("session", "pipeline"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.gettempdir()) / "dicom-sensor-fuzz"
    if args.worker:
        atheris_worker(args.worker, int(args.seconds), out, args.exec_timeout, args.rss_mb)
        return 0
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if have_atheris() else "random"
    targets = ["session", "pipeline"] if args.target == "both" else [args.target]
    share = args.seconds / len(targets)
    print(f"fuzz: engine {engine}, {args.seconds:.0f} s over {', '.join(targets)}; out {out}")
    reports = []
    for target in targets:
        if engine == "atheris":
            rep = atheris_run(
                target, max(1, int(share)), out, args.exec_timeout, args.rss_mb, print
            )
        else:
            with contextlib.redirect_stderr(io.StringIO()):
                rep = random_fuzz(target, share, out, args.seed, args.exec_timeout, args.rss_mb)
        reports.append(rep)
        print(rep.line(), flush=True)
    total = sum(r.executions for r in reports)
    findings = sum(len(r.findings) for r in reports)
    print(f"total: {total} executions, {findings} distinct findings")
    for rep in reports:
        for sig, where in rep.findings.items():
            print(f"  [{rep.target}] {sig}\n      input: {where}")
        for note, hits in rep.known.items():
            print(f"  [{rep.target}] known ({hits} hits): {note}")
    known_hits = sum(sum(r.known.values()) for r in reports)
    return 1 if findings or known_hits else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
