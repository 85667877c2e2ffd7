"""Live capture load: the highest replay rate (packets/s) the sensor takes with no kernel drops.

Usage (as root, from the repository root, with the project's venv)::

    python bench/live_load.py                                   # default rates, 8 s per step
    python bench/live_load.py --rates 20000,40000,60000 --seconds 10 --bisect 3
    python bench/live_load.py --pcap bench/data/worst.pcap --rates 2000,5000,10000
    python bench/live_load.py --json /tmp/live.json

A network namespace of its own (``dslb<hex>``, deleted at the end whatever happens) holds a
veth pair, ``lba``/``lbb`` (MTU 9000: the capture has tagged frames of up to 1,525 bytes).
For each rate, rising:

1. a fresh ``dicom-sensor capture -i lba`` starts in the namespace with every output on
   (--associations, --events, --metrics, --metrics-listen on the namespace's loopback);
2. ``tcpreplay --intf1=lbb --pps=RATE --limit=RATE*SECONDS --loop=0`` sends that many
   packets of the capture (bench/data/bench.pcap unless --pcap) from its start;
3. the bench waits until the sensor has caught up (its /metrics count of packets that reached
   Python stops moving), then sends SIGTERM and reads ``capture.stopped`` from the sensor's
   JSON log on stderr: packets, dropped_kernel, dropped_interface.

The run stops at the first rate with kernel drops; ``--bisect K`` then halves the interval
between the last clean rate and that one K times. The answer is the highest clean rate.

What this measures and what it does not:

- the kernel ring (``--buffer-mb``, default the sensor's 64 MiB) absorbs a deficit for a
  while, so a short step can pass above the sustained rate. Each step therefore lasts
  ``--seconds`` (default 8 s) and the table shows the *drain lag*: how long after tcpreplay
  ended the sensor was still reading its backlog. A lag near zero means the sensor kept up as
  the packets came; a lag of seconds means the ring was filling, and a longer step would drop.
- tcpreplay does not always reach the asked rate on a veth; the table shows both.
- ``--alert-pcap`` runs the sensor with ``--alert-pcap`` (pcaps under the step's outputs):
  every packet then goes through Python, the mode's own cost.
- ``--workers N`` is passed to the sensor as is (PACKET_FANOUT workers). With N > 1 the
  "sensor CPU" column is the parent's alone: what merging the workers' records and judging
  their policy inputs costs (bench/worker_cost.py measures the parent and the whole sensor).

The bench.pcap is made by ``python bench/generate.py`` (1.4M packets, 452 MB, 11 s); the bench
generates it when missing (``--packets`` for a smaller one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PCAP = ROOT / "bench" / "data" / "bench.pcap"
DEFAULT_RATES = "5000,10000,20000,30000,40000,50000,60000,80000,100000,150000,200000"
METRICS_PORT = 9464
SCRAPE = (
    "import sys, urllib.request\n"
    "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())\n"
)


@dataclass
class Step:
    """One rate: what was asked, what tcpreplay did, what the sensor saw."""

    rate: int
    sent: int = 0
    replay_seconds: float = 0.0
    replay_pps: float = 0.0
    received: int = 0
    inspected: int = 0
    dropped_kernel: int = 0
    dropped_interface: int = 0
    drain_lag: float = 0.0
    sensor_cpu_seconds: float = 0.0
    associations: int = 0
    exit_code: int = 0

    @property
    def cpu_us_per_packet(self) -> float:
        """Sensor CPU per packet that passed the kernel filter (the ceiling is 1e6 / this)."""
        return 1e6 * self.sensor_cpu_seconds / self.received if self.received else 0.0

    @property
    def clean(self) -> bool:
        return self.exit_code == 0 and self.dropped_kernel == 0 and self.dropped_interface == 0


def sh(*cmd: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc


class Bench:
    """The namespace, the veth pair and one sensor run per rate."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.ns = "dslb" + secrets.token_hex(3)
        self.made = False
        self.last_scrape = ""

    def inns(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def build(self) -> None:
        sh("ip", "netns", "add", self.ns)
        self.made = True
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.ns, "link", "add", "lba", "type", "veth", "peer", "name", "lbb")
        for dev in ("lba", "lbb"):
            sh("ip", "-n", self.ns, "link", "set", dev, "mtu", "9000", "up")
            # no IPv6 chatter (router solicitations, MLD) on the measured link
            sh(*self.inns("sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"), check=False)

    def close(self) -> None:
        if self.made:
            sh("ip", "netns", "del", self.ns, check=False)

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
        return sh(*self.inns(sys.executable, "-c", SCRAPE, url), check=False, timeout=10).stdout

    def run_step(self, rate: int) -> Step:
        args = self.args
        step = Step(rate)
        out = self.work / f"rate-{rate}"
        out.mkdir(parents=True, exist_ok=True)
        err_path = out / "sensor.stderr"
        argv = [sys.executable, "-m", "sensor.cli", "capture", "-i", "lba",
                "--associations", str(out / "associations.jsonl"),
                "--events", str(out / "events.jsonl"),
                "--metrics", str(out / "metrics.prom"),
                "--metrics-listen", f"127.0.0.1:{METRICS_PORT}",
                "--buffer-mb", str(args.buffer_mb)]  # fmt: skip
        if args.workers is not None:
            argv += ["--workers", str(args.workers)]
        if args.alert_pcap:
            argv += ["--alert-pcap", str(out / "pcaps")]
        with err_path.open("wb") as err:
            proc = subprocess.Popen(
                self.inns(*argv), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err
            )
        try:
            self._wait_started(proc, err_path)
            cpu0 = cpu_seconds(proc.pid)
            limit = int(rate * args.seconds)
            t0 = time.monotonic()
            replay = sh(*self.inns("tcpreplay", "--intf1=lbb", f"--pps={rate}",
                                   f"--limit={limit}", "--loop=0", str(args.pcap)))  # fmt: skip
            t1 = time.monotonic()
            step.sent, step.replay_seconds = parse_tcpreplay(replay.stdout, limit, t1 - t0)
            step.replay_pps = step.sent / step.replay_seconds if step.replay_seconds else 0.0
            step.drain_lag = self._drained(t1)
            step.sensor_cpu_seconds = cpu_seconds(proc.pid) - cpu0
            proc.send_signal(signal.SIGTERM)
            step.exit_code = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stopped = [r for r in json_log(err_path) if r.get("event") == "capture.stopped"]
        if not stopped:
            raise SystemExit(f"rate {rate}: no capture.stopped log\n{err_path.read_text()}")
        last = stopped[-1]
        step.received = last["packets"]
        step.dropped_kernel = last["dropped_kernel"]
        step.dropped_interface = last["dropped_interface"]
        step.associations = last["associations"]
        step.inspected = int(metric(self.last_scrape, "dicom_sensor_inspected_packets_total"))
        return step

    def _wait_started(self, proc: subprocess.Popen[bytes], err_path: Path) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(r.get("event") == "capture.started" for r in json_log(err_path)):
                return
            if proc.poll() is not None:
                text = err_path.read_text(errors="replace")
                if "--workers" in text:
                    raise SystemExit(
                        "the sensor has no --workers option yet (issue 6: PACKET_FANOUT "
                        f"workers); only one worker can be measured.\n{text}"
                    )
                raise SystemExit(f"the sensor exited {proc.returncode}:\n{text}")
            time.sleep(0.05)
        raise SystemExit("the sensor did not log capture.started within 20 s")

    def _drained(self, replay_end: float) -> float:
        """Seconds after the replay until the sensor's inspected count stood still."""
        last = -1.0
        last_change = replay_end
        self.last_scrape = ""
        while time.monotonic() - last_change < 1.5:  # the sensor's tick is 1 s
            text = self.scrape()
            self.last_scrape = text or self.last_scrape
            now_count = metric(text, "dicom_sensor_inspected_packets_total")
            if now_count != last:
                last = now_count
                last_change = time.monotonic()
            if time.monotonic() - replay_end > 300:
                break
            time.sleep(0.1)
        return max(0.0, last_change - replay_end)


