"""``--events-format eve``: alerts and anomalies as Suricata EVE JSON."""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sensor.cli import main
from sensor.outputs.eve import SEVERITY, EveLines, eve_alert, suricata_timestamp, to_eve
from sensor.outputs.identity import flow_id
from sensor.policy.catalogue import RULES, RULES_BY_ID, Severity

from . import suricata
from .helpers import PCAPS, ROOT, SCENARIOS, json_lines, read, scenario

DOC = ROOT / "docs" / "fields-eve.md"


def _read_both(capture: Path, out: Path, config: Path | None = None) -> dict[str, Any]:
    """One run with ECS events and association records, one with EVE events."""
    out.mkdir(parents=True, exist_ok=True)
    read(
        capture,
        "--events",
        str(out / "ecs.jsonl"),
        "--associations",
        str(out / "assoc.jsonl"),
        config=config,
    )
    read(capture, "--events", str(out / "eve.json"), "--events-format", "eve", config=config)
    return {
        "ecs": json_lines(out / "ecs.jsonl"),
        "eve": json_lines(out / "eve.json"),
        "records": json_lines(out / "assoc.jsonl"),
    }


def _assert_suricata_shaped(records: list[dict[str, Any]]) -> None:
    for rec in records:
        found = suricata.problems(rec)
        assert not found, (found, rec)


@pytest.mark.parametrize("name", SCENARIOS)
def test_zone_scenario_alerts_as_eve(name: str, tmp_path: Path) -> None:
    capture, config = scenario(name)
    run = _read_both(capture, tmp_path, config)
    ecs_alerts = [e for e in run["ecs"] if e["event"]["kind"] == "alert"]
    eve_alerts = [e for e in run["eve"] if e["event_type"] == "alert"]
    _assert_suricata_shaped(run["eve"])
    assert len(eve_alerts) == len(ecs_alerts)
    for ecs, eve in zip(ecs_alerts, eve_alerts, strict=True):
        spec = RULES_BY_ID[ecs["rule"]["id"]]
        assert eve["alert"]["signature_id"] == spec.sid
        assert eve["alert"]["signature"] == spec.name
        assert eve["alert"]["category"] == spec.category
        assert eve["alert"]["severity"] == SEVERITY[ecs["dicom"]["alert"]["severity"]]
        assert (eve["alert"]["action"], eve["alert"]["gid"], eve["alert"]["rev"]) == (
            "allowed",
            1,
            1,
        )
        assert (eve["src_ip"], eve["src_port"]) == (ecs["source"]["ip"], ecs["source"]["port"])
        assert (eve["dest_ip"], eve["dest_port"]) == (
            ecs["destination"]["ip"],
            ecs["destination"]["port"],
        )
        assert (eve["proto"], eve["app_proto"]) == ("TCP", "dicom")
        assert eve["timestamp"] == suricata_timestamp(ecs["@timestamp"])
        dicom = eve["dicom"]
        assert dicom["rule_id"] == spec.id
        assert dicom["count"] == ecs["dicom"]["alert"]["count"]
        assert dicom["src_zone"] == ecs["source"]["zone"]
        assert dicom["dest_zone"] == ecs["destination"]["zone"]
        assert dicom.get("calling_ae_title") == ecs["dicom"]["calling_ae_title"]
        assert dicom.get("called_ae_title") == ecs["dicom"]["called_ae_title"]
        assert dicom["association_start"] == suricata_timestamp(
            ecs["dicom"]["association"]["start"]
        )
    # The scenario's own expectations, read off the EVE records alone.
    expected = json.loads((ZONES_DIR / name / "expected_alerts.json").read_text())
    want = Counter(
        (a["rule_id"], a["source_ip"], a["destination_ip"], a["action"], a["count"])
        for a in expected
    )
    got = Counter(
        (
            e["dicom"]["rule_id"],
            e["src_ip"],
            e["dest_ip"],
            e["dicom"]["action"],
            e["dicom"]["count"],
        )
        for e in eve_alerts
    )
    assert got == want


ZONES_DIR = PCAPS / "zones"


@pytest.mark.parametrize("name", SCENARIOS)
def test_flow_id_names_an_association(name: str, tmp_path: Path) -> None:
    """Every alert's flow_id is that of an association record of the same read."""
    capture, config = scenario(name)
    run = _read_both(capture, tmp_path, config)
    ids = {
        flow_id(
            r["source"]["ip"],
            r["source"]["port"],
            r["destination"]["ip"],
            r["destination"]["port"],
            r["event"]["start"],
        )
        for r in run["records"]
    }
    assert len(run["eve"]) == len(run["ecs"])  # normal-workflow has none
    for eve in run["eve"]:
        assert eve["flow_id"] in ids, eve


