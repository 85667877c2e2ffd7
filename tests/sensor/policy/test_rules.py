"""Every rule of the catalogue: when it fires, when an allow entry or enabled: false stops it,
and the benign variant it must stay quiet on.

The engine is driven as the pipeline drives it: real DicomSession objects fed real PDU bytes
(the shared vectors, or pynetdicom-encoded PDUs from ``pdus``), every event passed to
``PolicyEngine.on_event`` with a FlowInfo whose addresses pick the zones of ``HOSPITAL``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sensor.flow.stream import OverlapMismatch
from sensor.policy.catalogue import DICOM_RULES, RULES_BY_ID, Severity
from sensor.policy.config import ConfigError, default_config, load_config
from sensor.policy.engine import PolicyEngine
from tests.dissectors.dicom import framing as f
from tests.dissectors.dicom import vectors as v

from . import pdus as p
from .harness import (
    EXT,
    EXT2,
    EXT6,
    GUEST,
    MODALITY,
    OFFICE,
    OFFICE2,
    PACS,
    PACS6,
    PACS_B,
    PACS_C,
    T0,
    VPN,
    WARD,
    Association,
    Net,
    hospital,
    write_config,
)

SCU = f.ORIGIN  # the requestor: its A-ASSOCIATE-RQ matched the probe
SCP = f.PEER
Scenario = Callable[[Net], object]  # what a scenario returns is ignored

# --------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------

ECHO = f.ECHO_STREAM  # DCMTK echoscu "ECHOSCU" -> storescp "STORESCP", one C-ECHO
REJECTED = f.REJECTED_STREAM  # DCMTK RQ answered 1/1/7 (called AE title not recognised)
RQ_ONLY = [(SCU, v.RQ_ECHO)]  # DCMTK RQ, no answer
STORE = f.STORE_STREAM  # pynetdicom "MODALITY" -> "PACS": type 2 passcode, one C-STORE
STORE_REQUESTOR_BYTES = len(f.STORE_PDU_COMMAND + f.STORE_PDU_DATA_1 + f.STORE_PDU_DATA_2)


def echo_as(calling: str, called: str, rq: bytes | None = None) -> list[f.Segment]:
    """A whole C-ECHO association between the given AE titles."""
    return [
        (SCU, rq if rq is not None else p.rq(calling, called)),
        (SCP, p.ac(calling, called)),
        (SCU, v.PDATA_ECHO_RQ),
        (SCP, v.PDATA_ECHO_RSP),
        (SCU, v.RELEASE_RQ),
        (SCP, v.RELEASE_RP),
    ]


def dimse(
    calling: str, called: str, syntaxes: list[str], *rq: tuple[bytes, int]
) -> list[f.Segment]:
    """RQ proposing ``syntaxes``, AC accepting them, then the requestor's commands."""
    out: list[f.Segment] = [
        (SCU, p.rq(calling, called, syntaxes)),
        (SCP, p.ac(calling, called, syntaxes)),
    ]
    out.extend((SCU, p.command(cmd, ctx)) for cmd, ctx in rq)
    return out


def move(calling: str, called: str = "PACS") -> list[f.Segment]:
    """C-MOVE-RQ (Study Root) asking for images to go to "STORESCP"."""
    return dimse(calling, called, [v.STUDY_MOVE], (v.C_MOVE_RQ, 1))


def find(calling: str = "WS", called: str = "PACS") -> list[f.Segment]:
    """C-FIND-RQ (Study Root)."""
    return dimse(calling, called, [v.STUDY_FIND], (v.C_FIND_RQ, 1))


def get_with_store(calling: str = "GETSCU", called: str = "PACS") -> list[f.Segment]:
    """C-GET-RQ from the requestor; the acceptor answers with a C-STORE sub-operation."""
    syntaxes = [v.STUDY_GET, v.CT_IMAGE_STORAGE]
    data = f.DATA_SET
    return [
        *dimse(calling, called, syntaxes, (v.C_GET_RQ, 1)),
        (SCP, p.command(v.C_STORE_RQ, 3)),
        (SCP, f.pdata(f.pdv(3, f.DATA, data[:100]), f.pdv(3, f.DATA, data[100:300]))),
        (SCP, f.pdata(f.pdv(3, f.DATA_LAST, data[300:]))),
        (SCU, p.command(v.C_STORE_RSP, 3)),
        (SCP, p.command(v.C_GET_RSP, 1)),
    ]


def store_from(src: str, dst: str, net: Net, ts: float = T0) -> None:
    net.run(src, dst, STORE, ts=ts)


# --------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------


def learn(net: Net) -> Association:
    """The learning period: MODALITY echoes PACS:104, "MODALITY" -> "PACS"."""
    return net.run(MODALITY, PACS, echo_as("MODALITY", "PACS"), ts=T0)


AFTER = T0 + 200  # past the 100 s learning period of HOSPITAL


