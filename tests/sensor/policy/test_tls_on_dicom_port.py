"""tls-on-dicom-port: a TLS ClientHello where plain DICOM is expected is reported as info."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor.capture.decode import Segment
from sensor.pipeline import Pipeline
from sensor.policy.config import default_config, load_config
from sensor.policy.engine import PolicyEngine

# A TLS 1.2 record header and the start of a ClientHello (handshake type 1).
HELLO = bytes.fromhex("160301020001") + bytes(60)


def hello(dport: int, dst: str = "10.1.0.5") -> Segment:
    return Segment(1.0, "10.2.0.7", dst, 51000, dport, 1, 1, 0x18, HELLO)


@pytest.mark.parametrize("port", [104, 11112, 4242])
def test_fires_on_plain_dicom_ports(port: int) -> None:
    [finding] = PolicyEngine(default_config()).on_tls_hello(hello(port))
    assert finding.rule.id == "tls-on-dicom-port"
    assert finding.rule.severity.value == "info"
    assert f":{port}" in finding.message


@pytest.mark.parametrize("port", [2762, 443, 8443, 50000])
def test_quiet_on_the_tls_port_and_elsewhere(port: int) -> None:
    assert PolicyEngine(default_config()).on_tls_hello(hello(port)) == []


def test_fires_on_a_port_where_a_dicom_service_was_seen() -> None:
    engine = PolicyEngine(default_config())
    engine.inventory.acceptor("10.1.0.5", "internal", 0.0, 40123, "PACS", (None, None, None))
    assert engine.on_tls_hello(hello(40123))
    assert engine.on_tls_hello(hello(40123, dst="10.1.0.6")) == []


@pytest.mark.parametrize(
    "rule", ["{enabled: false}", "{allow: [{destination_zone: internal}]}"], ids=["off", "allowed"]
)
def test_disabled_or_allowed(tmp_path: Path, rule: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "zones:\n  internal: {cidrs: [10.0.0.0/8], trust: internal}\n"
        f"rules:\n  tls-on-dicom-port: {rule}\n"
    )
    assert PolicyEngine(load_config(path)).on_tls_hello(hello(104)) == []


def test_only_client_hellos_count() -> None:
    pipeline = Pipeline([])
    server_hello = Segment(
        1.0,
        "10.1.0.5",
        "10.2.0.7",
        104,
        51000,
        1,
        1,
        0x18,
        bytes.fromhex("160303004a02") + bytes(70),
    )
    assert pipeline.tls_hello(server_hello) is False  # a handshake, but not a ClientHello
    assert sum(pipeline.counters.alerts.values()) == 0
    assert pipeline.tls_hello(hello(104)) is True
    assert pipeline.counters.alerts[("tls-on-dicom-port", "info")] == 1
