"""The one pipeline: packets from any source through the flow engine, policy and outputs.

Offline files (two prefiltered passes), standard input (one pass), a live interface and
each capture worker all feed the same :class:`Pipeline`; only the source differs.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dissectors.base import CloseReason, Dissector, Session, Summarized, Verdict, first_match
from dissectors.dicom.association import DicomSession
from dissectors.dicom.events import (
    Anomaly,
    AssociationRequested,
    DimseMessage,
    GapDetected,
)

from .capture import fastread
from .capture.bpf import ETHERNET, PLAIN_DICOM_PORTS, TINY_PAYLOAD, all_tcp_filter, heads_expression
from .capture.decode import SUPPORTED_LINKTYPES, DropReason, Segment
from .capture.offline import OfflineCapture, Packet, ReadResult
from .capture.prefilter import LIVE_MAX_SERVICES, Followed, flow_key
from .counters import SensorCounters
from .flow.endpoints import endpoints, generic_endpoints
from .flow.engine import FlowEngine
from .flow.stream import OverlapMismatch, StreamAnomaly
from .flow.table import EngineConfig, FlowInfo
from .outputs.alertpcap import AlertPcaps, AlertTarget
from .outputs.events import anomaly_event
from .outputs.jsonl import JsonLines, Sink
from .outputs.livepcap import LiveAlertPcaps
from .outputs.pivots import Pivots
from .outputs.records import build_generic_record, build_record
from .policy.alerts import AlertFolder
from .policy.config import Config, default_config
from .policy.engine import PolicyEngine
from .policy.findings import Finding

Progress = Callable[[int], None]


def _say(message: str) -> None:
    print(f"dicom-sensor: {message}", file=sys.stderr, flush=True)


MAX_TALKERS = 10_000
MIN_SNAPLEN = 96  # Ethernet + 802.1Q + IPv6 + TCP headers + the 12 bytes a head test reads


@dataclass(frozen=True, slots=True)
class ReadConfig:
    """How the offline reader works."""

    engine: EngineConfig = field(default_factory=EngineConfig)


@dataclass(slots=True)
class Talker:
    """One requestor-to-acceptor pair, summed over its associations."""

    associations: int = 0
    pdata_bytes: int = 0


class Pipeline:
    """Feeds captures through the flow engine and writes what the dissectors found."""

    def __init__(
        self,
        dissectors: Sequence[Dissector],
        config: ReadConfig | None = None,
        associations: Sink | None = None,
        events: Sink | None = None,
        policy_config: Config | None = None,
    ) -> None:
        self.config = config if config is not None else ReadConfig()
        self.policy_config = policy_config if policy_config is not None else default_config()
        self.policy = PolicyEngine(self.policy_config)
        self.counters = SensorCounters()
        self.policy.move_decisions = self.counters.move_decisions
        self.pivots = Pivots.from_config(self.policy_config)
        self.folder = AlertFolder(self.policy_config.fold_window)
        self.alert_sinks: list[Callable[[dict[str, Any]], None]] = []
        # Says one line about an output that failed (once per outage); capture logs JSON.
        self.report: Callable[[str], None] = _say
        self.keep_baseline = True  # `read` keeps it only with --update-baseline
        for sink in (associations, events):
            if isinstance(sink, JsonLines):
                sink.watch(self.counters.output_failures, lambda message: self.report(message))
        if events is not None:
            self.alert_sinks.append(events.write)
        self.syslog = None
        if self.policy_config.syslog is not None:
            from .outputs.syslog import SyslogSender

            self.syslog = SyslogSender(
                self.policy_config.syslog,
                self.counters.output_failures,
                lambda message: self.report(message),
            )
            self.alert_sinks.append(self.syslog.write)
        self._next_expire = 0.0
        self._other_open: set[int] = set()
        self.dissectors = tuple(dissectors)
        self._heads = heads_expression(self.dissectors)
        self.notes: list[str] = []
        self.engine = FlowEngine(
            self.dissectors, self._on_event, self._on_close, self.config.engine
        )
        # The exact set followed, of any size; libpcap or the kernel admits a superset.
        self.followed = Followed(self._heads)
        self.engine.forget = self._forget
        self._probe_new = True  # single pass: new flows' first payloads are probed here
        self.reinstall: Callable[[], None] | None = None  # a one-pass source's filter
        self._live = False
        self.use_fast = True  # the compiled second pass, when built (tests turn it off)
        self.reinstall_due = False
        # Every ended association or connection goes to each of these (JSON lines, Zeek log).
        self.record_sinks: list[Callable[[dict[str, Any]], None]] = []
        if associations is not None:
            self.record_sinks.append(associations.write)
        self.events = events
        # --alert-pcap: the associations that raised an alert, by id(session) -> rule ids
        self.alert_pcaps: AlertPcaps | None = None
        self._alerting: dict[int, set[str]] = {}
        # --alert-pcap live and from standard input: packets kept as they pass (livepcap.py)
        self.live_pcaps: LiveAlertPcaps | None = None
        self._live_feed: LiveAlertPcaps | None = None  # what feed() hands packets to now
        # Ended associations with a decision still to come (a C-MOVE): their alert pcap
        # target waits for it. id(session) -> (session, info, requestor, acceptor, rules)
        self._held: dict[int, tuple[Session, FlowInfo, Any, Any, set[str]]] = {}
        self.talkers: dict[tuple[str, str, int], Talker] = {}
        self.cut_offs: list[str] = []
        self.files = 0
        self.sessions_closed = 0
        self.started = time.monotonic()
        self.last_ts = 0.0

    # -- reading --------------------------------------------------------------------

    def read(self, capture: OfflineCapture, progress: Progress | None = None) -> None:
        """Read one capture; flows go on across files (rotated captures split associations).

        A file is read twice. The first pass lets libpcap admit only heads: segments that
        could start an association or carry a command mid-stream, and payloads of 1-9 bytes
        (a head cut into tiny segments). Heads that pass the probe name a service or a
        connection. The second pass admits heads and the ports of what is followed; Python
        keeps the exact set, so every followed flow is seen from its first packet. Standard
        input allows one pass over all of TCP, where the engine probes every flow (so a
        head that arrives out of order is still found).
        """
        self.files += 1
        # A file is read again for --alert-pcap (AlertPcaps); standard input keeps its
        # packets as they pass, like a live source.
        self._live_feed = self.live_pcaps if capture.is_stdin else None
        counting = capture.start_count()
        decode = capture.decoder()
        result = ReadResult()
        unfiltered = self._why_unfiltered(capture)
        if unfiltered is not None:
            # libpcap cannot pick heads out of this capture: every frame comes to Python,
            # where it is decoded (and counted by drop reason) like any other.
            self.notes.append(f"{capture.path}: {unfiltered}; read without a BPF prefilter")
            self._probe_new = True
            self.engine.admit = self._admit_any
            self.feed(capture.packets(None, result, progress), decode)
            self._note_cut(capture, result)
        elif capture.passes_allowed >= 2:
            heads = ReadResult()
            first_pass = self.followed.first_pass(capture.linktype)
            self._collect_heads(capture.packets(first_pass, heads, progress), decode)
            self._note_cut(capture, heads)
            if self.followed:
                self._probe_new = False  # the first pass has decided every head
                self.engine.admit = self._admit
                if self._fast_pass(capture, decode, progress):
                    return self._counted(capture, counting, result)
                expr = self.followed.expression(capture.linktype)
                self.followed.installed()
                self.feed(capture.packets(expr, result, progress), decode)
        else:
            # One pass over every TCP segment: a flow's packets before its first head
            # (handshake, reordering) must reach the engine, which probes every flow.
            self._probe_new = True
            self.engine.admit = self._admit_any
            if self.live_pcaps is not None:
                self.live_pcaps.linktype = capture.linktype
            all_tcp = all_tcp_filter(capture.linktype)
            self.feed(capture.packets(all_tcp, result, progress), decode)
            self._note_cut(capture, result)
        self._counted(capture, counting, result)

    def _counted(
        self, capture: OfflineCapture, counting: Callable[[], int | None], result: ReadResult
    ) -> None:
        counted = counting()
        self.counters.packets += counted if counted is not None else result.packets
        self.counters.capture_file_bytes += capture.size

    def _fast_pass(
        self,
        capture: OfflineCapture,
        decode: Callable[[float, bytes], Any],
        progress: Progress | None,
    ) -> bool:
        """The second pass in C (fastpath.c) when it is built and the file suits it."""
        if not (self.use_fast and fastread.available()) or capture.linktype != ETHERNET:
            return False
        if capture.user_bpf:
            return False  # read --bpf: libpcap applies the user's filter
        followed = self.followed
        services = {fastread.endpoint(ip, port) for ip, port in followed.services}
        flows = {
            fastread.flow_key(fastread.endpoint(a, pa), fastread.endpoint(b, pb), vlan)[0]
            for (a, pa, b, pb), vlan in followed.flows.items()
        }
        try:
            reader = fastread.FastReader(capture.path, services, flows)
        except (OSError, ValueError):
            return False  # pcapng and the like: libpcap reads them
        engine = self.engine
        engine.fast = reader
        try:
            self.feed(reader.packets(engine.fast_report, progress), decode)
        finally:
            engine.fast_release()
        return True

    def _forget(self, key: tuple[str, int, str, int]) -> None:
        """The engine stopped looking at a connection."""
        self.followed.drop_flow(key)
        if self.live_pcaps is not None:
            self.live_pcaps.forget(key)

    def keep_alert_packets(self, directory: str, limits: Any = None) -> LiveAlertPcaps:
        """--alert-pcap where packets pass once (live, standard input): keep them as they do."""
        live = LiveAlertPcaps(directory, limits, self.pivots.community_id)
        live.report = lambda message: self.report(message)
        live.failures = self.counters.output_failures
        rule = self.policy_config.rules.get("move-unknown-destination")
        if rule is not None:
            live.decide_within = float(rule.params.get("decide_within", 30.0))
        self.live_pcaps = self._live_feed = live
        return live

    def follow_all(self) -> None:
        """A live source whose kernel filter admits all of TCP: the engine probes every flow."""
        self.followed.max_services = LIVE_MAX_SERVICES
        self._probe_new = True
        self.engine.admit = self._admit_any

    def follow_live(
        self,
        sources: Sequence[tuple[int, Callable[[str], None]]],
        ports: frozenset[int] = frozenset(),
    ) -> None:
        """Make live sources' kernel filters follow what this pipeline follows.

        ``sources``: (link type, install a BPF expression) for each interface. ``ports`` are
        admitted from the start, with the usual DICOM ports: a service elsewhere loses the
        packets that arrive between its first head and the new filter (counted as late).
        """
        self._probe_new = True
        self._live = True
        self.followed.max_services = LIVE_MAX_SERVICES
        self.engine.admit = self._admit
        self.followed.base_ports = PLAIN_DICOM_PORTS | ports
        last: dict[int, str] = {}
        admitted: set[int] = set()

        def reinstall() -> None:
            # Grow only: a narrower filter would gain little and reopen a reinstall window.
            ports = set(self.followed.ports)
            if last and ports <= admitted:
                return
            admitted.clear()
            admitted.update(ports)
            for i, (linktype, setfilter) in enumerate(sources):
                expr = self.followed.expression(linktype, any_tags=True)
                if last.get(i) != expr:
                    setfilter(expr)
                    last[i] = expr
                    self.followed.installed()

        self.reinstall = reinstall
        reinstall()

    @staticmethod
    def _why_unfiltered(capture: OfflineCapture) -> str | None:
        """Why this capture cannot be prefiltered in BPF, if it cannot."""
        if capture.mixed:
            types = ", ".join(str(t) for t in sorted(set(capture.linktypes)))
            return f"interfaces of different link types ({types}), read with dpkt"
        if capture.linktype not in SUPPORTED_LINKTYPES:
            return f"link type {capture.linktype} is not one the sensor decodes"
        if capture.snaplen is not None and capture.snaplen < MIN_SNAPLEN:
            return f"snaplen {capture.snaplen} is too short to show a TCP payload"
        return None

    def _collect_heads(self, packets: Any, decode: Callable[[float, bytes], Any]) -> None:
        """First pass: the services and connections whose heads pass the probe."""
        stats = self.engine.stats
        followed = self.followed
        for ts, data, wire in packets:
            seg = decode(ts, data)
            if seg.__class__ is not Segment:
                stats.drop(seg)  # e.g. TCP fragments, which the heads filter lets through
            elif seg.truncated_by and wire == len(data):
                stats.drop(DropReason.BAD_IP_HEADER)
            else:
                # A tagged head, even of a service already followed, means the second
                # pass must look under VLAN tags too.
                followed.tagged = followed.tagged or seg.vlan is not None
                if not followed.covers(seg) and not self.tls_hello(seg):
                    self._admit_head(seg)

    def tls_hello(self, seg: Segment) -> bool:
        """A TLS ClientHello: run the tls-on-dicom-port check; True if it was one."""
        payload = seg.payload
        if len(payload) < 6 or not payload.startswith(b"\x16\x03") or payload[5] != 1:
            return False
        for finding in self.policy.on_tls_hello(seg):
            self._finding(finding)
        return True

    def _admit(self, seg: Segment) -> bool:
        """The engine asks about a segment of a flow it does not track: follow it?"""
        if self._probe_new and seg.payload.startswith(b"\x16\x03") and self.tls_hello(seg):
            return False  # reported; a TLS connection is not DICOM
        if self.followed.covers(seg):
            return True
        if not self._probe_new or not seg.payload:
            return False
        before = self.followed.ports
        if not self._admit_head(seg):
            return False
        if self._live and self.followed.ports != before:
            # Live, packets of this flow the old filter turned away are lost.
            self.followed.stats.late_flows += 1
            self.reinstall_due = True
        return True

    def reinstall_if_due(self) -> None:
        """Install the grown filter; live sources call this once their ring is read empty.

        libpcap drains the socket while it swaps kernel filters, so swapping with packets
        still queued would lose them.
        """
        if self.reinstall_due and self.reinstall is not None:
            self.reinstall_due = False
            self.reinstall()

    def _admit_any(self, seg: Segment) -> bool:
        """Without a prefilter the engine probes every new flow itself; TLS is still checked."""
        return not (seg.payload.startswith(b"\x16\x03") and self.tls_hello(seg))

    def _admit_head(self, seg: Segment) -> bool:
        """Follow a head's service or connection unless the probe rules it out."""
        payload = seg.payload
        if not payload:
            return False
        _, answer = first_match(self.dissectors, payload)
        if answer.verdict is Verdict.NO_MATCH:
            return False
        followed = self.followed
        first = payload[0]
        if answer.verdict is Verdict.MATCH and first == 1:
            followed.add_service(seg.dst, seg.dport)  # the acceptor of an A-ASSOCIATE-RQ
        elif answer.verdict is Verdict.MATCH and first == 2:
            followed.add_service(seg.src, seg.sport)  # the sender of an A-ASSOCIATE-AC
        else:
            if len(payload) <= TINY_PAYLOAD:
                followed.stats.tiny_heads += 1  # the probe needs more: follow until it decides
            followed.add_flow(flow_key(seg), seg.vlan)
        followed.tagged = followed.tagged or seg.vlan is not None
        return True

    def _note_cut(self, capture: OfflineCapture, result: ReadResult) -> None:
        if result.cut_off is not None:
            self.cut_offs.append(f"{capture.path}: {result.cut_off}")
            self.counters.captures_cut_off += 1

    def feed(self, packets: Iterable[Packet], decode: Callable[[float, bytes], Any]) -> None:
        """Feed packets to the engine, which asks the followed set about new flows.

        The one packet loop of the sensor: offline passes and live interfaces call it alike.
        """
        engine = self.engine
        stats = engine.stats
        process = engine.process
        advance = engine.advance
        live = self._live_feed
        ts = self.last_ts
        for ts, data, wire in packets:
            seg = decode(ts, data)
            if seg.__class__ is not Segment:
                stats.packets += 1
                stats.drop(seg)
                continue
            if seg.truncated_by and wire == len(data):
                # IP claims more than the frame held, yet nothing was cut: a lie, not a snaplen.
                stats.packets += 1
                stats.drop(DropReason.BAD_IP_HEADER)
                continue
            process(seg)
            if live is not None:
                live.packet(seg, data, wire, engine.last_flow)
            advance(ts)
            if ts >= self._next_expire:
                self._next_expire = ts + 1.0
                self._alerts(self.folder.expire(ts))
                self._late(self.policy.tick(ts))
                if live is not None:
                    live.expire(ts)
        self.last_ts = max(self.last_ts, ts, engine.fast_last_ts)
        self.counters.last_packet_ts = self.last_ts

    def tick(self, now: float) -> None:
        """Wall-clock time passes with no packet (live capture): expire flows and folds."""
        self.engine.advance(now)
        self._alerts(self.folder.expire(now))
        self._late(self.policy.tick(now))
        if self.live_pcaps is not None:
            self.live_pcaps.expire(now)

    def reconfigure(self, config: Config) -> None:
        """Use a new zone and rule config from now on; state is kept."""
        self.policy_config = config
        self.policy.reconfigure(config)
        self.pivots = Pivots.from_config(config, self.pivots.interface)
        self.folder.window = config.fold_window

    def finish(self) -> None:
        """End of input: close every open association as capture-ended, flush folded alerts."""
        self.engine.finish(self.last_ts)
        # Decisions still pending (a C-MOVE's destination) are made with what is known.
        self._late(self.policy.flush(self.last_ts))
        self._alerts(self.folder.flush())
        if self.live_pcaps is not None:
            self.live_pcaps.finish()
        self.save_baseline()
        if self.syslog is not None:
            self.syslog.close()

    def save_baseline(self) -> None:
        """Keep the learned baseline in its state file; a failure is counted and said once."""
        if not self.keep_baseline:
            return
        baseline = self.policy.baseline
        before = baseline.save_failures
        problem = baseline.save()
        self.counters.output_failures["baseline"] += baseline.save_failures - before
        if problem is not None:
            self.report(problem)

    def _alerts(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.pivots.enrich(event)
            for sink in self.alert_sinks:
                sink(event)

    def _finding(self, finding: Finding, session: Session | None = None) -> None:
        """Count a finding (every repeat counts) and write what the folder lets out."""
        self.counters.alerts[(finding.rule.id, finding.rule.severity.value)] += 1
        if self.alert_pcaps is not None:
            # The association whose event decided it, and the one it is about (a C-MOVE
            # decided at its sub-association or later), each go to --alert-pcap.
            for subject in (session, finding.session):
                if subject is None:
                    continue
                held = self._held.get(id(subject))
                if held is not None:
                    held[4].add(finding.rule.id)
                else:
                    self._alerting.setdefault(id(subject), set()).add(finding.rule.id)
        live = self.live_pcaps
        if live is not None:
            # The association the finding is about (its view), and the one whose event
            # decided it when that is another (a C-MOVE's sub-association).
            rules, subject = {finding.rule.id}, finding.session
            if subject is not None:
                live.alerted(subject, rules, finding.view)
            if session is not None and session is not subject:
                live.alerted(session, rules, finding.view if subject is None else None)
            if subject is None and session is None:
                live.alerted_late(finding.view, finding.rule.id)
        self._alerts(self.folder.offer(finding))

    def _late(self, findings: list[Finding]) -> None:
        """Findings decided after their trigger (PolicyEngine.tick / flush)."""
        for finding in findings:
            self._finding(finding)
        if self._held:
            self._release_held()

    def _release_held(self) -> None:
        """Ended associations whose pending decisions are all made: to --alert-pcap."""
        for key, (session, info, requestor, acceptor, rules) in list(self._held.items()):
            if not self.policy.pending(session):
                del self._held[key]
                if rules:
                    self._alert_target(info, rules, requestor, acceptor)

    # -- sinks ----------------------------------------------------------------------

    def _on_event(self, info: FlowInfo, session: Session, event: Any) -> None:
        counters = self.counters
        cls = event.__class__
        if not isinstance(session, DicomSession):
            self._on_other_event(info, session, event)
            return
        for finding in self.policy.on_event(info, session, event):
            self._finding(finding, session)
        if self._held:
            self._release_held()
        if cls is DimseMessage:
            command = event.command
            status = command.status_class
            if self.live_pcaps is not None and command.name == "C-MOVE-RQ":
                self.live_pcaps.moved(session)
            counters.dimse[(command.name, status.label if status is not None else "none")] += 1
        elif cls is AssociationRequested and isinstance(session, DicomSession):
            (req_ip, _), (acc_ip, acc_port), _ = endpoints(info, session.state)
            if (acc_ip, acc_port) not in self.followed.services:
                # Found through a mid-stream or tiny head: follow the service from now on.
                before = self.followed.ports
                self.followed.add_service(acc_ip, acc_port)
                if self._live and self.followed.ports != before:
                    self.reinstall_due = True
            zones = self.policy_config.zones
            pair = (zones.lookup(req_ip).name, zones.lookup(acc_ip).name)
            counters.association_requests[pair] += 1
        elif cls is Anomaly or cls is GapDetected:
            reason = event.reason.value if cls is Anomaly else "gap"
            counters.anomalies[reason] += 1
            if self.events is not None and isinstance(session, DicomSession):
                self.events.write(self.pivots.enrich(anomaly_event(info, session, event)))
        elif cls is OverlapMismatch:
            counters.anomalies[StreamAnomaly.OVERLAP_MISMATCH.value] += event.count
            # One anomaly event per association (its first); the record carries the count.
            if event.first and self.events is not None:
                self.events.write(self.pivots.enrich(anomaly_event(info, session, event)))

    def _record(self, record: dict[str, Any]) -> None:
        self.pivots.enrich(record)
        for sink in self.record_sinks:
            sink(record)

    def _on_other_event(self, info: FlowInfo, session: Session, event: Any) -> None:
        """An event of a plug-in dissector: counted; the first one runs the generic policy."""
        anomaly = hasattr(event, "reason") or event.__class__ is OverlapMismatch
        kind = "anomaly" if anomaly else "message"
        self.counters.plugin_events[(info.protocol, kind)] += 1
        key = id(session)
        if key not in self._other_open and isinstance(session, Summarized):
            self._other_open.add(key)
            for finding in self.policy.on_generic(
                info, session, getattr(event, "ts", info.last_ts)
            ):
                self._finding(finding, session)

    def _on_close(self, info: FlowInfo, session: Session, reason: CloseReason) -> None:
        self.sessions_closed += 1
        if not isinstance(session, DicomSession):
            self._other_open.discard(id(session))
            if isinstance(session, Summarized):
                record = build_generic_record(info, session, reason.value)
                zones = self.policy_config.zones
                pair = (
                    zones.lookup(record["source"]["ip"]).name,
                    zones.lookup(record["destination"]["ip"]).name,
                )
                self.counters.plugin_connections[(info.protocol, *pair)] += 1
                self._record(record)
                rules = self._alerting.pop(id(session), None)
                if rules and self.alert_pcaps is not None:
                    requestor, acceptor = generic_endpoints(info, session.originator())
                    self._alert_target(info, rules, requestor, acceptor)
            if self.live_pcaps is not None:
                self.live_pcaps.ended(session, info.last_ts)
            return
        for finding in self.policy.on_close(info, session):
            self._finding(finding, session)
        rules = self._alerting.pop(id(session), None)
        if self.alert_pcaps is not None:
            requestor, acceptor, _ = endpoints(info, session.state)
            if self.policy.pending(session):
                # A C-MOVE of it is still undecided: its pcap waits for the decision.
                self._held[id(session)] = (session, info, requestor, acceptor, rules or set())
            elif rules:
                self._alert_target(info, rules, requestor, acceptor)
        if self.live_pcaps is not None:
            self.live_pcaps.ended(session, info.last_ts)
        record = build_record(info, session)
        dicom = record["dicom"]
        zones = self.policy_config.zones
        src_zone = zones.lookup(record["source"]["ip"]).name
        dst_zone = zones.lookup(record["destination"]["ip"]).name
        assoc = dicom["association"]
        self.counters.associations[(assoc["result"], assoc["end"], src_zone, dst_zone)] += 1
        by_dir = dicom["pdata"]["bytes_by_direction"]
        for side in ("requestor", "acceptor"):
            self.counters.pdata_bytes[(src_zone, dst_zone, side)] += by_dir[side]
        key = (record["source"]["ip"], record["destination"]["ip"], record["destination"]["port"])
        talker = self.talkers.get(key)
        if talker is None:
            if len(self.talkers) >= MAX_TALKERS:
                key = ("other", "other", 0)  # beyond the cap, pairs are summed together
            talker = self.talkers.setdefault(key, Talker())
        talker.associations += 1
        talker.pdata_bytes += dicom["pdata"]["bytes"]
        self._record(record)

    def _alert_target(
        self,
        info: FlowInfo,
        rules: set[str],
        requestor: tuple[str, int],
        acceptor: tuple[str, int],
    ) -> None:
        """An association that alerted has ended: its packets go to --alert-pcap."""
        if self.alert_pcaps is None or info.protocol not in ("dicom", "hl7"):
            return
        cid = self.pivots.community_id(*requestor, *acceptor)
        target = AlertTarget(
            info.protocol, requestor, acceptor, info.first_ts, info.last_ts, cid, rules
        )
        self.alert_pcaps.add_target(target)

    @property
    def active_associations(self) -> int:
        """Associations being followed now."""
        return self.engine.stats.flows_matched - self.sessions_closed

    def results(self) -> Counter[str]:
        """Associations by result."""
        out: Counter[str] = Counter()
        for (result, _, _, _), n in self.counters.associations.items():
            out[result] += n
        return out
