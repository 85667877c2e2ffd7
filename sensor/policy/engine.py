"""The policy: findings from association events, with the detectors' windows and the baseline."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from dissectors.base import Summarized
from dissectors.dicom.association import DicomSession
from dissectors.dicom.constants import VERIFICATION_SOP_CLASS, CommandField, StatusClass
from dissectors.dicom.events import (
    AssociationAccepted,
    AssociationRejected,
    AssociationRequested,
    DimseMessage,
)
from dissectors.dicom.items import UserInformation
from dissectors.dicom.vendors import vendor_for

from ..capture.bpf import PLAIN_DICOM_PORTS
from ..capture.decode import Segment
from ..flow.endpoints import endpoints, generic_endpoints
from ..flow.stream import OverlapMismatch
from ..flow.table import FlowInfo
from ..timefmt import iso
from .baseline import Baseline, Novelty
from .catalogue import Severity
from .config import Config, RuleConfig
from .findings import Finding, allowed
from .inventory import Inventory
from .moves import MoveReason, PendingMove, PendingMoves
from .view import AssociationView, view_of
from .windows import WindowCount, WindowDistinct, WindowSum
from .zones import Trust

TLS_PORT = 2762
# nmap's dicom scripts present themselves as DCMTK 3.6.2.
NMAP_VERSION_NAME = "OFFIS_DCMTK_362"
NMAP_CLASS_UID = "1.2.276.0.7230010.3.0.3.6.2"
_QUERY_RETRIEVE = {CommandField.C_FIND_RQ, CommandField.C_MOVE_RQ, CommandField.C_GET_RQ}
_REASON_CALLED_AE = 7
_SOURCE_SERVICE_USER = 1
MOVE_DESTINATION_UNKNOWN = 0xA801  # C-MOVE-RSP: Refused, Move Destination unknown (PS3.4 C.4.2)
# What a C-MOVE decided without an answer from its destination becomes: the images may have
# gone by a path the sensor does not see, so the rule's own severity; a destination that
# refused, or a move the SCP refused or failed, moved nothing: at most medium.
_NOTHING_MOVED = frozenset({MoveReason.REFUSED, MoveReason.FAILED, MoveReason.REJECTED})
_UNANSWERED = frozenset({MoveReason.NO_ANSWER, MoveReason.CAPTURE_ENDED, MoveReason.LIMIT})


def _impl(ui: UserInformation | None) -> tuple[str | None, str | None, str | None]:
    if ui is None:
        return None, None, None
    uid = ui.implementation_class_uid
    return uid, ui.implementation_version_name, vendor_for(uid)


class PolicyEngine:
    """Turns association events into findings; keeps the inventory and the baseline."""

    def __init__(self, config: Config, baseline: Baseline | None = None) -> None:
        self.config = config
        self.rules = config.rules
        self.baseline = baseline if baseline is not None else Baseline(config.state_file)
        self.inventory = Inventory()
        brute = self.rules["ae-brute-force"].params
        sweep = self.rules["association-sweep"].params
        bulk = self.rules["bulk-outbound"].params
        self._brute = WindowCount[str](brute["window"])
        self._sweep_hosts = WindowDistinct[str](sweep["window"])
        self._sweep_ports = WindowDistinct[str](sweep["window"])
        self._bulk_window = WindowSum[str](bulk["window"])
        self._bulk_sent: dict[int, int] = {}  # id(session) -> outbound bytes already counted
        self._bulk_fired: set[int] = set()
        # C-MOVEs to a destination not known at once, decided later (move-unknown-destination)
        self.moves = PendingMoves()
        self.move_decisions: Counter[str] = Counter()  # MoveReason value -> decisions

    def reconfigure(self, config: Config) -> None:
        """Take a new config (SIGHUP) keeping what was learned and the detectors' windows."""
        self.config = config
        self.rules = config.rules
        self._brute.window = self.rules["ae-brute-force"].params["window"]
        self._sweep_hosts.window = self.rules["association-sweep"].params["window"]
        self._sweep_ports.window = self.rules["association-sweep"].params["window"]
        self._bulk_window.window = self.rules["bulk-outbound"].params["window"]

    # -- helpers --------------------------------------------------------------------

    def _rule(self, rule_id: str) -> RuleConfig | None:
        rule = self.rules[rule_id]
        if not rule.enabled:
            return None
        if rule_id in ("non-radiology-association", "radiology-boundary") and not (
            self.config.zones.has_radiology
        ):
            return None
        return rule

    def _finding(
        self,
        out: list[Finding],
        rule_id: str,
        view: AssociationView,
        ts: float,
        message: str,
        sop_class: str | None = None,
        move_destination: str | None = None,
        protocol: str = "dicom",
        severity: Severity | None = None,
        subject: object | None = None,
        **fields: Any,
    ) -> None:
        rule = self._rule(rule_id)
        if rule is None or allowed(rule, view, sop_class, move_destination):
            return
        if severity is not None and severity is not rule.severity:
            rule = dataclasses.replace(rule, severity=severity)
        out.append(Finding(rule, view, ts, message, fields, protocol, subject))

    # -- events ---------------------------------------------------------------------

    def on_event(self, info: FlowInfo, session: DicomSession, event: Any) -> list[Finding]:
        """Findings triggered by one session event, at the moment its PDU was seen."""
        cls = event.__class__
        if cls not in (
            AssociationRequested,
            AssociationAccepted,
            AssociationRejected,
            DimseMessage,
            OverlapMismatch,
        ):
            return []
        view = view_of(info, session, self.config.zones)
        out: list[Finding] = []
        if cls is OverlapMismatch:
            self._overlap_mismatch(view, info, session, event, out)
        elif cls is AssociationRequested:
            self._requested(view, session, event, out)
        elif cls is AssociationAccepted:
            self._accepted(view, session, event, out)
        elif cls is AssociationRejected:
            self._rejected(view, session, event, out)
        else:
            self._dimse(view, info, session, event, out)
        return out

    def on_close(self, info: FlowInfo, session: DicomSession) -> list[Finding]:
        """Findings that need the association's end: an unanswered inbound attempt."""
        state = session.state
        out: list[Finding] = []
        view = view_of(info, session, self.config.zones)
        if state.request is not None and state.result == "no-response" and view.inbound:
            self._finding(
                out,
                "perimeter-inbound-probe",
                view,
                state.last_ts or info.last_ts,
                f"External host {view.requestor_ip} asked {view.acceptor_ip}:"
                f"{view.acceptor_port} for a DICOM association and got no answer",
                outcome="no-response",
            )
        self._check_bulk(view, info, session, state.last_ts or info.last_ts, out)
        key = id(session)
        self._bulk_sent.pop(key, None)
        self._bulk_fired.discard(key)
        return out

    def _requested(
        self, v: AssociationView, session: DicomSession, event: Any, out: list[Finding]
    ) -> None:
        ts = event.ts
        rq = event.pdu
        ui = rq.user_information
        self.inventory.requestor(v.requestor_ip, v.requestor_zone.name, ts, v.calling_ae, _impl(ui))
        pair = (
            f"{v.requestor_ip} ({v.requestor_zone.name}) -> "
            f"{v.acceptor_ip}:{v.acceptor_port} ({v.acceptor_zone.name})"
        )
        if v.outbound:
            self._finding(
                out,
                "perimeter-outbound",
                v,
                ts,
                f"DICOM association requested to an external network: {pair}, "
                f"calling {v.calling_ae!r}, called {v.called_ae!r}",
            )
        if not v.requestor_zone.radiology and not v.acceptor_zone.radiology:
            if (
                v.requestor_zone.trust is not Trust.EXTERNAL
                and v.acceptor_zone.trust is not Trust.EXTERNAL
            ):
                self._finding(
                    out,
                    "non-radiology-association",
                    v,
                    ts,
                    f"DICOM between two non-radiology zones (possible shadow PACS): {pair}",
                )
        elif v.requestor_zone.radiology != v.acceptor_zone.radiology:
            other = v.acceptor_zone if v.requestor_zone.radiology else v.requestor_zone
            if other.trust is not Trust.EXTERNAL:
                self._finding(
                    out,
                    "radiology-boundary",
                    v,
                    ts,
                    f"DICOM between radiology and zone {other.name!r}, on no allow list: {pair}",
                )
        syntaxes = set(v.abstract_syntaxes)
        if (
            v.called_ae == "ANY-SCP"
            and v.calling_ae == "ECHOSCU"
            and syntaxes <= {VERIFICATION_SOP_CLASS}
        ):
            uid, version, _ = _impl(ui)
            nmap = version == NMAP_VERSION_NAME or uid == NMAP_CLASS_UID
            what = (
                "nmap dicom-ping fingerprint (DCMTK 3.6.2 impersonation)"
                if nmap
                else "default echoscu AE titles"
            )
            # A plain DCMTK echoscu with its default AE titles is how biomedical staff test a
            # link every day: said at info. nmap's fingerprint keeps the configured severity.
            self._finding(
                out,
                "scanner-probe",
                v,
                ts,
                f"DICOM scanner probe from {v.requestor_ip}: called ANY-SCP, calling ECHOSCU, "
                f"Verification only, {what}",
                severity=None if nmap else Severity.INFO,
                scanner={"nmap_fingerprint": nmap},
            )
        if ui is not None and ui.user_identity is not None:
            ident = ui.user_identity
            if ident.passcode_present or ident.identity_type >= 3:
                secret = "a passcode" if ident.passcode_present else f"a {ident.type_name} token"
                self._finding(
                    out,
                    "cleartext-credentials",
                    v,
                    ts,
                    f"{v.requestor_ip} sent {secret} to {v.acceptor_ip}:{v.acceptor_port} "
                    "in a DICOM user identity without TLS",
                    user_identity={
                        "type": ident.identity_type,
                        "type_name": ident.type_name,
                        "passcode_present": ident.passcode_present,
                    },
                )
        if v.acceptor_port == TLS_PORT:
            self._finding(
                out,
                "dicom-on-tls-port",
                v,
                ts,
                f"Plain DICOM on port {TLS_PORT} (DICOM over TLS): {pair}",
            )
        self._sweep(v, ts, out)
        self._novelty(v.requestor_ip, v.calling_ae, None, v, ts, out)
        if len(self.moves):
            self.moves.match(session, v, ts)

    def _accepted(
        self, v: AssociationView, session: DicomSession, event: Any, out: list[Finding]
    ) -> None:
        ts = event.ts
        ac = event.pdu
        self.inventory.acceptor(
            v.acceptor_ip,
            v.acceptor_zone.name,
            ts,
            v.acceptor_port,
            v.called_ae,
            _impl(ac.user_information),
        )
        if v.inbound:
            self._finding(
                out,
                "perimeter-inbound",
                v,
                ts,
                f"External host {v.requestor_ip} ({v.requestor_zone.name}) was accepted by "
                f"{v.acceptor_ip}:{v.acceptor_port} ({v.acceptor_zone.name}), "
                f"called AE {v.called_ae!r}",
                outcome="accepted",
            )
        self._novelty(v.acceptor_ip, v.called_ae, v.acceptor_port, v, ts, out)
        if len(self.moves):
            entry = self._sub_association(session, v, ts)
            if entry is not None:
                external = v.acceptor_zone.trust is Trust.EXTERNAL
                reason = MoveReason.ANSWERED_EXTERNAL if external else MoveReason.ANSWERED_INTERNAL
                self._decide(entry, reason, ts, out)

    def _sub_association(
        self, session: DicomSession, v: AssociationView, ts: float
    ) -> PendingMove | None:
        """The pending C-MOVE this association is the sub-association of (matched at its RQ,
        or now when the sensor saw no RQ)."""
        entry = self.moves.of_sub(session)
        if entry is None and session.state.request is None:
            entry = self.moves.match(session, v, ts)
        return entry

    def _rejected(
        self, v: AssociationView, session: DicomSession, event: Any, out: list[Finding]
    ) -> None:
        ts = event.ts
        rj = event.pdu
        if len(self.moves):
            entry = self._sub_association(session, v, ts)
            if entry is not None:
                self._decide(entry, MoveReason.REJECTED, ts, out, rejected=rj.reason_name)
        if v.inbound:
            self._finding(
                out,
                "perimeter-inbound-probe",
                v,
                ts,
                f"External host {v.requestor_ip} asked {v.acceptor_ip}:{v.acceptor_port} "
                f"for a DICOM association and was rejected ({rj.reason_name})",
                outcome="rejected",
            )
        if rj.source == _SOURCE_SERVICE_USER and rj.reason == _REASON_CALLED_AE:
            rule = self.rules["ae-brute-force"]
            count = self._brute.add(v.requestor_ip, ts)
            if count >= rule.params["threshold"]:
                self._finding(
                    out,
                    "ae-brute-force",
                    v,
                    ts,
                    f"{v.requestor_ip} had {count} associations rejected for an unknown "
                    f"called AE title within {rule.params['window']:g} s "
                    f"(latest tried: {v.called_ae!r})",
                    brute_force={"rejections_in_window": count},
                )

    def _dimse(
        self,
        v: AssociationView,
        info: FlowInfo,
        session: DicomSession,
        event: DimseMessage,
        out: list[Finding],
    ) -> None:
        command = event.command
        ts = event.ts
        _, _, requestor = endpoints(info, session.state)
        sender_ip = v.requestor_ip if event.direction == requestor else v.acceptor_ip
        self.inventory.sop_class(sender_ip, command.sop_class_uid)
        field_ = command.command_field
        if field_ in _QUERY_RETRIEVE and event.direction == requestor:
            # Exfiltration needs the images inside: an acceptor in an external zone (two
            # hosts both outside the hospital) is none of its business.
            if (
                v.requestor_zone.trust is not Trust.INTERNAL
                and v.acceptor_zone.trust is not Trust.EXTERNAL
            ):
                self._finding(
                    out,
                    "query-retrieve-untrusted",
                    v,
                    ts,
                    f"{command.name} from {v.requestor_ip} in {v.requestor_zone.trust.value} "
                    f"zone {v.requestor_zone.name!r} to {v.acceptor_ip}:{v.acceptor_port}",
                    sop_class=command.sop_class_uid,
                    command=command.name,
                )
            dest = command.move_destination
            if field_ == CommandField.C_MOVE_RQ and dest:
                self._move_requested(v, session, command, dest, ts, out)
        elif (
            field_ == CommandField.C_MOVE_RSP
            and event.direction != requestor
            and self.moves.has_session(session)
        ):
            self._move_responded(session, command, ts, out)
        self._check_bulk(v, info, session, ts, out)

    def _overlap_mismatch(
        self,
        v: AssociationView,
        info: FlowInfo,
        session: DicomSession,
        event: OverlapMismatch,
        out: list[Finding],
    ) -> None:
        """Differing copies of the same stream bytes: one finding per association, at the first."""
        if not event.first:
            return
        requestor = endpoints(info, session.state)[2]
        sender = v.requestor_ip if event.direction == requestor else v.acceptor_ip
        self._finding(
            out,
            "stream-evasion",
            v,
            event.ts,
            f"Overlapping TCP segments from {sender} carried different bytes in the DICOM "
            f"association {v.requestor_ip} -> {v.acceptor_ip}:{v.acceptor_port}; the sensor "
            "decoded the first copy",
            stream={
                "overlap_mismatches": event.total,
                "sent_by": "requestor" if event.direction == requestor else "acceptor",
            },
        )

    # -- C-MOVE destinations, decided after the sub-association ------------------------

    def _move_requested(
        self,
        v: AssociationView,
        session: DicomSession,
        command: Any,
        dest: str,
        ts: float,
        out: list[Finding],
    ) -> None:
        """A C-MOVE-RQ waits for its sub-association, its final response or ``decide_within``
        seconds: even a move to the requestor's own AE title goes wherever the SCP's table
        says that title lives."""
        rule = self._rule("move-unknown-destination")
        if rule is None or allowed(rule, v, command.sop_class_uid, dest):
            return
        evicted = self.moves.add(
            session,
            v,
            dest,
            command.message_id,
            command.sop_class_uid,
            ts,
            rule.params["decide_within"],
        )
        if evicted is not None:
            self._decide(evicted, MoveReason.LIMIT, ts, out)

    def _move_responded(
        self, session: DicomSession, command: Any, ts: float, out: list[Finding]
    ) -> None:
        """A C-MOVE-RSP; the final one (not pending) decides its move if nothing answered."""
        status = command.status_class
        if status is None or status is StatusClass.PENDING:
            return
        entries = self.moves.of_session(session)
        replied = command.message_id_being_responded_to
        entry = next((e for e in entries if e.message_id == replied), entries[0])
        if command.status == MOVE_DESTINATION_UNKNOWN:
            reason = MoveReason.REFUSED
        elif status in (StatusClass.FAILURE, StatusClass.CANCEL):
            reason = MoveReason.FAILED
        else:
            reason = MoveReason.NO_ANSWER
        self._decide(entry, reason, ts, out, status=command.status)

    def tick(self, now: float) -> list[Finding]:
        """Decisions due by packet time ``now``: C-MOVEs whose ``decide_within`` has passed.

        Cheap when nothing is due (one comparison); a decision is dated at its deadline.
        """
        out: list[Finding] = []
        for entry in self.moves.due(now):
            self._decide(entry, MoveReason.NO_ANSWER, entry.deadline, out)
        return out

    def flush(self, now: float) -> list[Finding]:
        """Decide everything pending with what is known (end of capture, SIGTERM)."""
        out: list[Finding] = []
        for entry in self.moves.due(now):
            self._decide(entry, MoveReason.NO_ANSWER, entry.deadline, out)
        for entry in self.moves.all():
            self._decide(entry, MoveReason.CAPTURE_ENDED, max(now, entry.requested), out)
        return out

    def pending(self, session: object) -> bool:
        """Whether a decision about this association is still to come (tick or flush)."""
        return self.moves.has_session(session)

    def _known_destination(self, entry: PendingMove) -> bool:
        """The requestor's own AE title (a requestor outside the external zones), an AE title
        a node outside the external zones answered to, or one the baseline knows."""
        dest = entry.destination
        v = entry.view
        if dest == v.calling_ae and v.requestor_zone.trust is not Trust.EXTERNAL:
            return True
        zones = self.config.zones
        external = {z.name for z in zones.zones if z.trust is Trust.EXTERNAL}
        if zones.default.trust is Trust.EXTERNAL:
            external.add(zones.default.name)
        if self.inventory.knows_scp_ae_title(dest, external):
            return True
        return self.baseline.knows_ae_title(
            dest, lambda ip: zones.lookup(ip).trust is not Trust.EXTERNAL
        )

    def _decide(
        self,
        entry: PendingMove,
        reason: MoveReason,
        ts: float,
        out: list[Finding],
        status: int | None = None,
        rejected: str | None = None,
    ) -> None:
        """Take the entry off the table and say what its C-MOVE was."""
        self.moves.remove(entry)
        if reason in _UNANSWERED and self._known_destination(entry):
            # No answer seen, but a node inside answers to that title: the sub-association
            # went by a path the sensor does not see.
            reason = MoveReason.KNOWN
        self.move_decisions[reason.value] += 1
        if reason in (MoveReason.ANSWERED_INTERNAL, MoveReason.KNOWN):
            return
        v = entry.view
        dest = entry.destination
        move: dict[str, Any] = {
            "destination": dest,
            "reason": reason.value,
            "requested": iso(entry.requested),
        }
        if status is not None:
            move["status"] = f"0x{status:04X}"
        sub = entry.sub_view
        if sub is not None:
            move["sub_association"] = {
                "source": {"ip": sub.requestor_ip, "port": sub.requestor_port},
                "destination": {
                    "ip": sub.acceptor_ip,
                    "port": sub.acceptor_port,
                    "zone": sub.acceptor_zone.name,
                },
                "calling_ae_title": sub.calling_ae,
            }
        asked = f"C-MOVE from {v.requestor_ip} asked {v.acceptor_ip} to send images to {dest!r}"
        severity: Severity | None = None
        if reason is MoveReason.ANSWERED_EXTERNAL and sub is not None:
            what = (
                f"{asked}: {sub.acceptor_ip}:{sub.acceptor_port} in external zone "
                f"{sub.acceptor_zone.name!r} answered as {dest!r}"
            )
        elif reason is MoveReason.REJECTED:
            what = f"{asked}: the destination rejected the sub-association ({rejected})"
        elif reason is MoveReason.REFUSED:
            what = f"{asked}: the SCP refused it, move destination unknown (0xA801)"
        elif reason is MoveReason.FAILED:
            what = (
                f"{asked}: the move failed (status 0x{status or 0:04X}) and no destination answered"
            )
        elif reason is MoveReason.NO_ANSWER:
            what = f"{asked}, an AE title no known node uses, and no destination answered"
        elif reason is MoveReason.CAPTURE_ENDED:
            what = f"{asked}, an AE title no known node uses; the capture ended before an answer"
        else:
            what = f"{asked}, an AE title no known node uses (decided early: too many pending)"
        if reason in _NOTHING_MOVED:
            rule = self.rules["move-unknown-destination"]
            if rule.severity.ecs > Severity.MEDIUM.ecs:
                severity = Severity.MEDIUM
        self._finding(
            out,
            "move-unknown-destination",
            v,
            ts,
            what,
            sop_class=entry.sop_class,
            move_destination=dest,
            severity=severity,
            subject=entry.session,
            move=move,
        )

    # -- TLS where plain DICOM is expected -------------------------------------------

    def on_tls_hello(self, seg: Segment) -> list[Finding]:
        """A TLS ClientHello to a DICOM port: info, so encrypted DICOM is on the map too."""
        port = seg.dport
        if port == TLS_PORT or not (
            port in PLAIN_DICOM_PORTS or self.inventory.serves(seg.dst, port)
        ):
            return []
        zones = self.config.zones
        view = AssociationView(
            seg.src,
            seg.sport,
            seg.dst,
            port,
            zones.lookup(seg.src),
            zones.lookup(seg.dst),
            None,
            None,
            None,
            seg.ts,
            seg.vlan,
        )
        out: list[Finding] = []
        self._finding(
            out,
            "tls-on-dicom-port",
            view,
            seg.ts,
            f"TLS ClientHello from {seg.src} to {seg.dst}:{port}, a DICOM port",
        )
        return out

    # -- other clinical protocols -----------------------------------------------------

    def on_generic(self, info: FlowInfo, session: Summarized, ts: float) -> list[Finding]:
        """Findings for a non-DICOM clinical protocol, when its first message is seen."""
        if info.protocol != "hl7":
            return []
        (c_ip, c_port), (s_ip, s_port) = generic_endpoints(info, session.originator())
        zones = self.config.zones
        view = AssociationView(
            c_ip,
            c_port,
            s_ip,
            s_port,
            zones.lookup(c_ip),
            zones.lookup(s_ip),
            None,
            None,
            None,
            ts,
            info.vlan,
        )
        out: list[Finding] = []
        pair = f"{c_ip} ({view.requestor_zone.name}) -> {s_ip}:{s_port} ({view.acceptor_zone.name})"
        facts: dict[str, Any] = {
            "client_zone": view.requestor_zone.name,
            "server_zone": view.acceptor_zone.name,
        }
        if view.inbound or view.outbound:
            way = "into the network" if view.inbound else "out of the network"
            self._finding(
                out,
                "hl7-perimeter",
                view,
                ts,
                f"HL7 v2 crossing the perimeter {way}: {pair}",
                protocol="hl7",
                **facts,
            )
        elif zones.has_clinical and not (
            view.requestor_zone.clinical or view.acceptor_zone.clinical
        ):
            self._finding(
                out,
                "hl7-non-clinical",
                view,
                ts,
                f"HL7 v2 between zones that are neither clinical nor radiology: {pair}",
                protocol="hl7",
                **facts,
            )
        return out

    # -- stateful detectors ---------------------------------------------------------

    def _sweep(self, v: AssociationView, ts: float, out: list[Finding]) -> None:
        rule = self.rules["association-sweep"]
        hosts = self._sweep_hosts.add(v.requestor_ip, v.acceptor_ip, ts)
        ports = self._sweep_ports.add(v.requestor_ip, (v.acceptor_ip, v.acceptor_port), ts)
        if hosts >= rule.params["hosts"] or ports >= rule.params["ports"]:
            self._finding(
                out,
                "association-sweep",
                v,
                ts,
                f"{v.requestor_ip} asked {hosts} hosts / {ports} host:port pairs for DICOM "
                f"associations within {rule.params['window']:g} s",
                sweep={"hosts": hosts, "endpoints": ports},
            )

    def _novelty(
        self,
        ip: str,
        ae: str | None,
        port: int | None,
        v: AssociationView,
        ts: float,
        out: list[Finding],
    ) -> None:
        for novelty in self.baseline.observe(ts, ip, ae, port):
            # Each novelty rule has its own learning period, counted from the baseline's start.
            if self.baseline.age(ts) < self.rules[novelty.value].params["learning_period"]:
                continue
            if novelty is Novelty.NODE:
                message = f"New DICOM node {ip} (AE title {ae!r}) after the learning period"
            elif novelty is Novelty.AE_TITLE:
                message = f"Known DICOM node {ip} used a new AE title {ae!r}"
            else:
                message = f"Known DICOM node {ip} accepted DICOM on a new port {port}"
            self._finding(out, novelty.value, v, ts, message, node={"ip": ip})

    def _check_bulk(
        self,
        v: AssociationView,
        info: FlowInfo,
        session: DicomSession,
        ts: float,
        out: list[Finding],
    ) -> None:
        """Bytes the inside side sent towards an external zone, per association and per window."""
        if v.requestor_zone.trust is Trust.EXTERNAL and v.acceptor_zone.trust is Trust.EXTERNAL:
            return
        if v.outbound:
            inside_ip, outside_ip = v.requestor_ip, v.acceptor_ip
            inside_dir = endpoints(info, session.state)[2]
        elif v.inbound:
            inside_ip, outside_ip = v.acceptor_ip, v.requestor_ip
            inside_dir = endpoints(info, session.state)[2].other
        else:
            return
        sent = session.state.counters[inside_dir].pdata_bytes
        key = id(session)
        delta = sent - self._bulk_sent.get(key, 0)
        if delta <= 0:
            return
        self._bulk_sent[key] = sent
        rule = self.rules["bulk-outbound"]
        window_total = self._bulk_window.add(inside_ip, delta, ts)
        per_assoc = rule.params["bytes_per_association"]
        per_window = rule.params["bytes_per_window"]
        if (sent >= per_assoc and key not in self._bulk_fired) or window_total >= per_window:
            self._bulk_fired.add(key)
            self._finding(
                out,
                "bulk-outbound",
                v,
                ts,
                f"{inside_ip} sent {sent:,} bytes of DICOM to external {outside_ip} on this "
                f"association, {window_total:,} within {rule.params['window']:g} s",
                bulk={"association_bytes": sent, "window_bytes": window_total},
            )