@pytest.mark.parametrize(
    ("case", "anomaly"),
    [
        ("derived-gap", {"type": "stream", "event": "stream.reassembly_seq_gap"}),
        (
            "killed-mid-transfer",
            {"type": "applayer", "event": "TRUNCATED", "layer": "proto_parser"},
        ),
    ],
)
def test_anomalies_as_eve(case: str, anomaly: dict[str, str], tmp_path: Path) -> None:
    capture = next((PCAPS / case).glob("capture.pcap*"))
    run = _read_both(capture, tmp_path)
    ecs = [e for e in run["ecs"] if e["event"]["dataset"] == "dicom.anomaly"]
    eve = [e for e in run["eve"] if e["event_type"] == "anomaly"]
    assert ecs
    assert len(eve) == len(ecs)
    _assert_suricata_shaped(run["eve"])
    for one, theirs in zip(ecs, eve, strict=True):
        assert theirs["anomaly"] == anomaly
        assert theirs["dicom"]["reason"] == one["dicom"]["anomaly"]["reason"]
        assert theirs["dicom"]["sent_by"] == one["dicom"]["anomaly"]["sent_by"]
        assert theirs["src_ip"] == one["source"]["ip"]
        assert theirs["timestamp"] == suricata_timestamp(one["@timestamp"])


def test_every_reason_maps_to_a_suricata_event_name() -> None:
    from dissectors.dicom.errors import Reason

    base = {
        "@timestamp": "2026-01-01T00:00:00.000001Z",
        "event": {"kind": "event", "dataset": "dicom.anomaly"},
        "source": {"ip": "10.0.0.1", "port": 40000},
        "destination": {"ip": "10.0.0.2", "port": 104},
        "network": {"transport": "tcp", "protocol": "dicom", "vlan": {"id": 20}},
        "dicom": {"association": {"start": "2026-01-01T00:00:00Z"}},
    }
    for reason in Reason:
        event = copy.deepcopy(base)
        event["dicom"]["anomaly"] = {"reason": reason.value, "detail": "x", "sent_by": "acceptor"}
        eve = to_eve(event)
        assert eve is not None
        assert not suricata.problems(eve), (reason, eve)
        assert eve["vlan"] == [20]
        name = eve["anomaly"]["event"]
        assert re.fullmatch(r"[A-Z_]+|stream\.[a-z_]+", name), name


def test_severity_follows_suricata_scale() -> None:
    assert {s.value: SEVERITY[s.value] for s in Severity} == {
        "critical": 1,
        "high": 1,
        "medium": 2,
        "low": 3,
        "info": 3,
    }


# Published signature ids: never renumbered, never reused (docs/fields-eve.md).
DICOM_SIDS = {
    "perimeter-inbound": 9400001,
    "perimeter-inbound-probe": 9400002,
    "perimeter-outbound": 9400003,
    "non-radiology-association": 9400004,
    "radiology-boundary": 9400005,
    "scanner-probe": 9400006,
    "ae-brute-force": 9400007,
    "association-sweep": 9400008,
    "cleartext-credentials": 9400009,
    "move-unknown-destination": 9400010,
    "query-retrieve-untrusted": 9400011,
    "bulk-outbound": 9400012,
    "new-node": 9400013,
    "new-ae-title": 9400014,
    "new-port": 9400015,
    "dicom-on-tls-port": 9400016,
    "stream-evasion": 9400020,
}


def test_signature_ids_are_stable_and_unique() -> None:
    assert {rid: RULES_BY_ID[rid].sid for rid in DICOM_SIDS} == DICOM_SIDS
    sids = [r.sid for r in RULES]
    assert len(set(sids)) == len(sids)
    assert all(9400001 <= sid <= 9499999 for sid in sids)
    assert len({r.id for r in RULES}) == len(RULES)