def brute(
    net: Net, src: str = EXT, gaps: tuple[float, ...] = (0, 10, 20), rj: bytes = v.RJ_CALLED_AE
) -> None:
    """Associations with guessed called AE titles, each rejected."""
    for i, gap in enumerate(gaps):
        net.run(src, PACS, [(SCU, p.rq("BRUTE", f"GUESS{i}")), (SCP, rj)], ts=T0 + gap)


def sweep_hosts(net: Net, src: str = EXT, gap: float = 1) -> None:
    for i, host in enumerate((PACS, PACS_B, PACS_C)):
        net.run(src, host, RQ_ONLY, ts=T0 + i * gap)


def sweep_ports(net: Net, src: str = OFFICE, gap: float = 1) -> None:
    for i, port in enumerate((104, 11112, 4242)):
        net.run(src, PACS, RQ_ONLY, port=port, ts=T0 + i * gap)


def overlaps(net: Net) -> None:
    """A C-ECHO association whose stream layer saw differing copies three times, in two
    segments (the engine's OverlapMismatch events, as the flow engine emits them)."""
    assoc = net.run(MODALITY, PACS, ECHO)
    for count, total in ((1, 1), (2, 3)):
        event = OverlapMismatch(assoc.ts, SCU, count, total)
        found = net.engine.on_event(assoc.info, assoc.session, event)
        net.record([("OverlapMismatch", x) for x in found])


