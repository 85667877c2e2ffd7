"""Alert events: ECS fields, one-sentence messages, and repeats folded per (rule, src, dst)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from sensor.policy.alerts import AlertFolder, alert_event
from sensor.policy.catalogue import DICOM_RULES, RULES, RULES_BY_ID, RuleSpec, Severity
from sensor.policy.config import default_rules
from sensor.policy.findings import Finding
from sensor.policy.view import AssociationView
from sensor.policy.zones import DEFAULT_EXTERNAL, DEFAULT_INTERNAL, Zone
from tests.dissectors.dicom import framing as f

from .harness import EXT, PACS, SECRETS, T0, Net, hospital

RULE_CONFIGS = default_rules()
WINDOW = 300.0


def view(src: str = "203.0.113.5", dst: str = "10.0.0.10", vlan: int | None = None,
         src_zone: Zone = DEFAULT_EXTERNAL,
         dst_zone: Zone = DEFAULT_INTERNAL) -> AssociationView:  # fmt: skip
    return AssociationView(
        src, 50001, dst, 104, src_zone, dst_zone, "BRUTE", "PACS", None, T0, vlan
    )


def finding(rule_id: str = "ae-brute-force", ts: float = T0, src: str = "203.0.113.5",
            dst: str = "10.0.0.10", message: str = "A thing happened") -> Finding:  # fmt: skip
    return Finding(RULE_CONFIGS[rule_id], view(src, dst), ts, message)


# -- folding ---------------------------------------------------------------------------


def test_first_finding_is_emitted_at_once() -> None:
    folder = AlertFolder(WINDOW)
    [event] = folder.offer(finding())
    assert event["event"]["action"] == "detected"
    assert event["dicom"]["alert"]["count"] == 1
    assert folder.flush() == []  # nothing was repeated: no folded event


def test_a_fold_keeps_no_parsed_request() -> None:
    # A fold lives for the window, after its association: it must not keep the parsed
    # A-ASSOCIATE-RQ (128 presentation contexts in the live flood), and the folded event
    # must not need it.
    from dissectors.dicom.pdu import AssociateRQ, parse_pdu

    rq, _ = parse_pdu(f.storage_rq())
    assert isinstance(rq, AssociateRQ)
    folder = AlertFolder(WINDOW)
    base = finding()
    first = Finding(base.rule, replace(base.view, request=rq), T0, "First")
    [detected] = folder.offer(first)
    assert folder.offer(Finding(base.rule, replace(base.view, request=rq), T0 + 1, "R")) == []
    kept = [fold.first for fold in folder._open.values()]  # what the fold holds
    assert [k.view.request for k in kept] == [None]
    [folded] = folder.flush()
    assert folded["event"]["action"] == "folded"
    assert folded["source"] == detected["source"] and folded["dicom"]["alert"]["count"] == 1


@pytest.mark.parametrize("repeats", [1, 2, 9])
@pytest.mark.parametrize("close", ["expiry", "flush", "next-offer"])
def test_repeats_within_window_fold_into_one_event(repeats: int, close: str) -> None:
    folder = AlertFolder(WINDOW)
    first = finding(ts=T0, message="First")
    assert len(folder.offer(first)) == 1
    last = T0
    for i in range(repeats):
        last = T0 + 10 * (i + 1)
        assert folder.offer(finding(ts=last, message=f"Repeat {i}")) == []
    assert folder.expire(T0 + WINDOW - 1) == []  # window still open
    if close == "expiry":
        out = folder.expire(T0 + WINDOW)
    elif close == "flush":
        out = folder.flush()
    else:  # a repeat after the window: the fold closes and a fresh alert opens
        out = folder.offer(finding(ts=T0 + WINDOW + 5, message="Later"))
    folded = out[0]
    assert folded["event"]["action"] == "folded"
    # the repeats only: the first finding was its own `detected` event
    assert folded["dicom"]["alert"]["count"] == repeats
    assert folded["message"] == f"First ({repeats} more time{'' if repeats == 1 else 's'})"
    assert folded["event"]["start"] == first_iso(T0)
    assert folded["event"]["end"] == folded["@timestamp"] == first_iso(last)
    if close == "next-offer":
        assert len(out) == 2
        assert out[1]["event"]["action"] == "detected"
        assert out[1]["message"] == "Later"
    else:
        assert len(out) == 1
    assert folder.flush() == []


def first_iso(ts: float) -> str:
    return str(alert_event(finding(ts=ts))["@timestamp"])


@pytest.mark.parametrize(
    "other",
    [
        {"rule_id": "association-sweep"},
        {"src": "203.0.113.6"},
        {"dst": "10.0.0.11"},
        {"src": "2001:db8::5"},
    ],
    ids=["rule", "source", "destination", "source-v6"],
)
def test_different_keys_are_not_folded_together(other: dict[str, str]) -> None:
    folder = AlertFolder(WINDOW)
    base = "perimeter-inbound"  # keyed by (rule, source, destination)
    other = {"rule_id": base, **other} if "rule_id" not in other else other
    assert len(folder.offer(finding(base, ts=T0))) == 1
    assert len(folder.offer(finding(ts=T0 + 1, **other))) == 1  # its own first alert
    assert folder.offer(finding(base, ts=T0 + 2)) == []
    assert folder.offer(finding(ts=T0 + 3, **other)) == []
    assert folder.offer(finding(ts=T0 + 4, **other)) == []
    counts = sorted(e["dicom"]["alert"]["count"] for e in folder.flush())
    assert counts == [1, 2]


@pytest.mark.parametrize("rule_id", ["association-sweep", "ae-brute-force"])
def test_source_keyed_rules_fold_across_destinations(rule_id: str) -> None:
    """A sweep of many hosts is one alert and one fold, not one alert per host."""
    folder = AlertFolder(WINDOW)
    assert len(folder.offer(finding(rule_id, ts=T0, dst="10.0.0.1"))) == 1
    for i in range(2, 30):
        assert folder.offer(finding(rule_id, ts=T0 + i, dst=f"10.0.0.{i}")) == []
    [folded] = folder.flush()
    assert folded["dicom"]["alert"]["count"] == 28


def test_expiry_closes_only_old_folds() -> None:
    folder = AlertFolder(WINDOW)
    folder.offer(finding(ts=T0, src="203.0.113.1"))
    folder.offer(finding(ts=T0 + 1, src="203.0.113.1"))
    folder.offer(finding(ts=T0 + 100, src="203.0.113.2"))
    folder.offer(finding(ts=T0 + 101, src="203.0.113.2"))
    [old] = folder.expire(T0 + WINDOW)
    assert old["source"]["ip"] == "203.0.113.1"
    [young] = folder.flush()
    assert young["source"]["ip"] == "203.0.113.2"


def test_zero_window_folds_nothing() -> None:
    folder = AlertFolder(0)
    assert len(folder.offer(finding(ts=T0))) == 1
    assert len(folder.offer(finding(ts=T0))) == 1
    assert folder.flush() == []


def test_brute_force_folds_into_one_alert_with_count(tmp_path: Path) -> None:
    """Eight guessed called AE titles, threshold 3: one alert now, one folded with 5 later."""
    net = Net(hospital(tmp_path))
    folder = AlertFolder(WINDOW)
    events = []
    for i in range(8):
        assoc = net.run(EXT, PACS, f.REJECTED_STREAM, ts=T0 + i)
        for x in assoc.findings:
            events.extend(folder.offer(x[1]))
    brute = [e for e in events if e["rule"]["id"] == "ae-brute-force"]
    assert len(brute) == 1 and brute[0]["event"]["action"] == "detected"
    brute = [e for e in folder.flush() if e["rule"]["id"] == "ae-brute-force"]
    assert [e["dicom"]["alert"]["count"] for e in brute] == [5]


def test_counts_summed_over_events_equal_the_findings() -> None:
    """What the summary and dicom_alerts_total count (every finding) is what the events sum to."""
    folder = AlertFolder(WINDOW)
    events = []
    findings = 0
    for i in range(40):
        src = f"203.0.113.{i % 3}"
        events.extend(folder.offer(finding(ts=T0 + 17 * i, src=src)))
        findings += 1
    events.extend(folder.flush())
    assert sum(e["dicom"]["alert"]["count"] for e in events) == findings


# -- the event itself ------------------------------------------------------------------


@pytest.mark.parametrize("spec", RULES, ids=lambda s: s.id)
def test_alert_event_fields(spec: RuleSpec) -> None:
    rule_id = spec.id
    event = alert_event(finding(rule_id))
    rule = RULES_BY_ID[rule_id]
    assert event["event"]["kind"] == "alert"
    assert event["event"]["dataset"] == "dicom.alert"
    assert event["event"]["severity"] == rule.severity.ecs
    assert isinstance(event["event"]["severity"], int)
    assert event["rule"]["id"] == rule_id
    assert event["rule"]["name"] == rule.name
    assert event["rule"]["category"] == rule.category
    assert event["dicom"]["alert"]["signature_id"] == rule.sid
    assert event["dicom"]["alert"]["severity"] == rule.severity.value
    assert event["source"] == {"ip": "203.0.113.5", "port": 50001, "zone": "external"}
    assert event["destination"] == {"ip": "10.0.0.10", "port": 104, "zone": "internal"}
    assert event["dicom"]["calling_ae_title"] == "BRUTE"
    assert event["dicom"]["called_ae_title"] == "PACS"
    assert event["network"] == {"transport": "tcp", "protocol": "dicom"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event["@timestamp"])
    assert event["dicom"]["association"]["start"] == event["@timestamp"]
    json.dumps(event)


def test_signature_ids_are_unique_and_stable() -> None:
    sids = [r.sid for r in RULES]
    assert len(set(sids)) == len(sids) == len(RULES)
    # Stable: a rule keeps its id forever; new rules take the next numbers.
    assert sorted(sids) == list(range(9400001, 9400001 + len(RULES)))
    assert {r.id: r.sid for r in RULES}["perimeter-inbound"] == 9400001
    assert {r.id: r.sid for r in RULES}["dicom-on-tls-port"] == 9400016


@pytest.mark.parametrize(
    ("severity", "number"),
    [(Severity.INFO, 1), (Severity.LOW, 21), (Severity.MEDIUM, 47), (Severity.HIGH, 73),
     (Severity.CRITICAL, 99)],
)  # fmt: skip
def test_configured_severity_sets_event_severity(severity: Severity, number: int) -> None:
    rule = RULE_CONFIGS["new-node"]
    rule = type(rule)(rule.id, rule.enabled, severity, rule.allow, rule.params)
    event = alert_event(Finding(rule, view(), T0, "x"))
    assert event["event"]["severity"] == number
    assert event["dicom"]["alert"]["severity"] == severity.value


def test_vlan_and_extra_fields() -> None:
    f_ = Finding(RULE_CONFIGS["move-unknown-destination"], view(vlan=42), T0, "m",
                 {"move": {"destination": "EVIL"}})  # fmt: skip
    event = alert_event(f_)
    assert event["network"]["vlan"] == {"id": 42}
    assert event["dicom"]["move"] == {"destination": "EVIL"}


# Scenarios of test_rules that together make every rule fire, run here for their messages.
ALL_FIRES = [
    "ext-accepted", "ext-rejected", "ext-unanswered", "office-to-ext", "office-to-office",
    "ward-to-pacs", "nmap-dicom-ping", "brute-3-in-20s", "sweep-hosts", "type2-passcode-store",
    "type5-jwt", "move-unknown", "find-vpn", "store-office-to-ext", "new-requestor",
    "new-calling-ae", "new-port", "office-to-2762", "overlap-mismatch",
]  # fmt: skip


def test_every_rule_message_is_one_sentence_without_data_set_content(tmp_path: Path) -> None:
    from .test_rules import S

    seen: set[str] = set()
    for scenario in ALL_FIRES:
        net = Net(hospital(tmp_path))
        S[scenario](net)
        net.finish()
        for _, x in net.findings:
            seen.add(x.rule.id)
            event = alert_event(x)
            message = event["message"]
            assert "\n" not in message and len(message) < 300, message
            # One sentence: no sentence break inside (dots in addresses and UIDs are fine).
            assert not re.search(r"[.!?]\s+[A-Z]", message), message
            text = json.dumps(event)
            for secret in SECRETS:
                assert secret not in text
            assert event["source"]["ip"] in message or x.view.acceptor_ip in message, message
    assert seen == {r.id for r in DICOM_RULES}


def test_alert_has_association_identity(tmp_path: Path) -> None:
    net = Net(hospital(tmp_path))
    assoc = net.run(EXT, PACS, f.ECHO_STREAM, ts=T0 + 5)
    [(trigger, x)] = net.of("perimeter-inbound")
    event = alert_event(x)
    assert trigger == "AssociationAccepted"
    assert event["source"] == {"ip": EXT, "port": assoc.info.origin_port, "zone": "external"}
    assert event["destination"] == {"ip": PACS, "port": 104, "zone": "radiology"}
    assert event["dicom"]["calling_ae_title"] == "ECHOSCU"
    assert event["dicom"]["called_ae_title"] == "STORESCP"
    assert event["dicom"]["association"]["start"] < event["@timestamp"]
    assert event["dicom"]["outcome"] == "accepted"
