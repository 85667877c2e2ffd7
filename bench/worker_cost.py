"""CPU cost of `capture` for one fixed replay: the parent's and the whole sensor's, per tree.

Usage (as root, from anywhere, with the project's venv)::

    python bench/worker_cost.py --tree main=/work/main --tree branch=. \\
        --pcap bench/data/imaging.pcap --rate 30000 --limit 300000 --rounds 3

For each round, each ``--workers`` value and each tree (alternating, so a busy machine
weighs on all alike): a fresh ``dicom-sensor capture -i lba --workers N --associations ...
--events ...`` from that tree (its own ``python -m sensor.cli``, PYTHONPATH unset) in a
network namespace of its own (``dswc<hex>``, deleted at the end); ``tcpreplay --pps=RATE
--limit=LIMIT`` of the capture onto the veth's other end; a drain wait; SIGTERM.

Figures, in CPU seconds (user + system), which a busy machine disturbs far less than the
highest clean rate of bench/live_load.py:

- ``parent``: the sensor process itself (/proc/PID/stat just before SIGTERM): with
  ``--workers N`` the parent, which merges and judges the workers' policy inputs;
- ``sensor``: the sensor and every worker it reaped (getrusage of this script's children,
  less tcpreplay's own share, measured around it).

The replay rate should be one every configuration takes with no kernel drop (the table says
``dropped``), so that all do the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(
    ns: str, root: Path, workers: int, args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "sensor.cli", "capture", "-i", "lba",
            "--workers", str(workers), "--associations", str(out / "associations.jsonl"),
            "--events", str(out / "events.jsonl")]  # fmt: skip
    start = children_cpu()
    with (out / "stderr").open("w") as err:
        proc = subprocess.Popen(argv, cwd=root, env=env, stderr=err)
        try:
            time.sleep(3.0)
            before = children_cpu()
            sh("ip", "netns", "exec", ns, "tcpreplay", "--intf1=lbb", f"--pps={args.rate}",
               f"--limit={args.limit}", str(args.pcap))  # fmt: skip
            replay = children_cpu() - before
            time.sleep(args.drain)
            parent = own_cpu(proc.pid)  # `ip netns exec` execs the sensor: the same pid
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    sensor = children_cpu() - start - replay
    log = [json.loads(x) for x in (out / "stderr").read_text().splitlines() if x.startswith("{")]
    stopped = [r for r in log if r.get("event") == "capture.stopped"][-1]
    return {
        "parent_cpu_s": round(parent, 2),
        "sensor_cpu_s": round(sensor, 2),
        "packets": stopped["packets"],
        "dropped": stopped["dropped_kernel"],
        "associations": stopped["associations"],
        "policy_inputs": stopped.get("policy_inputs"),
        "load": Path("/proc/loadavg").read_text().split()[0],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tree", action="append", required=True, metavar="NAME=PATH")
    p.add_argument("--pcap", type=Path, required=True)
    p.add_argument("--rate", type=int, default=30000, help="packets/s (default 30000)")
    p.add_argument("--limit", type=int, default=300000, help="packets per run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", default="2,1", help="comma-separated --workers values")
    p.add_argument("--drain", type=float, default=4.0, help="seconds after the replay")
    p.add_argument("--out", type=Path, default=Path("/tmp/worker_cost"))
    args = p.parse_args()
    args.pcap = args.pcap.resolve()
    trees = dict(t.split("=", 1) for t in args.tree)
    ns = f"dswc{secrets.token_hex(3)}"
    sh("ip", "netns", "add", ns)
    rows = []
    try:
        sh("ip", "-n", ns, "link", "add", "lba", "type", "veth", "peer", "name", "lbb")
        for name in ("lba", "lbb"):
            sh("ip", "-n", ns, "link", "set", name, "mtu", "9000", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        for rnd in range(args.rounds):
            for workers in map(int, args.workers.split(",")):
                for name, path in trees.items():
                    out = args.out / f"{name}-w{workers}-r{rnd}"
                    row = {"tree": name, "workers": workers, "round": rnd}
                    row |= one_run(ns, Path(path).resolve(), workers, args, out)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    print("\n| tree | --workers | parent CPU s (runs) | sensor CPU s (runs) | kernel drops |")
    print("|---|---:|---|---|---:|")
    for workers in map(int, args.workers.split(",")):
        for name in trees:
            mine = [r for r in rows if r["tree"] == name and r["workers"] == workers]
            parent = ", ".join(f"{r['parent_cpu_s']:.2f}" for r in mine)
            sensor = ", ".join(f"{r['sensor_cpu_s']:.2f}" for r in mine)
            dropped = sum(r["dropped"] for r in mine)
            print(f"| {name} | {workers} | {parent} | {sensor} | {dropped:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
