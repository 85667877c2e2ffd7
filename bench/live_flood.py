"""Live memory under an address flood: peak RSS of `dicom-sensor capture` (issue 15 item 13).

Usage (as root, from the repository root, with the project's venv)::

    python bench/live_flood.py flood                  # 20,000 clients x 20,000 servers
    python bench/live_flood.py flood --alert-pcap     # the same with capture --alert-pcap
    python bench/live_flood.py soak --seconds 150     # new addresses every loop
    python bench/live_flood.py generate --pairs 20000 --out /tmp/flood.pcap

The flood is made from one real association, ``pcaps/pynetdicom-128-contexts`` (a pynetdicom
SCU proposing 128 presentation contexts to a pynetdicom SCP, which accepts them; C-ECHO;
release): its payloads are replayed byte for byte for each pair, client ``10.64.0.0 + i``
and server ``10.96.0.0 + i`` (so N pairs are N client and N server addresses), cut into
1,448-byte segments (the veth's MTU would refuse the loopback's 17 KB segment), with a
handshake and FINs. ``soak`` replays a smaller flood in a loop with ``tcpreplay --unique-ip``
(tcpreplay changes every address on each loop) for ``--seconds``.

The sensor runs in a network namespace of our own (``dslf<hex>``, deleted at the end) on one
end of a veth pair, with --associations, --events, --inventory and --metrics; the bench
samples its RSS and its high-water mark (``VmHWM``, the peak) every 0.1 s until it has
exited after SIGTERM, and counts the association records it wrote against the associations
sent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "pcaps" / "pynetdicom-128-contexts" / "capture.pcap"  # a real association
PCAP_GLOBAL = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
REC = struct.Struct("<IIII")
ETH_IP4 = bytes.fromhex("0200000000020200000000010800")
IP4 = struct.Struct("!BBHHHBBH4s4s")
TCP = struct.Struct("!HHIIBBHHH")
FIN, SYN, PSH, ACK = 0x01, 0x02, 0x08, 0x10
MSS = 1448
# Soak addresses 256 apart: 255 loops of --unique-ip stay apart, and 8,192 pairs of clients
# (10.64/11) and servers (10.96/11) do not meet.
SOAK_STRIDE = 256
CLIENT_BASE, SERVER_BASE = 0x0A400000, 0x0A600000  # 10.64.0.0, 10.96.0.0


def frame(src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int,
          payload: bytes = b"") -> bytes:  # fmt: skip
    """Ethernet, IPv4 and TCP headers (checksums 0: the sensor does not check them)."""
    ip = IP4.pack(0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src.to_bytes(4, "big"),
                  dst.to_bytes(4, "big"))  # fmt: skip
    seq, ack = seq & 0xFFFFFFFF, ack & 0xFFFFFFFF
    return ETH_IP4 + ip + TCP.pack(sport, dport, seq, ack, 0x50, flags, 65535, 0, 0) + payload


def template_payloads(path: Path = TEMPLATE) -> list[tuple[bool, bytes]]:
    """The real association's payloads in order: (from the requestor, bytes)."""
    import dpkt

    out: list[tuple[bool, bytes]] = []
    acceptor_port = None
    with path.open("rb") as fh:
        for _, buf in dpkt.pcap.Reader(fh):
            tcp = dpkt.ethernet.Ethernet(buf).data.data
            if acceptor_port is None and tcp.flags & SYN and not tcp.flags & ACK:
                acceptor_port = tcp.dport
            if tcp.data:
                out.append((tcp.dport == acceptor_port, bytes(tcp.data)))
    return out


def association(
    i: int, payloads: list[tuple[bool, bytes]], t: float, stride: int = 1
) -> list[tuple[float, bytes]]:
    """Pair ``i``'s association: handshake, the payloads in MSS segments, FINs."""
    c, s = CLIENT_BASE + i * stride, SERVER_BASE + i * stride
    cp, sp = 20000 + i % 40000, 104
    cseq, sseq = (i * 7919) & 0xFFFFFFFF, (i * 104729) & 0xFFFFFFFF
    dt = 0.00002
    out = [(t, frame(c, s, cp, sp, cseq, 0, SYN)),
           (t + dt, frame(s, c, sp, cp, sseq, cseq + 1, SYN | ACK)),
           (t + 2 * dt, frame(c, s, cp, sp, cseq + 1, sseq + 1, ACK))]  # fmt: skip
    cseq, sseq = cseq + 1, sseq + 1
    t += 3 * dt
    for from_requestor, data in payloads:
        for at in range(0, len(data), MSS):
            part = data[at : at + MSS]
            if from_requestor:
                out.append((t, frame(c, s, cp, sp, cseq, sseq, PSH | ACK, part)))
                cseq += len(part)
            else:
                out.append((t, frame(s, c, sp, cp, sseq, cseq, PSH | ACK, part)))
                sseq += len(part)
            t += dt
    out.append((t, frame(s, c, sp, cp, sseq, cseq, FIN | ACK)))
    out.append((t + dt, frame(c, s, cp, sp, cseq, sseq + 1, FIN | ACK)))
    out.append((t + 2 * dt, frame(s, c, sp, cp, sseq + 1, cseq + 1, ACK)))
    return out