S: dict[str, Scenario] = {
    "overlap-mismatch": overlaps,
    # perimeter
    "ext-accepted": lambda n: n.run(EXT, PACS, ECHO),
    "ext6-accepted": lambda n: n.run(EXT6, PACS6, ECHO),
    "guest-accepted": lambda n: n.run(GUEST, PACS, ECHO),
    "ext-rejected": lambda n: n.run(EXT, PACS, REJECTED),
    "ext-unanswered": lambda n: n.run(EXT, PACS, RQ_ONLY, close=True),
    "ext-accepted-closed": lambda n: n.run(EXT, PACS, ECHO, close=True),
    "office-rejected-closed": lambda n: n.run(OFFICE, PACS, REJECTED, close=True),
    "office-unanswered": lambda n: n.run(OFFICE, PACS, RQ_ONLY, close=True),
    "office-to-ext": lambda n: n.run(OFFICE, EXT, ECHO),
    "modality-to-ext-rejected": lambda n: n.run(MODALITY, EXT, REJECTED),
    "vpn-to-ext": lambda n: n.run(VPN, EXT, RQ_ONLY),
    "modality-to-pacs": lambda n: n.run(MODALITY, PACS, STORE),
    "office-to-pacs": lambda n: n.run(OFFICE, PACS, ECHO),
    "guest-to-ext": lambda n: n.run(GUEST, EXT, ECHO),
    "ext-to-ext": lambda n: n.run(EXT, EXT2, ECHO),
    # segmentation
    "office-to-office": lambda n: n.run(OFFICE, OFFICE2, ECHO),
    "office-to-ward": lambda n: n.run(OFFICE, WARD, ECHO),
    "vpn-to-office": lambda n: n.run(VPN, OFFICE, ECHO),
    "ward-to-pacs": lambda n: n.run(WARD, PACS, ECHO),
    "pacs-to-office": lambda n: n.run(PACS, OFFICE, ECHO),
    # scanners
    "echoscu-any-scp": lambda n: n.run(EXT, PACS, [(SCU, p.rq("ECHOSCU", "ANY-SCP"))]),
    "nmap-dicom-ping": lambda n: n.run(
        EXT, PACS, [(SCU, p.rq("ECHOSCU", "ANY-SCP", uid=p.NMAP_UID, version=p.NMAP_VERSION))]
    ),
    "any-scp-with-storage": lambda n: n.run(
        EXT, PACS, [(SCU, p.rq("ECHOSCU", "ANY-SCP", [v.CT_IMAGE_STORAGE, p.VERIFICATION]))]
    ),
    "echoscu-to-storescp": lambda n: n.run(EXT, PACS, ECHO),
    "brute-3-in-20s": brute,
    "brute-5-in-40s": lambda n: brute(n, gaps=(0, 10, 20, 30, 40)),
    "brute-2": lambda n: brute(n, gaps=(0, 10)),
    "brute-spread": lambda n: brute(n, gaps=(0, 61, 122)),
    "rejected-calling-ae": lambda n: brute(n, rj=p.rj(1, 1, 3)),
    "rejected-congestion": lambda n: brute(n, rj=v.RJ_CONGESTION),
    "brute-3-sources": lambda n: [
        n.run(src, PACS, REJECTED, ts=T0 + i) for i, src in enumerate((EXT, EXT2, EXT6))
    ],
    "sweep-hosts": sweep_hosts,
    "sweep-ports": sweep_ports,
    "sweep-spread": lambda n: sweep_hosts(n, gap=400),
    "same-endpoint-3x": lambda n: [n.run(EXT, PACS, RQ_ONLY, ts=T0 + i) for i in range(3)],
    # credentials
    "type2-passcode-store": lambda n: n.run(MODALITY, PACS, STORE),
    "type2-passcode": lambda n: n.run(MODALITY, PACS, [(SCU, p.identity_rq(v.SUB_58_PASSCODE))]),
    "type3-kerberos": lambda n: n.run(MODALITY, PACS, [(SCU, p.identity_rq(v.SUB_58_KERBEROS))]),
    "type4-saml": lambda n: n.run(MODALITY, PACS, [(SCU, p.identity_rq(v.SUB_58_SAML))]),
    "type5-jwt": lambda n: n.run(MODALITY, PACS, [(SCU, p.identity_rq(v.SUB_58_JWT))]),
    "type1-username": lambda n: n.run(MODALITY, PACS, [(SCU, p.identity_rq(v.SUB_58_USERNAME))]),
    "no-identity": lambda n: n.run(MODALITY, PACS, ECHO),
    # exfiltration
    "move-unknown": lambda n: n.run(OFFICE, PACS, move("WS")),
    "move-unknown-ext": lambda n: n.run(EXT, PACS, move("EVIL")),
    "move-to-self": lambda n: n.run(OFFICE, PACS, move("STORESCP")),
    "move-to-known": lambda n: [
        n.run(MODALITY, PACS_B, ECHO, ts=T0),  # PACS_B answers to "STORESCP"
        n.run(OFFICE, PACS, move("WS"), ts=T0 + 5),
    ],
    "find-office": lambda n: n.run(OFFICE, PACS, find()),
    "find-vpn": lambda n: n.run(VPN, PACS, find()),
    "move-ext": lambda n: n.run(EXT, PACS, move("STORESCP")),
    "get-guest": lambda n: n.run(
        GUEST, PACS, dimse("GETSCU", "PACS", [v.STUDY_GET], (v.C_GET_RQ, 1))
    ),
    "store-vpn": lambda n: n.run(VPN, PACS, STORE),
    "move-office": lambda n: n.run(OFFICE, PACS, move("STORESCP")),
    "store-office-to-ext": lambda n: n.run(OFFICE, EXT, STORE),
    "get-ext-from-pacs": lambda n: n.run(EXT, PACS, get_with_store()),
    "store-office-to-ext-2x": lambda n: [
        n.run(OFFICE, EXT, STORE, ts=T0),
        n.run(OFFICE, EXT2, STORE, ts=T0 + 10),
    ],
    "store-ext-to-ext2": lambda n: n.run(EXT, EXT2, STORE),
    "echo-office-to-ext": lambda n: n.run(OFFICE, EXT, ECHO),
    # inventory
    "new-requestor": lambda n: [learn(n), n.run(OFFICE, PACS, echo_as("WS", "PACS"), ts=AFTER)],
    "new-acceptor": lambda n: [
        learn(n),
        n.run(MODALITY, PACS_B, echo_as("MODALITY", "PACS"), ts=AFTER),
    ],
    "new-requestor-twice": lambda n: [
        learn(n),
        n.run(OFFICE, PACS, echo_as("WS", "PACS"), ts=AFTER),
        n.run(OFFICE, PACS, echo_as("WS", "PACS"), ts=AFTER + 5),
    ],
    "new-calling-ae": lambda n: [
        learn(n),
        n.run(MODALITY, PACS, echo_as("MODALITY2", "PACS"), ts=AFTER),
    ],
    "new-called-ae": lambda n: [
        learn(n),
        n.run(MODALITY, PACS, echo_as("MODALITY", "PACS2"), ts=AFTER),
    ],
    "new-port": lambda n: [
        learn(n),
        n.run(MODALITY, PACS, echo_as("MODALITY", "PACS"), port=11112, ts=AFTER),
    ],
    "known-after-learning": lambda n: [
        learn(n),
        n.run(MODALITY, PACS, echo_as("MODALITY", "PACS"), ts=AFTER),
    ],
    "new-during-learning": lambda n: [
        learn(n),
        n.run(OFFICE, PACS_B, echo_as("WS", "OTHER"), port=11112, ts=T0 + 50),
        n.run(MODALITY, PACS, echo_as("MOD2", "PACS2"), port=4242, ts=T0 + 60),
    ],
    # encryption
    "office-to-2762": lambda n: n.run(OFFICE, PACS, ECHO, port=2762),
    "ext-to-2762": lambda n: n.run(EXT, PACS, RQ_ONLY, port=2762),
    "office-to-104": lambda n: n.run(OFFICE, PACS, ECHO, port=104),
    "office-to-2761": lambda n: n.run(OFFICE, PACS, ECHO, port=2761),
}


@dataclass(frozen=True)
class Fires:
    """A scenario in which ``rule`` fires ``count`` times; ``allow`` is an entry that stops it."""

    rule: str
    scenario: str
    count: int
    trigger: str
    allow: dict[str, str]
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.rule}:{self.scenario}"


BULK_PER_WINDOW = {
    "bulk-outbound": {
        "bytes_per_association": 1_000_000,
        "bytes_per_window": STORE_REQUESTOR_BYTES + STORE_REQUESTOR_BYTES // 2,
    }
}

