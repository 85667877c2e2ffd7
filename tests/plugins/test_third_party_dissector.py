"""A separately installed package adds a protocol through the entry point, the sensor unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(__file__).resolve().parent / "toy_dissector"


def _conversation(path: Path) -> None:
    """A TCP conversation speaking TOY on a port nobody registered, plus noise."""
    client, server = b"\x0a\x00\x00\x05", b"\x0a\x00\x00\x09"
    frames: list[bytes] = []
    seq = {0: 1000, 1: 5000}

    def seg(d: int, flags: int, data: bytes = b"") -> None:
        src, dst = (client, server) if d == 0 else (server, client)
        sport, dport = (40001, 7777) if d == 0 else (7777, 40001)
        tcp = dpkt.tcp.TCP(
            sport=sport, dport=dport, seq=seq[d], ack=seq[1 - d], flags=flags, data=data
        )
        ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, data=tcp)
        ip.len = len(ip)
        eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip)
        frames.append(bytes(eth))
        seq[d] += len(data) + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)

    seg(0, dpkt.tcp.TH_SYN)
    seg(1, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)
    seg(0, dpkt.tcp.TH_ACK, b"TOY1\nhello\n")
    seg(1, dpkt.tcp.TH_ACK, b"hello\n")
    seg(0, dpkt.tcp.TH_ACK, b"bye\n")
    seg(0, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)
    seg(1, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        for i, frame in enumerate(frames):
            writer.writepkt(frame, ts=1_700_000_000 + i * 0.01)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy package installed with pip into a folder of its own (no change to any venv)."""
    target = tmp_path_factory.mktemp("site")
    # Build from a copy: setuptools leaves a build/ folder next to the sources it builds.
    source = tmp_path_factory.mktemp("src") / "toy_dissector"
    shutil.copytree(PACKAGE, source)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def _sensor(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    return subprocess.run(
        [sys.executable, "-m", "sensor.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_sensor_lists_the_installed_dissector(installed: Path) -> None:
    result = _sensor(installed, "dissectors")
    assert result.returncode == 0, result.stderr
    names = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert names[0] == "dicom"
    assert "toy" in names


def test_the_sensor_uses_it_on_any_port(installed: Path, tmp_path: Path) -> None:
    capture = tmp_path / "toy.pcap"
    _conversation(capture)
    records = tmp_path / "records.jsonl"
    result = _sensor(installed, "read", str(capture), "--associations", str(records), "-q")
    assert result.returncode == 0, result.stderr
    [record] = [json.loads(line) for line in records.read_text().splitlines()]
    assert record["event"]["dataset"] == "toy.connection"
    assert record["network"]["protocol"] == "toy"
    assert record["source"] == {"ip": "10.0.0.5", "port": 40001, "zone": "internal"}
    assert record["destination"] == {"ip": "10.0.0.9", "port": 7777, "zone": "internal"}
    assert record["toy"] == {"lines": {"client": 3, "server": 1}}
    assert record["connection"]["end"] == "connection-closed"


def test_without_the_package_the_protocol_is_ignored(tmp_path: Path) -> None:
    capture = tmp_path / "toy.pcap"
    _conversation(capture)
    records = tmp_path / "records.jsonl"
    result = _sensor(tmp_path, "read", str(capture), "--associations", str(records), "-q")
    assert result.returncode == 0, result.stderr
    assert records.read_text() == ""