def generate(pairs: int, out: Path, stride: int = 1) -> dict[str, Any]:
    """Write the flood: ``pairs`` accepted associations, each its own client and server.

    ``stride`` spaces the addresses: tcpreplay --unique-ip adds the loop count to every
    address, so consecutive ones would meet their neighbours' on the next loop.
    """
    payloads = template_payloads()
    packets = 0
    with out.open("wb") as fh:
        fh.write(PCAP_GLOBAL)
        t = 1_767_225_600.0
        chunk: list[bytes] = []
        for i in range(pairs):
            for ts, buf in association(i, payloads, t, stride):
                sec = int(ts)
                chunk.append(REC.pack(sec, int((ts - sec) * 1e6), len(buf), len(buf)) + buf)
            t += 0.001
            if len(chunk) > 4096:
                packets += len(chunk)
                fh.write(b"".join(chunk))
                chunk = []
        packets += len(chunk)
        fh.write(b"".join(chunk))
    return {"pairs": pairs, "packets": packets, "bytes": out.stat().st_size}


# The servers in an internal zone, the clients on the internet (the default zone).
ALERTING_CONFIG = """zones:
  imaging:
    cidrs: [10.96.0.0/11]
    radiology: true
    trust: internal
default_zone:
  name: internet
  trust: external
"""


# -- the live run ----------------------------------------------------------------------