FIRES = [
    Fires("perimeter-inbound", "ext-accepted", 1, "AssociationAccepted",
          {"source_zone": "external", "called_ae": "STORESCP"}),
    Fires("perimeter-inbound", "ext6-accepted", 1, "AssociationAccepted",
          {"source_zone": "external", "destination_zone": "radiology"}),
    Fires("perimeter-inbound", "guest-accepted", 1, "AssociationAccepted",
          {"source_zone": "guest-wifi"}),
    Fires("perimeter-inbound-probe", "ext-rejected", 1, "AssociationRejected",
          {"source_zone": "external"}),
    Fires("perimeter-inbound-probe", "ext-unanswered", 1, "close",
          {"destination_zone": "radiology", "calling_ae": "ECHOSCU"}),
    Fires("perimeter-outbound", "office-to-ext", 1, "AssociationRequested",
          {"destination_zone": "external", "called_ae": "STORESCP"}),
    Fires("perimeter-outbound", "modality-to-ext-rejected", 1, "AssociationRequested",
          {"source_zone": "radiology"}),
    Fires("perimeter-outbound", "vpn-to-ext", 1, "AssociationRequested",
          {"source_zone": "vpn", "destination_zone": "external"}),
    Fires("non-radiology-association", "office-to-office", 1, "AssociationRequested",
          {"source_zone": "office", "destination_zone": "office"}),
    Fires("non-radiology-association", "office-to-ward", 1, "AssociationRequested",
          {"called_ae": "STORESCP"}),
    Fires("non-radiology-association", "vpn-to-office", 1, "AssociationRequested",
          {"source_zone": "vpn"}),
    Fires("radiology-boundary", "ward-to-pacs", 1, "AssociationRequested",
          {"source_zone": "wards", "destination_zone": "radiology"}),
    Fires("radiology-boundary", "pacs-to-office", 1, "AssociationRequested",
          {"source_zone": "radiology", "destination_zone": "office"}),
    Fires("scanner-probe", "echoscu-any-scp", 1, "AssociationRequested",
          {"calling_ae": "ECHOSCU", "called_ae": "ANY-SCP"}),
    Fires("scanner-probe", "nmap-dicom-ping", 1, "AssociationRequested",
          {"source_zone": "external"}),
    Fires("ae-brute-force", "brute-3-in-20s", 1, "AssociationRejected",
          {"source_zone": "external"}),
    Fires("ae-brute-force", "brute-5-in-40s", 3, "AssociationRejected",
          {"calling_ae": "BRUTE"}),
    Fires("association-sweep", "sweep-hosts", 1, "AssociationRequested",
          {"source_zone": "external"}),
    Fires("association-sweep", "sweep-ports", 1, "AssociationRequested",
          {"source_zone": "office", "destination_zone": "radiology"}),
    Fires("cleartext-credentials", "type2-passcode-store", 1, "AssociationRequested",
          {"calling_ae": "MODALITY"}),
    Fires("cleartext-credentials", "type2-passcode", 1, "AssociationRequested",
          {"calling_ae": "ECHOSCU"}),
    Fires("cleartext-credentials", "type3-kerberos", 1, "AssociationRequested",
          {"source_zone": "radiology"}),
    Fires("cleartext-credentials", "type4-saml", 1, "AssociationRequested",
          {"called_ae": "STORESCP"}),
    Fires("cleartext-credentials", "type5-jwt", 1, "AssociationRequested",
          {"destination_zone": "radiology"}),
    Fires("move-unknown-destination", "move-unknown", 1, "flush",
          {"move_destination": "STORESCP"}),
    Fires("move-unknown-destination", "move-unknown-ext", 1, "flush",
          {"calling_ae": "EVIL"}),
    Fires("query-retrieve-untrusted", "find-vpn", 1, "DimseMessage",
          {"sop_class": v.STUDY_FIND}),
    Fires("query-retrieve-untrusted", "move-ext", 1, "DimseMessage",
          {"source_zone": "external"}),
    Fires("query-retrieve-untrusted", "get-guest", 1, "DimseMessage",
          {"source_zone": "guest-wifi", "sop_class": v.STUDY_GET}),
    Fires("bulk-outbound", "store-office-to-ext", 1, "DimseMessage",
          {"destination_zone": "external"}),
    Fires("bulk-outbound", "get-ext-from-pacs", 1, "DimseMessage",
          {"source_zone": "external"}),
    Fires("bulk-outbound", "store-office-to-ext-2x", 1, "DimseMessage",
          {"source_zone": "office"}, BULK_PER_WINDOW),
    Fires("new-node", "new-requestor", 1, "AssociationRequested",
          {"source_zone": "office"}),
    Fires("new-node", "new-acceptor", 1, "AssociationAccepted",
          {"destination_zone": "radiology"}),
    Fires("new-node", "new-requestor-twice", 1, "AssociationRequested",
          {"calling_ae": "WS"}),
    Fires("new-ae-title", "new-calling-ae", 1, "AssociationRequested",
          {"calling_ae": "MODALITY2"}),
    Fires("new-ae-title", "new-called-ae", 1, "AssociationAccepted",
          {"called_ae": "PACS2"}),
    Fires("new-port", "new-port", 1, "AssociationAccepted",
          {"destination_zone": "radiology"}),
    Fires("stream-evasion", "overlap-mismatch", 1, "OverlapMismatch",
          {"source_zone": "radiology"}),
    Fires("dicom-on-tls-port", "office-to-2762", 1, "AssociationRequested",
          {"destination_zone": "radiology"}),
    Fires("dicom-on-tls-port", "ext-to-2762", 1, "AssociationRequested",
          {"source_zone": "external"}),
]  # fmt: skip