def json_log(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels`` (text exposition)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_tcpreplay(text: str, limit: int, wall: float) -> tuple[int, float]:
    """(packets sent, seconds) from tcpreplay's summary; the asked figures if it is missing."""
    m = re.search(r"Actual:\s+(\d+)\s+packets\s+\(\d+ bytes\)\s+sent in\s+([\d.]+)\s+seconds", text)
    if m:
        return int(m.group(1)), float(m.group(2))
    return limit, wall


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (
        f"{os.cpu_count()} vCPUs ({model or 'unknown'}), Linux {platform.release()}, "
        f"load average at the start {load}"
    )


def table(steps: list[Step]) -> str:
    head = (
        "| asked pps | sent | replay pps | received | kernel drops | if drops | drain lag s "
        "| sensor CPU s | CPU µs/pkt | clean |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    rows = [
        f"| {s.rate:,} | {s.sent:,} | {s.replay_pps:,.0f} | {s.received:,} | "
        f"{s.dropped_kernel:,} | {s.dropped_interface:,} | {s.drain_lag:.1f} | "
        f"{s.sensor_cpu_seconds:.1f} | {s.cpu_us_per_packet:.1f} | {'yes' if s.clean else 'NO'} |"
        for s in sorted(steps, key=lambda s: s.rate)
    ]
    return "\n".join([head, *rows])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--pcap", type=Path, default=DEFAULT_PCAP)
    p.add_argument("--packets", type=int, default=None,
                   help="generate the pcap with this many packets when it is missing")  # fmt: skip
    p.add_argument("--rates", default=DEFAULT_RATES, help="rising packets/s, comma-separated")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each step")
    p.add_argument("--bisect", type=int, default=2, help="halvings after the first dropping rate")
    p.add_argument("--buffer-mb", type=int, default=64, help="the sensor's --buffer-mb")
    p.add_argument("--workers", type=int, default=None, help="the sensor's --workers")
    p.add_argument(
        "--alert-pcap",
        action="store_true",
        help="run the sensor with --alert-pcap (its buffers keep every packet of "
        "an association, so the compiled live loop is off)",
    )
    p.add_argument("--json", type=Path, help="write the steps here as JSON")
    p.add_argument("--work", type=Path, default=None, help="keep the sensor outputs here")
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespace, raw capture)")
    if not args.pcap.exists():
        gen = [sys.executable, str(ROOT / "bench" / "generate.py"), "--out", str(args.pcap)]
        if args.packets:
            gen += ["--packets", str(args.packets)]
        print(f"generating {args.pcap}: {' '.join(gen)}", file=sys.stderr)
        subprocess.run(gen, check=True, cwd=ROOT)
    rates = sorted({int(float(r)) for r in args.rates.split(",") if r.strip()})
    import tempfile

    work = args.work or Path(tempfile.mkdtemp(prefix="dsl-live-load-"))
    bench = Bench(args, work)
    steps: list[Step] = []
    started = time.time()
    where = machine()
    try:
        bench.build()
        for rate in rates:
            step = bench.run_step(rate)
            steps.append(step)
            print(progress(step), file=sys.stderr, flush=True)
            if not step.clean:
                break
        clean = [s for s in steps if s.clean]
        dirty = [s for s in steps if not s.clean]
        if clean and dirty:
            low, high = clean[-1].rate, dirty[0].rate
            for _ in range(args.bisect):
                mid = (low + high) // 2
                if mid in (low, high):
                    break
                step = bench.run_step(mid)
                steps.append(step)
                print(progress(step), file=sys.stderr, flush=True)
                low, high = (mid, high) if step.clean else (low, mid)
    finally:
        bench.close()
    clean_rates = [s.rate for s in steps if s.clean]
    best = max(clean_rates) if clean_rates else 0
    print(f"\nLive capture load, {args.pcap.name}, 1 worker, --buffer-mb {args.buffer_mb}, "
          f"{args.seconds:g} s per step; {where}")  # fmt: skip
    print(table(steps))
    workers = args.workers or 1
    print(f"\nhighest rate with zero kernel drops: {best:,} packets/s ({workers} worker(s))")
    costs = sorted(s.cpu_us_per_packet for s in steps if s.clean and s.received)
    if costs:
        median = costs[len(costs) // 2]
        print(
            f"sensor CPU per filtered packet (clean steps, median): {median:.1f} µs, a ceiling "
            f"of about {1e6 / median:,.0f} filtered packets/s on a core of its own"
        )
    print(f"took {time.time() - started:.0f} s; sensor outputs in {work}")
    if args.json:
        args.json.write_text(
            json.dumps({"best_pps": best, "steps": [asdict(s) for s in steps]}, indent=2) + "\n"
        )
    return 0


def progress(step: Step) -> str:
    return (
        f"{step.rate:>8,} pps asked: sent {step.sent:,} at {step.replay_pps:,.0f} pps, "
        f"kernel drops {step.dropped_kernel:,}, drain lag {step.drain_lag:.1f} s, "
        f"sensor CPU {step.sensor_cpu_seconds:.1f} s{'' if step.clean else '  <- drops'}"
    )


if __name__ == "__main__":
    sys.exit(main())