def sh(*cmd: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc


@dataclass
class LiveResult:
    """What one live run measured."""

    peak_rss_mb: float = 0.0
    rss_samples: list[tuple[float, float]] = field(default_factory=list)  # (s, MB)
    records: int = 0
    packets: int = 0
    dropped_kernel: int = 0
    exit_code: int = 0
    replay_started: float = 0.0  # seconds after the sensor started
    replay_seconds: float = 0.0
    replay_sent: int = 0
    stderr: str = ""
    metrics: str = ""
    workdir: str = ""


def _status_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB; zeros once it is gone."""
    rss = hwm = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return rss, hwm


def run_live(
    pcap: Path,
    work: Path,
    pps: int,
    loops: int = 1,
    unique_ip: bool = False,
    seconds: float | None = None,
    extra: tuple[str, ...] = (),
    python: str = sys.executable,
) -> LiveResult:
    """Capture in a namespace of our own while tcpreplay sends ``pcap``; SIGTERM; measure."""
    ns = "dslf" + secrets.token_hex(3)
    work.mkdir(parents=True, exist_ok=True)
    result = LiveResult(workdir=str(work))
    sh("ip", "netns", "add", ns)
    try:
        inns = ["ip", "netns", "exec", ns]
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "add", "lfa", "type", "veth", "peer", "name", "lfb")
        for dev in ("lfa", "lfb"):
            sh("ip", "-n", ns, "link", "set", dev, "mtu", "9000", "up")
            sh(*inns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1", check=False)
        assoc = work / "associations.jsonl"
        argv = [*inns, python, "-m", "sensor.cli", "capture", "-i", "lfa",
                "--associations", str(assoc), "--events", str(work / "events.jsonl"),
                "--inventory", str(work / "inventory.json"),
                "--metrics", str(work / "metrics.prom"), *extra]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        err_path = work / "sensor.stderr"
        with err_path.open("wb") as err:
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
                                    env=env)  # fmt: skip
        started = time.monotonic()
        stop = threading.Event()

        def sample() -> None:
            # The peak is the process's own high-water mark (VmHWM). Not ru_maxrss: Linux
            # carries the forking parent's RSS over the exec into it (a test runner's, here).
            while not stop.wait(0.1):
                rss, hwm = _status_mb(proc.pid)
                if rss:
                    result.rss_samples.append((time.monotonic() - started, rss))
                    result.peak_rss_mb = max(result.peak_rss_mb, hwm)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            deadline = time.monotonic() + 30
            while b'"capture.started"' not in err_path.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the sensor did not start:\n{err_path.read_text()}")
                time.sleep(0.05)
            replay = [*inns, "tcpreplay", "-q", "--intf1=lfb", f"--pps={pps}"]
            if unique_ip:
                replay.append("--unique-ip")
            if seconds is not None:
                replay += ["--loop=0", f"--duration={int(seconds)}"]
            else:
                replay.append(f"--loop={loops}")
            t0 = time.monotonic()
            result.replay_started = t0 - started
            done = sh(*replay, str(pcap), timeout=(seconds or 0) + 1800)
            result.replay_seconds = time.monotonic() - t0
            sent = re.search(r"Actual: (\d+) packets", done.stdout + done.stderr)
            result.replay_sent = int(sent[1]) if sent else 0
            _wait_quiet(work / "associations.jsonl")
            proc.send_signal(signal.SIGTERM)
            _, status, _ = os.wait4(proc.pid, 0)
            result.exit_code = os.waitstatus_to_exitcode(status)
        finally:
            stop.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        result.stderr = err_path.read_text(errors="replace")
        for line in result.stderr.splitlines():
            if '"capture.stopped"' in line:
                stopped = json.loads(line)
                result.packets = stopped["packets"]
                result.dropped_kernel = stopped["dropped_kernel"]
        with assoc.open("rb") as fh:
            result.records = sum(1 for _ in fh)
        metrics = work / "metrics.prom"
        result.metrics = metrics.read_text() if metrics.exists() else ""
    finally:
        sh("ip", "netns", "del", ns, check=False)
    return result


def rss_at(result: LiveResult, seconds: float) -> float:
    """The sensor's RSS (MB) sampled nearest to ``seconds`` after it started."""
    return min(result.rss_samples, key=lambda s: abs(s[0] - seconds))[1]


def growth_per_address_kb(result: LiveResult, addresses: int, skip: float = 0.3) -> float:
    """RSS growth (KiB) per new address over the replay, past its first ``skip`` share.

    The replay runs at a constant rate, so new addresses arrive in proportion to time; the
    first part is left out (the kernel ring and the interpreter's first arenas fill there).
    """
    start = result.replay_started + skip * result.replay_seconds
    end = result.replay_started + result.replay_seconds
    grown = rss_at(result, end) - rss_at(result, start)
    return grown * 1024 / max(1.0, (1 - skip) * addresses)


def _wait_quiet(path: Path, quiet: float = 2.0, limit: float = 600.0) -> None:
    """Wait until the sensor has written nothing more for ``quiet`` seconds (drained)."""
    last, changed, started = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - changed < quiet and time.monotonic() - started < limit:
        size = path.stat().st_size if path.exists() else 0
        if size != last:
            last, changed = size, time.monotonic()
        time.sleep(0.2)


def limited(metrics: str) -> dict[str, float]:
    """The sensor's cap counters that bit (name{labels} -> value), from its metrics file."""
    out = {}
    for line in metrics.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        capped = any(k in name for k in ("limited_total", "overflow", "evicted"))
        if capped and float(value):
            out[name] = float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("mode", choices=("generate", "flood", "soak"))
    p.add_argument("--pairs", type=int, default=None,
                   help="client/server pairs (flood: 20000, soak: 2000)")  # fmt: skip
    p.add_argument("--pps", type=int, default=20000, help="tcpreplay packets per second")
    p.add_argument("--seconds", type=float, default=150.0, help="soak: how long")
    p.add_argument("--alert-pcap", action="store_true", help="capture --alert-pcap too")
    p.add_argument("--alerting", action="store_true",
                   help="clients on the internet: every association alerts "
                   "(perimeter-inbound); --alert-pcap writes until a bound bites")  # fmt: skip
    p.add_argument("--out", type=Path, help="generate: where")
    p.add_argument("--work", type=Path, help="keep the sensor outputs here")
    args = p.parse_args(argv)
    pairs = args.pairs or (2000 if args.mode == "soak" else 20000)
    work = args.work or Path(tempfile.mkdtemp(prefix="dsl-live-flood-"))
    work.mkdir(parents=True, exist_ok=True)
    pcap = args.out or work / f"flood-{pairs}.pcap"
    info = generate(pairs, pcap, SOAK_STRIDE if args.mode == "soak" else 1)
    print(f"flood: {info['pairs']:,} associations, {info['packets']:,} packets, "
          f"{info['bytes'] / 1e6:.0f} MB", file=sys.stderr)  # fmt: skip
    if args.mode == "generate":
        return 0
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespace, raw capture)")
    extra: tuple[str, ...] = ()
    if args.alert_pcap:
        extra = ("--alert-pcap", str(work / "alert-pcaps"))
    if args.alerting:
        config = work / "alerting.yaml"
        config.write_text(ALERTING_CONFIG)
        extra += ("--config", str(config))
    soak = args.mode == "soak"
    res = run_live(pcap, work / "sensor", args.pps, unique_ip=soak,
                   seconds=args.seconds if soak else None, extra=extra)  # fmt: skip
    sent = None if soak else pairs
    print(f"{args.mode}: replay {res.replay_seconds:.0f} s at {args.pps:,} pps; sensor exit "
          f"{res.exit_code}, packets {res.packets:,}, "
          f"kernel drops {res.dropped_kernel:,}")  # fmt: skip
    print(f"peak RSS {res.peak_rss_mb:.0f} MB; association records {res.records:,}"
          + (f" of {sent:,} sent" if sent else ""))  # fmt: skip
    curve = res.rss_samples[:: max(1, len(res.rss_samples) // 12)]
    print("RSS over time (s: MB): " + ", ".join(f"{t:.0f}: {m:.0f}" for t, m in curve))
    print(f"caps that bit: {limited(res.metrics) or 'none'}")
    if args.alert_pcap:
        pcaps = list((work / "alert-pcaps").glob("*.pcap"))
        size = sum(p.stat().st_size for p in pcaps)
        print(f"alert pcaps: {len(pcaps):,} files, {size / 1e6:.1f} MB")
    print(f"outputs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