# (rule, scenario): the rule must stay quiet.
QUIET = [
    ("perimeter-inbound", "office-to-pacs"),
    ("perimeter-inbound", "ext-rejected"),
    ("perimeter-inbound", "ext-to-ext"),
    ("perimeter-inbound", "office-to-ext"),
    ("perimeter-inbound-probe", "ext-accepted-closed"),
    ("perimeter-inbound-probe", "office-rejected-closed"),
    ("perimeter-inbound-probe", "office-unanswered"),
    ("perimeter-outbound", "modality-to-pacs"),
    ("perimeter-outbound", "ext-accepted"),
    ("perimeter-outbound", "guest-to-ext"),
    ("non-radiology-association", "modality-to-pacs"),
    ("non-radiology-association", "office-to-pacs"),
    ("non-radiology-association", "office-to-ext"),
    ("radiology-boundary", "modality-to-pacs"),
    ("radiology-boundary", "ext-accepted"),
    ("radiology-boundary", "office-to-office"),
    ("scanner-probe", "echoscu-to-storescp"),
    ("scanner-probe", "any-scp-with-storage"),
    ("ae-brute-force", "brute-2"),
    ("ae-brute-force", "brute-spread"),
    ("ae-brute-force", "rejected-calling-ae"),
    ("ae-brute-force", "rejected-congestion"),
    ("ae-brute-force", "brute-3-sources"),
    ("association-sweep", "same-endpoint-3x"),
    ("association-sweep", "sweep-spread"),
    ("cleartext-credentials", "type1-username"),
    ("cleartext-credentials", "no-identity"),
    ("move-unknown-destination", "move-to-self"),
    ("move-unknown-destination", "move-to-known"),
    ("move-unknown-destination", "find-vpn"),
    ("query-retrieve-untrusted", "find-office"),
    ("query-retrieve-untrusted", "move-office"),
    ("query-retrieve-untrusted", "store-vpn"),
    ("query-retrieve-untrusted", "ext-accepted"),
    ("bulk-outbound", "modality-to-pacs"),
    ("bulk-outbound", "echo-office-to-ext"),
    ("bulk-outbound", "store-ext-to-ext2"),
    ("new-node", "known-after-learning"),
    ("new-node", "new-during-learning"),
    ("new-node", "new-calling-ae"),
    ("new-ae-title", "known-after-learning"),
    ("new-ae-title", "new-during-learning"),
    ("new-ae-title", "new-requestor"),
    ("new-port", "known-after-learning"),
    ("new-port", "new-during-learning"),
    ("new-port", "new-acceptor"),
    ("new-port", "new-called-ae"),
    ("stream-evasion", "modality-to-pacs"),
    ("dicom-on-tls-port", "office-to-104"),
    ("dicom-on-tls-port", "office-to-2761"),
]


def run(tmp_path: Path, scenario: str, rules: dict[str, dict[str, Any]] | None = None) -> Net:
    net = Net(hospital(tmp_path, rules))
    S[scenario](net)
    net.finish()  # decisions still pending (C-MOVE destinations) are made at the end
    return net


def test_every_rule_has_cases() -> None:
    # The HL7 rules are driven by HL7 sessions: tests/sensor/test_hl7_policy.py.
    dicom_rules = {r.id for r in DICOM_RULES}
    assert len(dicom_rules) == 17
    assert {c.rule for c in FIRES} == dicom_rules
    assert {rule for rule, _ in QUIET} == dicom_rules
    assert all(c.scenario in S for c in FIRES)
    assert all(s in S for _, s in QUIET)


@pytest.mark.parametrize("case", FIRES, ids=lambda c: c.id)
def test_rule_fires(tmp_path: Path, case: Fires) -> None:
    net = run(tmp_path, case.scenario, case.rules)
    found = net.of(case.rule)
    assert len(found) == case.count, [x.message for _, x in found]
    assert {trigger for trigger, _ in found} == {case.trigger}
    plain_echoscu = case.id == "scanner-probe:echoscu-any-scp"  # said at info, see below
    for _, finding in found:
        expected = Severity.INFO if plain_echoscu else RULES_BY_ID[case.rule].severity
        assert finding.rule.severity == expected
        assert finding.message and "\n" not in finding.message


@pytest.mark.parametrize("case", FIRES, ids=lambda c: c.id)
def test_allow_entry_stops_rule(tmp_path: Path, case: Fires) -> None:
    rules = {**case.rules, case.rule: {**case.rules.get(case.rule, {}), "allow": [case.allow]}}
    net = run(tmp_path, case.scenario, rules)
    assert net.of(case.rule) == []


