"""Every rule the sensor knows: stable id, name, default severity, parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    """Alert severity; ``ecs`` is the number ECS ``event.severity`` carries."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def ecs(self) -> int:
        """0-100 as Elastic's detection rules use it."""
        return {"info": 1, "low": 21, "medium": 47, "high": 73, "critical": 99}[self.value]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule's fixed identity and defaults."""

    id: str
    sid: int  # stable numeric signature id (Suricata EVE, syslog)
    name: str
    category: str
    severity: Severity
    description: str
    params: dict[str, float] = field(default_factory=dict)
    protocol: str = "dicom"  # the protocol whose sessions the rule looks at


RULES: tuple[RuleSpec, ...] = (
    RuleSpec("perimeter-inbound", 9400001, "DICOM association from an external network",
             "perimeter", Severity.HIGH,
             "A requestor in an external zone was accepted by a DICOM node inside."),
    RuleSpec("perimeter-inbound-probe", 9400002,
             "DICOM association attempt from an external network", "perimeter", Severity.MEDIUM,
             "An external requestor asked for an association that was rejected or unanswered."),
    RuleSpec("perimeter-outbound", 9400003, "DICOM association to an external network",
             "perimeter", Severity.HIGH,
             "A node inside asked a DICOM node in an external zone for an association."),
    RuleSpec("non-radiology-association", 9400004, "DICOM between two non-radiology zones",
             "segmentation", Severity.MEDIUM,
             "Neither side is in a radiology zone: a shadow DICOM node or a misplaced device."),
    RuleSpec("radiology-boundary", 9400005, "DICOM between radiology and a non-radiology zone",
             "segmentation", Severity.LOW,
             "A radiology node and a node outside radiology, on no allow list."),
    RuleSpec("scanner-probe", 9400006, "DICOM scanner probe (nmap dicom-ping style)",
             "reconnaissance", Severity.MEDIUM,
             "Called ANY-SCP, calling ECHOSCU, Verification only: nmap's dicom-ping at this "
             "severity; the same from a plain DCMTK echoscu (a link test) at info."),
    RuleSpec("ae-brute-force", 9400007, "Called AE title brute force",
             "reconnaissance", Severity.HIGH,
             "Many associations from one source rejected for an unknown called AE title.",
             {"threshold": 5, "window": 60}),
    RuleSpec("association-sweep", 9400008, "DICOM association sweep",
             "reconnaissance", Severity.HIGH,
             "One source asked many hosts or ports for DICOM associations.",
             {"hosts": 10, "ports": 10, "window": 300}),
    RuleSpec("cleartext-credentials", 9400009, "DICOM user identity sent in clear",
             "credentials", Severity.MEDIUM,
             "A passcode or identity token crossed the network without TLS."),
    RuleSpec("move-unknown-destination", 9400010, "C-MOVE to an unknown destination AE",
             "exfiltration", Severity.HIGH,
             "A C-MOVE asked for images to be sent to an AE title no node inside answers to: "
             "decided when its sub-association is answered from an external zone (this "
             "severity), rejected, or the move refused or failed (at most medium), or when no "
             "destination answered within decide_within seconds (this severity).",
             {"decide_within": 30}),
    RuleSpec("query-retrieve-untrusted", 9400011, "Query/retrieve from an untrusted zone",
             "exfiltration", Severity.HIGH,
             "C-FIND, C-MOVE or C-GET requested by a node outside the internal zones of a "
             "node inside the hospital (an acceptor in no external zone)."),
    RuleSpec("bulk-outbound", 9400012, "Bulk DICOM transfer to an external network",
             "exfiltration", Severity.HIGH,
             "More DICOM data than the threshold left for an external zone.",
             {"bytes_per_association": 100_000_000, "bytes_per_window": 1_000_000_000,
              "window": 3600}),
    RuleSpec("new-node", 9400013, "New DICOM node", "inventory", Severity.LOW,
             "A host not in the learned baseline took part in a DICOM association.",
             {"learning_period": 86400}),
    RuleSpec("new-ae-title", 9400014, "New AE title on a known node", "inventory", Severity.LOW,
             "A known DICOM node used an AE title not in the learned baseline.",
             {"learning_period": 86400}),
    RuleSpec("new-port", 9400015, "DICOM on a new port for a known node", "inventory",
             Severity.LOW, "A known DICOM node accepted DICOM on a port not in the baseline.",
             {"learning_period": 86400}),
    RuleSpec("hl7-perimeter", 9400017, "HL7 crossing the network perimeter", "perimeter",
             Severity.HIGH,
             "HL7 v2 (admissions, orders, results: PHI) between an external zone and inside.",
             protocol="hl7"),
    RuleSpec("hl7-non-clinical", 9400018, "HL7 outside the clinical zones", "segmentation",
             Severity.MEDIUM,
             "HL7 v2 between two zones neither of which is clinical or radiology.",
             protocol="hl7"),
    RuleSpec("tls-on-dicom-port", 9400019, "TLS on a DICOM port", "encryption", Severity.INFO,
             "A TLS ClientHello to a port that carries plain DICOM (104, 11112, 4242, or a "
             "service seen here): DICOM over TLS, or something else hiding on a DICOM port.",
             protocol="tls"),
    RuleSpec("stream-evasion", 9400020,
             "Overlapping TCP retransmissions carried different bytes inside a DICOM association",
             "evasion", Severity.MEDIUM,
             "Two copies of the same TCP stream bytes differed: the endpoint may have kept "
             "the other copy than the sensor decoded (a stream-evasion attempt, or a broken "
             "TCP stack). Once per association."),
    RuleSpec("dicom-on-tls-port", 9400016, "Plain DICOM on the DICOM TLS port", "encryption",
             Severity.MEDIUM, "Unencrypted DICOM on port 2762, reserved for DICOM over TLS."),
)  # fmt: skip