def test_signature_table_is_documented() -> None:
    """docs/fields-eve.md lists every rule with its sid, severity and category."""
    rows = re.findall(
        r"^\|\s*(94\d{5})\s*\|\s*`([a-z0-9-]+)`\s*\|\s*([^|]+?)\s*\|\s*(\w+)\s*\|\s*(\d)\s*\|"
        r"\s*([a-z-]+)\s*\|",
        DOC.read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    table = [
        (int(sid), rid, name, sev, int(eve_sev), cat) for sid, rid, name, sev, eve_sev, cat in rows
    ]
    assert sorted(table) == sorted(
        (r.sid, r.id, r.name, r.severity.value, SEVERITY[r.severity.value], r.category)
        for r in RULES
    )


def test_timestamp_in_suricata_format() -> None:
    assert suricata_timestamp("2026-11-24T23:22:33.326217Z") == "2026-11-24T23:22:33.326217+0000"
    assert suricata_timestamp("2026-11-24T23:22:33.326217+01:00") == (
        "2026-11-24T23:22:33.326217+0100"
    )
    assert suricata.TIMESTAMP.match(suricata_timestamp("2026-11-24T23:22:33.000000Z"))


def test_flow_id_is_stable_symmetric_and_json_safe() -> None:
    a = flow_id("10.0.0.1", 40000, "10.0.0.2", 104, "2026-01-01T00:00:00.000000Z")
    assert a == flow_id("10.0.0.2", 104, "10.0.0.1", 40000, "2026-01-01T00:00:00.000000Z")
    assert a != flow_id("10.0.0.1", 40001, "10.0.0.2", 104, "2026-01-01T00:00:00.000000Z")
    assert a != flow_id("10.0.0.1", 40000, "10.0.0.2", 104, "2026-01-01T00:00:01.000000Z")
    assert 0 < a < 2**51


def test_no_passcode_in_eve(tmp_path: Path) -> None:
    capture = PCAPS / "pynetdicom-user-identity" / "capture.pcap"
    out = tmp_path / "eve.json"
    read(capture, "--events", str(out), "--events-format", "eve")
    text = out.read_text(encoding="utf-8")
    assert "CANARY-PASSCODE-7f3a" not in text
    sids = [e["alert"]["signature_id"] for e in json_lines(out) if e["event_type"] == "alert"]
    assert RULES_BY_ID["cleartext-credentials"].sid in sids


def test_default_events_format_is_ecs(tmp_path: Path) -> None:
    capture, config = scenario("perimeter")
    out = tmp_path / "events.jsonl"
    read(capture, "--events", str(out), config=config)
    events = json_lines(out)
    assert events
    assert all("event" in e and "event_type" not in e for e in events)


def test_unknown_events_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["read", "x.pcap", "--events-format", "cef"])
    assert exc.value.code == 2
    assert "--events-format" in capsys.readouterr().err


def test_eve_lines_leave_out_what_has_no_eve_form(tmp_path: Path) -> None:
    sink = EveLines(str(tmp_path / "eve.json"))
    sink.write({"event": {"kind": "event", "dataset": "dicom.association"}})
    sink.close()
    assert sink.count == 0
    assert (tmp_path / "eve.json").read_text() == ""


def test_alert_dicom_object_keeps_finding_fields_but_not_ours_twice() -> None:
    capture_alert = {
        "@timestamp": "2026-01-01T00:00:05.000000Z",
        "event": {"kind": "alert", "action": "folded", "start": "2026-01-01T00:00:00.000000Z"},
        "rule": {"id": "scanner-probe", "name": "n", "category": "reconnaissance"},
        "source": {"ip": "10.0.0.1", "port": 40000, "zone": "a"},
        "destination": {"ip": "10.0.0.2", "port": 104, "zone": "b"},
        "network": {"transport": "tcp", "protocol": "dicom"},
        "dicom": {
            "calling_ae_title": None,
            "called_ae_title": "ANY-SCP",
            "association": {"start": "2026-01-01T00:00:00.000000Z"},
            "alert": {"count": 3, "severity": "medium", "signature_id": 9400006},
            "scanner": {"nmap_fingerprint": True},
        },
        "message": "m (3 times)",
    }
    eve = eve_alert(capture_alert)
    assert not suricata.problems(eve)
    assert eve["dicom"]["scanner"] == {"nmap_fingerprint": True}
    assert "calling_ae_title" not in eve["dicom"]  # null AE titles are left out
    assert (eve["dicom"]["count"], eve["dicom"]["action"]) == (3, "folded")
    assert eve["dicom"]["first_seen"] == "2026-01-01T00:00:00.000000+0000"
    assert "alert" not in eve["dicom"]
