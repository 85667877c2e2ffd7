"""Pivot fields on every record and event: Community ID, zones, observer, ECS version, ids."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from sensor.cli import main
from sensor.outputs.community import community_id
from sensor.outputs.eve import to_eve
from sensor.outputs.pivots import ECS_VERSION, Pivots, event_id
from sensor.outputs.zeek import zeek_row
from sensor.policy.config import ConfigError, default_config, load_config

ROOT = Path(__file__).resolve().parents[3]
CAPTURES = [
    ROOT / "pcaps/zones/perimeter/capture.pcap",  # alerts
    ROOT / "pcaps/killed-mid-transfer/capture.pcap",  # anomalies
    ROOT / "pcaps/hl7-mllp/mllp.pcap",  # HL7 records and alerts
    ROOT / "pcaps/pynetdicom-ipv6/capture.pcap",
]


def _read(tmp_path: Path, *extra: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    assoc, events = tmp_path / "a.jsonl", tmp_path / "e.jsonl"
    args = ["read", *map(str, CAPTURES), "--associations", str(assoc), "--events", str(events)]
    assert main([*args, "-q", *extra]) == 0
    load = lambda p: [json.loads(line) for line in p.read_text().splitlines()]  # noqa: E731
    return load(assoc), load(events)


def test_every_record_and_event_has_the_pivots(tmp_path: Path) -> None:
    records, events = _read(tmp_path)
    kinds = {r["event"]["dataset"] for r in records} | {e["event"]["dataset"] for e in events}
    kinds |= {e["event"]["kind"] for e in events}
    assert {"dicom.association", "hl7.connection", "dicom.anomaly", "alert"} <= kinds
    host = socket.gethostname()
    for obj in records + events:
        src, dst = obj["source"], obj["destination"]
        assert obj["network"]["community_id"] == community_id(
            src["ip"], src["port"], dst["ip"], dst["port"]
        )
        assert src["zone"] and dst["zone"]
        assert obj["observer"]["name"] == host
        assert obj["observer"]["hostname"] == host
        assert "ingress" not in obj["observer"]  # offline: no interface
        assert obj["ecs"]["version"] == ECS_VERSION
        assert obj["related"]["ip"] == list(dict.fromkeys([src["ip"], dst["ip"]]))
        assert obj["event"]["id"] == event_id(obj)
    ids = [o["event"]["id"] for o in records + events]
    assert len(set(ids)) == len(ids)


def test_event_ids_are_deterministic(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    first, second = _read(tmp_path / "1"), _read(tmp_path / "2")
    assert [o["event"]["id"] for o in first[0] + first[1]] == [
        o["event"]["id"] for o in second[0] + second[1]
    ]


def test_event_id_follows_content() -> None:
    obj = {"event": {"kind": "event"}, "source": {"ip": "10.0.0.1"}}
    same = {"source": {"ip": "10.0.0.1"}, "event": {"kind": "event", "id": "stale"}}
    other = {"event": {"kind": "event"}, "source": {"ip": "10.0.0.2"}}
    assert event_id(obj) == event_id(same) != event_id(other)


def test_observer_name_and_seed_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("observer:\n  name: tap-ct-3\ncommunity_id:\n  seed: 7\n")
    records, events = _read(tmp_path, "--config", str(config))
    for obj in records + events:
        src, dst = obj["source"], obj["destination"]
        assert obj["observer"]["name"] == "tap-ct-3"
        assert obj["observer"]["hostname"] == socket.gethostname()
        assert obj["network"]["community_id"] == community_id(
            src["ip"], src["port"], dst["ip"], dst["port"], 7
        )


def test_bad_seed_is_a_config_error(tmp_path: Path) -> None:
    for bad in ("70000", "1.5", "-1", "abc"):
        config = tmp_path / "c.yaml"
        config.write_text(f"community_id:\n  seed: {bad}\n")
        with pytest.raises(ConfigError, match=r"community_id\.seed"):
            load_config(config)


def test_live_interface_is_named() -> None:
    pivots = Pivots.from_config(default_config(), interface="ens1f1")
    obj = pivots.enrich({"event": {}, "source": {"ip": "10.0.0.1", "port": 5000},
                         "destination": {"ip": "10.0.0.2", "port": 104}})  # fmt: skip
    assert obj["observer"]["ingress"] == {"interface": {"name": "ens1f1"}}
    assert obj["source"]["zone"] == obj["destination"]["zone"] == "internal"


def test_eve_and_zeek_carry_the_community_id(tmp_path: Path) -> None:
    records, events = _read(tmp_path)
    for event in events:
        eve = to_eve(event)
        if eve is None:
            continue
        assert eve["community_id"] == event["network"]["community_id"]
        assert eve["host"] == event["observer"]["name"]
    for record in records:
        if record["event"]["dataset"] == "dicom.association":
            assert zeek_row(record)["community_id"] == record["network"]["community_id"]