@pytest.mark.parametrize("case", FIRES, ids=lambda c: c.id)
def test_disabled_rule_is_quiet(tmp_path: Path, case: Fires) -> None:
    rules = {**case.rules, case.rule: {**case.rules.get(case.rule, {}), "enabled": False}}
    net = run(tmp_path, case.scenario, rules)
    assert net.of(case.rule) == []


# An allow entry that matches only part of the association does not stop the rule.
NOT_MATCHING = [
    ("perimeter-inbound", "ext-accepted", {"source_zone": "external", "called_ae": "OTHER"}),
    ("perimeter-outbound", "office-to-ext", {"source_zone": "wards"}),
    ("non-radiology-association", "office-to-office",
     {"source_zone": "office", "destination_zone": "wards"}),
    ("scanner-probe", "echoscu-any-scp", {"calling_ae": "ECHOSCU", "called_ae": "STORESCP"}),
    ("move-unknown-destination", "move-unknown", {"move_destination": "ARCHIVE"}),
    ("query-retrieve-untrusted", "find-vpn", {"sop_class": v.STUDY_MOVE}),
    ("cleartext-credentials", "type5-jwt", {"sop_class": v.CT_IMAGE_STORAGE}),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "scenario", "allow"), NOT_MATCHING, ids=lambda x: str(x))
def test_partial_allow_entry_does_not_stop_rule(
    tmp_path: Path, rule: str, scenario: str, allow: dict[str, str]
) -> None:
    net = run(tmp_path, scenario, {rule: {"allow": [allow]}})
    assert len(net.of(rule)) == 1


@pytest.mark.parametrize(("rule", "scenario"), QUIET, ids=lambda x: str(x))
def test_rule_quiet_on_benign_variant(tmp_path: Path, rule: str, scenario: str) -> None:
    net = run(tmp_path, scenario)
    assert net.of(rule) == [], [x.message for _, x in net.of(rule)]


# --------------------------------------------------------------------------------------
# Rule details beyond fire / allow / quiet
# --------------------------------------------------------------------------------------

RADIOLOGY_RULES = ("non-radiology-association", "radiology-boundary")


@pytest.mark.parametrize(
    ("src", "dst"),
    [("10.0.0.1", "10.0.0.2"), ("192.168.1.5", "172.16.0.9"), ("fd00::1", "fd00::2")],
)
def test_radiology_rules_off_without_radiology_zone(src: str, dst: str) -> None:
    net = Net(default_config())
    net.run(src, dst, ECHO)
    assert not net.rule_ids() & set(RADIOLOGY_RULES)


def test_radiology_rules_off_with_config_file_without_radiology_zone(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"zones": {"lan": {"cidrs": ["10.0.0.0/8"]}}})
    net = Net(load_config(path))
    net.run("10.0.0.1", "10.0.0.2", ECHO)
    assert not net.rule_ids() & set(RADIOLOGY_RULES)


@pytest.mark.parametrize(
    ("uid", "version", "nmap"),
    [
        (p.PYNETDICOM_UID, p.NMAP_VERSION, True),
        (p.NMAP_UID, p.PYNETDICOM_VERSION, True),
        (p.NMAP_UID, p.NMAP_VERSION, True),
        (p.PYNETDICOM_UID, p.PYNETDICOM_VERSION, False),
        ("1.2.276.0.7230010.3.0.3.6.7", "OFFIS_DCMTK_367", False),
    ],
)
def test_scanner_probe_nmap_fingerprint(tmp_path: Path, uid: str, version: str, nmap: bool) -> None:
    net = run(tmp_path, "echoscu-to-storescp")
    net.run(EXT, PACS, [(SCU, p.rq("ECHOSCU", "ANY-SCP", uid=uid, version=version))])
    [(_, finding)] = net.of("scanner-probe")
    assert finding.fields["scanner"] == {"nmap_fingerprint": nmap}
    assert ("nmap" in finding.message) is nmap


def test_plain_echoscu_is_info_and_nmap_keeps_its_severity(tmp_path: Path) -> None:
    """Biomedical staff run echoscu with its default AE titles daily: info, not medium."""
    net = run(tmp_path, "echoscu-any-scp")
    [(_, plain)] = net.of("scanner-probe")
    assert plain.rule.severity.value == "info"
    net = run(tmp_path, "nmap-dicom-ping")
    [(_, nmap)] = net.of("scanner-probe")
    assert nmap.rule.severity.value == "medium"


def test_query_retrieve_between_two_outside_hosts_is_not_exfiltration(tmp_path: Path) -> None:
    net = run(tmp_path, "echoscu-to-storescp")
    net.run(EXT, "198.51.100.99", find())  # both in the external default zone
    assert net.of("query-retrieve-untrusted") == []
    net.run(GUEST, "198.51.100.99", find())  # guest Wi-Fi (external) to the internet
    assert net.of("query-retrieve-untrusted") == []


