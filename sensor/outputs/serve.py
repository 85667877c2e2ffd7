"""The /metrics endpoint: prometheus-client's HTTP server on a private registry."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from prometheus_client import start_http_server

DEFAULT_LISTEN = "127.0.0.1:9464"


class ListenError(Exception):
    """A listen address that cannot be used; the message is one line."""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` into (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ListenError(f"--metrics-listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    host = host.strip("[]") or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ListenError(f"--metrics-listen {text!r}: {host!r} is not an IP address") from None
    return host, int(port_text)


def serve_metrics(
    pipeline: Any,
    listen: str,
    certfile: str | None = None,
    keyfile: str | None = None,
    drops: Mapping[str, Any] | None = None,
) -> object:
    """Start serving the pipeline's metrics in a daemon thread; return the server."""
    from .metrics import registry_for

    host, port = parse_listen(listen)
    try:
        server, _ = start_http_server(
            port, host, registry_for(pipeline, drops), certfile=certfile, keyfile=keyfile
        )
    except OSError as exc:
        raise ListenError(f"--metrics-listen {listen}: {exc.strerror or exc}") from None
    return server