REMEDIATION_DOC = "docs/remediation.md"


@dataclass(frozen=True, slots=True)
class Remediation:
    """What a hospital network team does about a rule's alerts: one sentence and a section."""

    text: str
    section: str  # the anchor of a section of docs/remediation.md

    @property
    def reference(self) -> str:
        """``rule.reference``: the section, as a path relative to the repository root."""
        return f"{REMEDIATION_DOC}#{self.section}"


PERIMETER = "block-inbound-dicom-at-the-perimeter"
OUTBOUND = "allow-outbound-dicom-only-to-named-partners"
SEGMENT = "segment-imaging-into-its-own-vlan"
TELERADIOLOGY = "teleradiology-over-a-vpn-with-mfa-not-port-forwarding"
INSPECT = "inspect-dicom-at-the-application-layer"
INVENTORY = "inventory-every-dicom-node-and-retire-shadow-servers"
ENCRYPT = "encrypt-dicom-and-keep-credentials-off-the-wire"
SCANNING = "find-and-contain-scanning"
HL7 = "keep-hl7-inside-the-clinical-zones"
EVASION = "normalise-tcp-in-front-of-imaging"

REMEDIATIONS: dict[str, Remediation] = {
    "perimeter-inbound": Remediation(
        "Block inbound DICOM at the perimeter firewall and give outside partners a VPN with "
        "MFA instead of a forwarded port.", PERIMETER),
    "perimeter-inbound-probe": Remediation(
        "Block inbound DICOM ports at the perimeter so outside hosts cannot reach any DICOM "
        "node, even to be rejected.", PERIMETER),
    "perimeter-outbound": Remediation(
        "Allow outbound DICOM only to named partner addresses through the firewall, and "
        "block it for every other destination.", OUTBOUND),
    "non-radiology-association": Remediation(
        "Move the DICOM node into the imaging VLAN or retire it, and block DICOM between "
        "zones outside radiology.", SEGMENT),
    "radiology-boundary": Remediation(
        "Open the imaging VLAN only to the named systems that need DICOM, or add this pair "
        "to the rule's allow list if it is one.", SEGMENT),
    "scanner-probe": Remediation(
        "Find and stop the scanning host, and make sure DICOM nodes are reachable only from "
        "the systems that use them.", SCANNING),
    "ae-brute-force": Remediation(
        "Block the source, and have DICOM nodes accept only configured calling and called "
        "AE titles from known addresses.", INSPECT),
    "association-sweep": Remediation(
        "Find and stop the sweeping host, and segment imaging so one host cannot reach "
        "every DICOM node.", SCANNING),
    "cleartext-credentials": Remediation(
        "Move this association to DICOM over TLS (port 2762) and change the credential that "
        "crossed the network in clear.", ENCRYPT),
    "move-unknown-destination": Remediation(
        "Check who asked for the C-MOVE, and configure the PACS to send only to the AE "
        "titles and addresses it knows.", INSPECT),
    "query-retrieve-untrusted": Remediation(
        "Serve query/retrieve only to internal zones, and give remote readers a VPN with MFA "
        "instead of direct access.", TELERADIOLOGY),
    "bulk-outbound": Remediation(
        "Confirm the transfer with the imaging team, and allow outbound DICOM only to named "
        "partners over a VPN or TLS.", OUTBOUND),
    "new-node": Remediation(
        "Identify the new node and add it to the DICOM inventory, or take it off the network "
        "if nobody owns it.", INVENTORY),
    "new-ae-title": Remediation(
        "Confirm the new AE title with the node's owner and record it in the inventory, or "
        "remove the unexpected configuration.", INVENTORY),
    "new-port": Remediation(
        "Confirm the new listening port with the node's owner, and close it if it is not in "
        "the inventory.", INVENTORY),
    "hl7-perimeter": Remediation(
        "Block HL7 at the perimeter and carry external interfaces over a VPN or TLS to the "
        "interface engine only.", HL7),
    "hl7-non-clinical": Remediation(
        "Move the HL7 endpoint into a clinical zone or route it through the interface "
        "engine, and block HL7 elsewhere.", HL7),
    "tls-on-dicom-port": Remediation(
        "Confirm the service on this port is DICOM over TLS, and inventory it; anything else "
        "on a DICOM port should be closed.", INVENTORY),
    "stream-evasion": Remediation(
        "Find the host that sent the differing copies, check it for compromise or a broken "
        "network stack, and normalise TCP at the firewall in front of imaging.", EVASION),
    "dicom-on-tls-port": Remediation(
        "Configure both nodes for DICOM over TLS on port 2762, or move plain DICOM off the "
        "port reserved for TLS.", ENCRYPT),
}  # fmt: skip

RULES_BY_ID = {rule.id: rule for rule in RULES}
DICOM_RULES = tuple(rule for rule in RULES if rule.protocol == "dicom")