def test_brute_force_counts_rejections_in_window(tmp_path: Path) -> None:
    net = run(tmp_path, "brute-5-in-40s")
    counts = [x.fields["brute_force"]["rejections_in_window"] for _, x in net.of("ae-brute-force")]
    assert counts == [3, 4, 5]
    # The earliest rejections slide out of the 60 s window.
    brute(net, gaps=(85,))  # 30, 40 and 85 are within 60 s
    assert net.of("ae-brute-force")[-1][1].fields["brute_force"]["rejections_in_window"] == 3


@pytest.mark.parametrize(
    ("scenario", "hosts", "endpoints"), [("sweep-hosts", 3, 3), ("sweep-ports", 1, 3)]
)
def test_sweep_counts(tmp_path: Path, scenario: str, hosts: int, endpoints: int) -> None:
    [(_, finding)] = run(tmp_path, scenario).of("association-sweep")
    assert finding.fields["sweep"] == {"hosts": hosts, "endpoints": endpoints}


@pytest.mark.parametrize(
    ("scenario", "identity"),
    [
        ("type2-passcode", {"type": 2, "type_name": "username-passcode", "passcode_present": True}),
        ("type5-jwt", {"type": 5, "type_name": "jwt", "passcode_present": False}),
    ],
)
def test_cleartext_credentials_fields(
    tmp_path: Path, scenario: str, identity: dict[str, Any]
) -> None:
    [(_, finding)] = run(tmp_path, scenario).of("cleartext-credentials")
    assert finding.fields["user_identity"]["type"] == identity["type"]
    assert finding.fields["user_identity"]["passcode_present"] == identity["passcode_present"]
    assert "alice" not in finding.message and "SYNTHETIC" not in finding.message


def test_move_unknown_destination_names_destination(tmp_path: Path) -> None:
    [(_, finding)] = run(tmp_path, "move-unknown").of("move-unknown-destination")
    # Nothing answered before the end: decided at the flush, with the C-MOVE's own time kept.
    assert finding.fields["move"] == {
        "destination": "STORESCP",
        "reason": "capture-ended",
        "requested": "2023-11-14T22:13:20.030000Z",
    }
    assert "'STORESCP'" in finding.message


def test_sop_class_allow_entry_covers_only_that_sop_class(tmp_path: Path) -> None:
    """An allow entry for C-FIND from the VPN must not also let a C-MOVE through.

    The requestor proposes both Study Root FIND (context 1) and MOVE (context 3) and sends
    a C-MOVE-RQ: the command's SOP class is MOVE, so the FIND entry does not apply.
    """
    net = Net(
        hospital(tmp_path, {"query-retrieve-untrusted": {"allow": [{"sop_class": v.STUDY_FIND}]}})
    )
    net.run(VPN, PACS, dimse("WS", "PACS", [v.STUDY_FIND, v.STUDY_MOVE], (v.C_FIND_RQ, 1)))
    assert net.of("query-retrieve-untrusted") == []  # the allowed C-FIND
    net.run(VPN, PACS, dimse("WS", "PACS", [v.STUDY_FIND, v.STUDY_MOVE], (v.C_MOVE_RQ, 3)))
    assert len(net.of("query-retrieve-untrusted")) == 1


# -- bulk-outbound ----------------------------------------------------------------------


def test_bulk_outbound_fires_once_per_association_including_close(tmp_path: Path) -> None:
    """The per-association alert fires once; closing the association must not repeat it."""
    net = Net(hospital(tmp_path))
    assoc = net.run(OFFICE, EXT, STORE)
    assert len(net.of("bulk-outbound")) == 1
    assert (
        net.of("bulk-outbound")[0][1].fields["bulk"]["association_bytes"] == STORE_REQUESTOR_BYTES
    )
    assoc.close()
    assert len(net.of("bulk-outbound")) == 1, [t for t, _ in net.of("bulk-outbound")]


def test_bulk_outbound_close_does_not_count_bytes_twice(tmp_path: Path) -> None:
    """One association below both thresholds, closed: its bytes count once in the window."""
    rules = {"bulk-outbound": {"bytes_per_association": 1_000_000,
                               "bytes_per_window": STORE_REQUESTOR_BYTES + 100}}  # fmt: skip
    net = Net(hospital(tmp_path, rules))
    net.run(OFFICE, EXT, STORE, close=True)
    assert net.of("bulk-outbound") == []


def test_bulk_outbound_counts_bytes_sent_after_last_command_at_close(tmp_path: Path) -> None:
    """Data set bytes after the last DIMSE command are counted when the association ends."""
    rules = {"bulk-outbound": {"bytes_per_association": STORE_REQUESTOR_BYTES - 10}}
    net = Net(hospital(tmp_path, rules))
    assoc = net.run(OFFICE, EXT, STORE[:5])  # RQ, AC, C-STORE-RQ command and its data set
    assert net.of("bulk-outbound") == []
    assoc.close()
    assert [t for t, _ in net.of("bulk-outbound")] == ["close"]


