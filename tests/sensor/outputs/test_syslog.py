"""Alerts over RFC 5424 syslog to a collector on loopback, UDP and TCP."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from sensor.cli import main

ROOT = Path(__file__).resolve().parents[3]
SCENARIO = ROOT / "pcaps" / "zones" / "perimeter"
HEADER = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<ts>\S+Z) (?P<host>\S+) dicom-sensor (?P<pid>\d+) (?P<msgid>\S+) "
    r"\[dicom@32473(?P<sd>(?: \w+=\"(?:[^\"\\\]]|\\.)*\")*)\] (?P<body>\{.*\})$",
    re.S,
)


def _config(tmp_path: Path, port: int, protocol: str) -> Path:
    text = (SCENARIO / "config.yaml").read_text()
    # The scenario's config ends with its `alerts:` block: add the collector to it.
    assert text.rstrip().endswith("fold_window: 300")
    text = text.rstrip() + f"\n  syslog:\n    host: 127.0.0.1\n    port: {port}\n"
    text += f"    protocol: {protocol}\n    facility: local3\n"
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def _read(tmp_path: Path, config: Path, *extra: str) -> list[dict[str, object]]:
    events = tmp_path / "events.jsonl"
    rc = main(
        [
            "read",
            str(SCENARIO / "capture.pcap"),
            "--config",
            str(config),
            "--events",
            str(events),
            "-q",
            *(extra or ("--syslog",)),
        ]
    )
    assert rc == 0
    alerts = [json.loads(line) for line in events.read_text().splitlines()]
    return [a for a in alerts if a["event"]["kind"] == "alert"]  # type: ignore[index]


def _check(messages: list[bytes], alerts: list[dict[str, object]]) -> None:
    assert len(messages) == len(alerts) > 0
    for raw, alert in zip(messages, alerts, strict=True):
        m = HEADER.match(raw.decode())
        assert m, raw[:200]
        severity = {"high": 3, "medium": 4, "low": 5}[alert["dicom"]["alert"]["severity"]]  # type: ignore[index]
        assert int(m["pri"]) == 19 * 8 + severity  # local3
        assert m["msgid"] == alert["rule"]["id"]  # type: ignore[index]
        assert f'src="{alert["source"]["ip"]}"' in m["sd"]  # type: ignore[index]
        assert json.loads(m["body"]) == alert


def test_alerts_reach_a_udp_collector(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(2.0)
    alerts = _read(tmp_path, _config(tmp_path, server.getsockname()[1], "udp"))
    messages = []
    for _ in alerts:
        messages.append(server.recv(65535))
    server.close()
    _check(messages, alerts)


def test_alerts_reach_a_tcp_collector_in_octet_counted_frames(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    received = bytearray()

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(3.0)
        with conn:
            while chunk := conn.recv(65536):
                received.extend(chunk)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    alerts = _read(tmp_path, _config(tmp_path, listener.getsockname()[1], "tcp"))
    thread.join(timeout=5)
    listener.close()
    messages, pos = [], 0
    while pos < len(received):
        space = received.index(b" ", pos)
        length = int(received[pos:space])
        messages.append(bytes(received[space + 1 : space + 1 + length]))
        pos = space + 1 + length
    _check(messages, alerts)


def _free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()  # nothing listens there now
    return port


def test_an_unreachable_collector_is_said_once_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = tmp_path / "metrics.prom"
    alerts = _read(tmp_path, _config(tmp_path, _free_port(), "tcp"), "--syslog",
                   "--metrics", str(metrics))  # fmt: skip
    assert len(alerts) > 1
    said = [line for line in capsys.readouterr().err.splitlines() if "syslog" in line]
    assert len(said) == 1, said
    assert said[0].startswith("dicom-sensor: syslog tcp://127.0.0.1:")
    failed = re.search(r'dicom_sensor_output_failures_total\{output="syslog"\} (\S+)',
                       metrics.read_text())  # fmt: skip
    assert failed and float(failed[1]) == len(alerts)


def test_an_unknown_collector_host_is_said_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, 514, "udp")
    config.write_text(config.read_text().replace("127.0.0.1", "no-such-host.invalid"))
    assert _read(tmp_path, config)
    said = [line for line in capsys.readouterr().err.splitlines() if "syslog" in line]
    assert len(said) == 1 and "no-such-host.invalid" in said[0], said


def test_a_silent_collector_never_blocks_the_writer() -> None:
    """A collector whose connect hangs (1 s each): write() returns at once, drops counted."""
    from sensor.outputs.syslog import SyslogSender
    from sensor.policy.config import SyslogConfig

    class Hanging(SyslogSender):
        def _connect(self) -> None:
            time.sleep(1.0)  # what a SYN into the void costs with the 1 s timeout
            return None

    sender = Hanging(SyslogConfig("192.0.2.1", 514, "tcp", 16), queue_size=4)
    event = {"rule": {"id": "r"}, "dicom": {"alert": {"severity": "high"}}}
    started = time.monotonic()
    for _ in range(100):
        sender.write(event)
    assert time.monotonic() - started < 0.5
    sender.close(timeout=0.2)
    assert sender.sent == 0
    assert sender.counters["syslog"] == sender.failed == 100


def test_read_sends_nothing_without_syslog(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.5)
    alerts = _read(tmp_path, _config(tmp_path, server.getsockname()[1], "udp"), "--no-progress")
    assert alerts
    with pytest.raises(TimeoutError):
        server.recv(65535)
    server.close()


def test_syslog_without_a_collector_in_the_config_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["read", str(SCENARIO / "capture.pcap"), "--syslog", "-q"])
    assert rc == 2
    assert capsys.readouterr().err.startswith("dicom-sensor: --syslog: ")


@pytest.mark.parametrize("value", ["udp", "tcp"])
def test_check_config_accepts_syslog(tmp_path: Path, value: str) -> None:
    assert main(["check-config", str(_config(tmp_path, 514, value))]) == 0
