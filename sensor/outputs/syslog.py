"""RFC 5424 syslog for alerts, over UDP or TCP (octet-counted frames, RFC 6587), for SIEMs."""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..policy.config import SyslogConfig

# Our severities onto syslog's: critical 2, error 3, warning 4, notice 5, informational 6.
_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
_SD_ID = "dicom@32473"  # 32473: the enterprise number RFC 5612 sets aside for examples
_APP = "dicom-sensor"
_RECONNECT_SECONDS = 5.0
QUEUE_SIZE = 4096  # alerts waiting for the collector; beyond it they are dropped, counted
CLOSE_SECONDS = 3.0  # at exit, how long queued alerts may still take


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
    """Sends alerts to one collector from a background thread; never blocks the sensor.

    The packet loop only formats a message and puts it on a bounded queue. The thread
    connects (1 s timeout, a retry at most every 5 s) and sends. A message that cannot be
    delivered (no connection, a send error, the queue full) is dropped and counted in
    ``counters["syslog"]`` (dicom_sensor_output_failures_total); the first failure of an
    outage is said once through ``report``.
    """

    def __init__(
        self,
        config: SyslogConfig,
        counters: Counter[str] | None = None,
        report: Callable[[str], None] | None = None,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.config = config
        self.sent = 0
        self.failed = 0
        self.counters = counters if counters is not None else Counter({"syslog": 0})
        self.report = report
        self._sock: socket.socket | None = None
        self._retry_at = 0.0
        self._failing = False
        self._hostname = socket.gethostname()
        self._pid = os.getpid()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._inflight = False
        self._abandoned = False

    def _fail(self, why: str) -> None:
        if self._abandoned:
            return  # close() has counted what was still in flight
        self.failed += 1
        self.counters["syslog"] += 1
        if not self._failing:
            self._failing = True
            if self.report is not None:
                where = f"{self.config.protocol}://{self.config.host}:{self.config.port}"
                self.report(f"syslog {where}: {why}; alerts to it are dropped and counted")

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
        except OSError as exc:
            self._retry_at = time.monotonic() + _RECONNECT_SECONDS
            self._why = exc.strerror or str(exc)
            return None
        self._sock = sock
        return sock

    _why = "cannot connect"

    def _send(self, message: bytes) -> None:
        sock = self._connect()
        if sock is None:
            self._fail(self._why)
            return
        try:
            if self.config.protocol == "udp":
                sock.send(message)
            else:
                sock.sendall(f"{len(message)} ".encode() + message)
        except OSError as exc:
            self._drop_socket()
            self._retry_at = time.monotonic() + _RECONNECT_SECONDS
            self._fail(exc.strerror or str(exc))
            return
        self.sent += 1
        self._failing = False

    def _run(self) -> None:
        while True:
            message = self._queue.get()
            if message is None or self._abandoned:
                break
            self._inflight = True
            self._send(message)
            self._inflight = False
        self._drop_socket()

    def write(self, event: dict[str, Any]) -> None:
        """Queue one alert (the sink interface the pipeline calls); never blocks."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="syslog", daemon=True)
            self._thread.start()
        message = format_alert(event, self.config.facility, self._hostname, self._pid)
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self._fail("the send queue is full")

    def _drop_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """Send what is queued (waiting at most ``timeout`` seconds), then stop the thread."""
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
                break
            except queue.Full:
                break
        thread.join(max(0.0, deadline - time.monotonic()))
        # Whatever is left could not be sent in time: counted as failed.
        abandon = thread.is_alive()
        if abandon and self._inflight:
            self._fail("the sensor stopped before it could send")
        while True:
            try:
                if self._queue.get_nowait() is not None:
                    self._fail("the sensor stopped before it could send")
            except queue.Empty:
                break
        self._abandoned = abandon