def test_bulk_outbound_per_window_total(tmp_path: Path) -> None:
    net = run(tmp_path, "store-office-to-ext-2x", BULK_PER_WINDOW)
    [(_, finding)] = net.of("bulk-outbound")
    assert finding.fields["bulk"] == {
        "association_bytes": STORE_REQUESTOR_BYTES,
        "window_bytes": 2 * STORE_REQUESTOR_BYTES,
    }


def test_bulk_outbound_window_expires(tmp_path: Path) -> None:
    net = Net(
        hospital(
            tmp_path,
            {
                **BULK_PER_WINDOW,
                "bulk-outbound": {**BULK_PER_WINDOW["bulk-outbound"], "window": 60},
            },
        )
    )
    net.run(OFFICE, EXT, STORE, ts=T0)
    net.run(OFFICE, EXT2, STORE, ts=T0 + 120)
    assert net.of("bulk-outbound") == []


# -- new-node, new-ae-title, new-port: learning and the state file ---------------------


def test_novelty_reported_once_then_learned(tmp_path: Path) -> None:
    net = run(tmp_path, "new-port")
    net.run(MODALITY, PACS, echo_as("MODALITY", "PACS"), port=11112, ts=AFTER + 10)
    assert len(net.of("new-port")) == 1


HOSPITAL_MIN: dict[str, Any] = {
    "zones": {"radiology": {"cidrs": ["10.10.0.0/16"], "radiology": True}},
    "rules": {r: {"learning_period": 100} for r in ("new-node", "new-ae-title", "new-port")},
}


def test_baseline_state_file_round_trips(tmp_path: Path) -> None:
    state = tmp_path / "baseline.json"
    data = {**HOSPITAL_MIN, "baseline": {"state_file": str(state)}}
    config = load_config(write_config(tmp_path, data))

    first = Net(config)
    learn(first)
    assert not first.rule_ids() & {"new-node", "new-ae-title", "new-port"}
    first.engine.baseline.save()
    saved = json.loads(state.read_text())
    assert saved["started"] is not None
    assert set(saved["nodes"]) == {MODALITY, PACS}
    assert saved["nodes"][PACS]["ports"] == [104]

    second = Net(config)  # a restart: the learning period has not begun again
    assert second.engine.baseline.load_error is None
    assert second.engine.baseline.started == first.engine.baseline.started
    second.run(MODALITY, PACS, echo_as("MODALITY", "PACS"), ts=AFTER)
    assert not second.rule_ids() & {"new-node", "new-ae-title", "new-port"}
    second.run(OFFICE, PACS, echo_as("WS", "PACS"), ts=AFTER + 1)
    second.run(MODALITY, PACS, echo_as("MODALITY", "PACS"), port=11112, ts=AFTER + 2)
    assert len(second.of("new-node")) == 1
    assert len(second.of("new-port")) == 1
    # "STORESCP"-style lookups: AE titles in the baseline count as known move destinations.
    assert second.engine.baseline.knows_ae_title("PACS")


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "",
        "[]",
        '{"nodes": {}}',
        '{"started": "yesterday", "nodes": {}}',
        '{"started": 1, "nodes": []}',
        '{"started": 1, "nodes": {"10.10.0.10": []}}',
        '{"started": 1, "nodes": {"10.10.0.10": {"ports": ["x"]}}}',
        '{"started": 1, "nodes": {"10.10.0.10": {"ae_titles": 5}}}',
    ],
)
def test_corrupt_state_file_is_survived(tmp_path: Path, content: str) -> None:
    state = tmp_path / "baseline.json"
    state.write_text(content)
    data = {**json.loads(json.dumps(HOSPITAL_MIN)), "baseline": {"state_file": str(state)}}
    engine = PolicyEngine(load_config(write_config(tmp_path, data)))
    baseline = engine.baseline
    assert baseline.load_error is not None and str(state) in baseline.load_error
    assert baseline.started is None and not baseline.knows_ae_title("PACS")
    net = Net(engine.config, engine)
    learn(net)  # learning again: quiet
    assert not net.rule_ids() & {"new-node", "new-ae-title", "new-port"}
    net.run(OFFICE, PACS, echo_as("WS", "PACS"), ts=AFTER)
    assert len(net.of("new-node")) == 1
    baseline.save()  # and the state file is repaired
    assert json.loads(state.read_text())["nodes"]


@pytest.mark.parametrize("rule", ["new-ae-title", "new-port"])
def test_learning_period_of_each_novelty_rule_is_not_ignored(tmp_path: Path, rule: str) -> None:
    """A learning_period given on new-ae-title or new-port must take effect or be refused.

    The config accepts ``rules.new-port.learning_period``; a value that validates and then
    has no effect misleads the operator.
    """
    data = {"zones": HOSPITAL_MIN["zones"], "rules": {rule: {"learning_period": 100}}}
    try:
        config = load_config(write_config(tmp_path, data))
    except ConfigError:
        return  # refusing the field is an acceptable fix
    net = Net(config)
    learn(net)
    scenario = "new-port" if rule == "new-port" else "new-calling-ae"
    S[scenario](net)  # learns again at T0 (harmless), then the novelty at T0 + 200
    assert len(net.of(rule)) == 1
