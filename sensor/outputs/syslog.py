"""RFC 5424 syslog for alerts, over UDP or TCP (octet-counted frames, RFC 6587), for SIEMs."""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

from ..policy.config import SyslogConfig

# Our severities onto syslog's: critical 2, error 3, warning 4, notice 5, informational 6.
_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
_SD_ID = "dicom@32473"  # 32473: the enterprise number RFC 5612 sets aside for examples
_APP = "dicom-sensor"
_RECONNECT_SECONDS = 5.0


def _sd_value(text: object) -> str:
    """A structured-data parameter value with ``"``, ``\\`` and ``]`` escaped (RFC 5424 6.3.3)."""
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _token(text: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, or the nil value."""
    cleaned = "".join(ch for ch in text if 33 <= ord(ch) <= 126)[:limit]
    return cleaned or "-"


def format_alert(event: dict[str, Any], facility: int, hostname: str, procid: int) -> bytes:
    """One RFC 5424 message for an alert event: header, structured data, the event as JSON."""
    severity = _SEVERITY.get(event.get("dicom", {}).get("alert", {}).get("severity", ""), 5)
    ts = datetime.now(tz=UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    rule = event.get("rule", {})
    params = {
        "rule": rule.get("id", ""),
        "sid": event.get("dicom", {}).get("alert", {}).get("signature_id", ""),
        "src": event.get("source", {}).get("ip", ""),
        "srcZone": event.get("source", {}).get("zone", ""),
        "dst": event.get("destination", {}).get("ip", ""),
        "dstPort": event.get("destination", {}).get("port", ""),
        "dstZone": event.get("destination", {}).get("zone", ""),
        "count": event.get("dicom", {}).get("alert", {}).get("count", 1),
    }
    sd = "[" + _SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items()) + "]"
    header = (
        f"<{facility * 8 + severity}>1 {ts} {_token(hostname, 255)} {_APP} {procid} "
        f"{_token(str(rule.get('id', '-')), 32)} {sd} "
    )
    body = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return header.encode("ascii") + body.encode("utf-8")


class SyslogSender:
    """Sends alerts to one collector; never blocks the sensor for long, never raises."""

    def __init__(self, config: SyslogConfig) -> None:
        self.config = config
        self.sent = 0
        self.failed = 0
        self._sock: socket.socket | None = None
        self._retry_at = 0.0
        self._hostname = socket.gethostname()
        self._pid = os.getpid()

    def _connect(self) -> socket.socket | None:
        if self._sock is not None:
            return self._sock
        if time.monotonic() < self._retry_at:
            return None
        kind = socket.SOCK_DGRAM if self.config.protocol == "udp" else socket.SOCK_STREAM
        try:
            infos = socket.getaddrinfo(self.config.host, self.config.port, type=kind)
            family, _, _, _, address = infos[0]
            sock = socket.socket(family, kind)
            sock.settimeout(1.0)
            sock.connect(address)
        except OSError:
            self._retry_at = time.monotonic() + _RECONNECT_SECONDS
            return None
        self._sock = sock
        return sock

    def write(self, event: dict[str, Any]) -> None:
        """Send one alert (the sink interface the pipeline calls)."""
        message = format_alert(event, self.config.facility, self._hostname, self._pid)
        sock = self._connect()
        if sock is None:
            self.failed += 1
            return
        try:
            if self.config.protocol == "udp":
                sock.send(message)
            else:
                sock.sendall(f"{len(message)} ".encode() + message)
            self.sent += 1
        except OSError:
            self.failed += 1
            self.close()
            self._retry_at = time.monotonic() + _RECONNECT_SECONDS

    def close(self) -> None:
        """Close the connection (a later write reconnects)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
