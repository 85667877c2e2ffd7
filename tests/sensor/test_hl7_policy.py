"""HL7 sessions through the sensor: generic records, counts, and the two HL7 rules."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import dpkt
import pytest

from sensor.cli import main

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "pcaps" / "hl7-mllp" / "mllp.pcap"
CANARIES = ("CANARY-MRN-551", "CANARYPID", "CANARY-OBX-RESULT")


def _rewrite(src: Path, dst: Path, client: str, server: str) -> None:
    """The capture with its client and server moved to the given addresses (checksums redone)."""
    with open(src, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        linktype = reader.datalink()
        packets = list(reader)
    server_port = None
    with open(dst, "wb") as out:
        writer = dpkt.pcap.Writer(out, linktype=linktype)
        for ts, buf in packets:
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            tcp = ip.data
            if server_port is None:
                server_port = tcp.dport  # the first packet is the client's SYN
            from_client = tcp.dport == server_port
            ip.src = socket.inet_aton(client if from_client else server)
            ip.dst = socket.inet_aton(server if from_client else client)
            ip.sum = 0
            tcp.sum = 0
            writer.writepkt(bytes(eth), ts=ts)


def _read(tmp_path: Path, capture: Path, config: str) -> tuple[list[dict], list[dict], str]:
    cfg = tmp_path / "zones.yaml"
    cfg.write_text(config)
    records, events, metrics = tmp_path / "r.jsonl", tmp_path / "e.jsonl", tmp_path / "m.prom"
    rc = main(
        [
            "read",
            str(capture),
            "--config",
            str(cfg),
            "--associations",
            str(records),
            "--events",
            str(events),
            "--metrics",
            str(metrics),
            "-q",
        ]
    )
    assert rc == 0
    load = lambda p: [json.loads(line) for line in p.read_text().splitlines()]  # noqa: E731
    return load(records), load(events), metrics.read_text()


ZONES = """
zones:
  wards:   {cidrs: [10.40.0.0/16], trust: internal, clinical: true}
  office:  {cidrs: [10.50.0.0/16], trust: internal}
  his:     {cidrs: [10.60.0.0/16], trust: internal, clinical: true}
"""


def test_hl7_between_clinical_zones_is_quiet_and_counted(tmp_path: Path) -> None:
    capture = tmp_path / "c.pcap"
    _rewrite(CAPTURE, capture, "10.40.0.5", "10.60.0.9")
    records, events, metrics = _read(tmp_path, capture, ZONES)
    [record] = records
    assert record["event"]["dataset"] == "hl7.connection"
    assert record["source"]["ip"] == "10.40.0.5"
    assert record["hl7"]["messages"]["ADT^A01"] == 1
    assert record["hl7"]["acks"] == {"AA": 2, "AE": 1}
    assert [e for e in events if e["event"]["kind"] == "alert"] == []
    labels = 'destination_zone="his",protocol="hl7",source_zone="wards"'
    assert f"dicom_sensor_plugin_connections_total{{{labels}}} 1.0" in metrics
    assert 'dicom_sensor_plugin_events_total{kind="message",protocol="hl7"} 6.0' in metrics


@pytest.mark.parametrize(
    ("client", "server", "rule", "client_zone", "server_zone"),
    [
        ("203.0.113.50", "10.60.0.9", "hl7-perimeter", "external", "his"),
        ("10.60.0.9", "198.51.100.4", "hl7-perimeter", "his", "external"),
        ("10.50.0.7", "10.50.0.8", "hl7-non-clinical", "office", "office"),
    ],
)
def test_hl7_rules_fire(
    tmp_path: Path, client: str, server: str, rule: str, client_zone: str, server_zone: str
) -> None:
    capture = tmp_path / "c.pcap"
    _rewrite(CAPTURE, capture, client, server)
    records, events, _ = _read(tmp_path, capture, ZONES)
    alerts = [e for e in events if e["event"]["kind"] == "alert"]
    assert [(a["rule"]["id"], a["source"]["ip"], a["destination"]["ip"]) for a in alerts] == [
        (rule, client, server)
    ]
    [alert] = alerts
    assert alert["network"]["protocol"] == "hl7"
    assert alert["hl7"] == {"client_zone": client_zone, "server_zone": server_zone}
    text = json.dumps(records) + json.dumps(events)
    for canary in CANARIES:
        assert canary not in text


def test_no_clinical_zone_declared_keeps_the_non_clinical_rule_off(tmp_path: Path) -> None:
    capture = tmp_path / "c.pcap"
    _rewrite(CAPTURE, capture, "10.50.0.7", "10.50.0.8")
    _, events, _ = _read(tmp_path, capture, "zones:\n  office: {cidrs: [10.50.0.0/16]}\n")
    assert [e for e in events if e["event"]["kind"] == "alert"] == []
