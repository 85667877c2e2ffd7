"""The one pipeline: packets from any source through the flow engine, policy and outputs.

Offline files (two prefiltered passes), standard input (one pass), a live interface and
each capture worker all feed the same :class:`Pipeline`; only the source differs.
"""

from __future__ import annotations

import copyreg
import dataclasses
import operator
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dissectors.base import (
    CloseReason,
    Direction,
    Dissector,
    Session,
    Summarized,
    Verdict,
    first_match,
)
from dissectors.dicom.association import AssociationState, DicomSession
from dissectors.dicom.constants import CommandField
from dissectors.dicom.dimse import DimseCommand
from dissectors.dicom.events import (
    Anomaly,
    AssociationAccepted,
    AssociationRejected,
    AssociationRequested,
    DimseMessage,
    GapDetected,
)
from dissectors.dicom.items import PresentationContextAC, PresentationContextRQ
from dissectors.dicom.pdu import AssociateAC, AssociateRQ

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
from .outputs.livepcap import Ends as LiveEnds
from .outputs.livepcap import LiveAlertPcaps, ends_key
from .outputs.pivots import Pivots
from .outputs.records import build_generic_record, build_record
from .policy.alerts import AlertFolder
from .policy.config import Config, default_config
from .policy.engine import PolicyEngine
from .policy.findings import Finding
from .policy.zones import Trust, ZoneMap

Progress = Callable[[int], None]


def _say(message: str) -> None:
    print(f"dicom-sensor: {message}", file=sys.stderr, flush=True)


MAX_TALKERS = 10_000
# The session events the policy looks at (PolicyEngine.on_event ignores the others).
_POLICY_EVENTS = frozenset(
    (AssociationRequested, AssociationAccepted, AssociationRejected, DimseMessage, OverlapMismatch)
)
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
        # Where the policy's inputs go: judged here, or sent to the workers' parent.
        self.outbox: PolicyOutbox | None = None
        self._policy_event: Callable[[int, FlowInfo, Any, Any], None] = self.judge_event
        self._policy_close: Callable[[int, FlowInfo, Any], None] = self.judge_close
        self._policy_generic: Callable[[int, FlowInfo, Any, float], None] = self.judge_generic
        self._policy_tls: Callable[[Segment], None] = self.judge_tls
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
        # Live: the compiled loop on Ethernet interfaces (compile_live), when it is used.
        self.live_reader: fastread.LiveReader | None = None
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
        # The workers' parent: each finding about a session also goes here (PcapVerdicts),
        # to the worker that keeps the session's packets for --alert-pcap.
        self.verdicts: Callable[[Finding, object | None], None] | None = None
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
        self._policy_tls(seg)
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

    def compile_live(self) -> bool:
        """Live: let the compiled loop absorb data-set segments and ACKs (fastread.LiveReader).

        Not with --alert-pcap, whose buffers keep every packet of an association: there
        every packet goes through Python, as without the extension.
        """
        if not (self.use_fast and fastread.available()) or self.live_pcaps is not None:
            return False
        self.live_reader = self.engine.fast = fastread.LiveReader()
        return True

    def live_packets(self, source: Any, limit: int) -> Iterable[Packet]:
        """Up to ``limit`` packets waiting on a live source, through the compiled loop if it
        is on and the interface gives Ethernet frames."""
        reader = self.live_reader
        if reader is None or source.linktype != ETHERNET:
            packets: Iterable[Packet] = source.packets(limit)
            return packets
        return source.compiled_packets(reader, self.engine.fast_report, limit)  # type: ignore[no-any-return]

    def _live_progress(self, reader: fastread.LiveReader) -> None:
        """Account what the compiled live loop absorbed since it last reported: its packets'
        time is the capture's, as if Python had seen them."""
        reader.progress(self.engine.fast_report)
        self.last_ts = max(self.last_ts, self.engine.fast_last_ts)
        self.counters.last_packet_ts = self.last_ts

    def tick(self, now: float) -> None:
        """Wall-clock time passes with no packet (live capture): expire flows and folds."""
        if self.live_reader is not None:
            # What the compiled loop absorbed since its last report: counters and idle
            # times are current before anything is judged or expired.
            self._live_progress(self.live_reader)
        if self.outbox is not None:
            self.outbox.passed(now)
        self.engine.advance(now)
        self._alerts(self.folder.expire(now))
        self._late(self.policy.tick(now))
        if self.live_pcaps is not None:
            self.live_pcaps.expire(now)

    def reconfigure(self, config: Config) -> None:
        """Use a new zone and rule config from now on; state is kept."""
        self.policy_config = config
        self.policy.reconfigure(config)
        if self.outbox is not None:
            self.outbox.reconfigure(config.zones)
        self.pivots = Pivots.from_config(config, self.pivots.interface)
        self.folder.window = config.fold_window

    def finish(self, live_pcaps: bool = True) -> None:
        """End of input: close every open association as capture-ended, flush folded alerts.

        ``live_pcaps=False`` (a capture worker): live alert pcaps stay open for the verdicts
        the parent has still to send; the worker finishes them itself.
        """
        if self.live_reader is not None:
            self._live_progress(self.live_reader)  # absorbed since the last tick
        self.engine.finish(self.last_ts)
        # Decisions still pending (a C-MOVE's destination) are made with what is known.
        self._late(self.policy.flush(self.last_ts))
        self._alerts(self.folder.flush())
        if self.live_pcaps is not None and live_pcaps:
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

    def _finding(self, finding: Finding, session: object | None = None) -> None:
        """Count a finding (every repeat counts) and write what the folder lets out."""
        self.counters.alerts[(finding.rule.id, finding.rule.severity.value)] += 1
        if self.verdicts is not None:
            self.verdicts(finding, session)
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

    # -- the policy's inputs ---------------------------------------------------------
    #
    # Everything that spans connections (the policy's windows, the baseline, the inventory,
    # alert folding) runs once per sensor: here, or in the workers' parent, which calls
    # these with what the workers' outboxes sent. ``key`` names the session.

    def remote_policy(self, outbox: PolicyOutbox) -> None:
        """Send the policy's inputs to ``outbox`` instead of judging them here (a worker)."""
        self.outbox = outbox
        outbox.interface = lambda: self.pivots.interface
        outbox.zones = self.policy_config.zones
        self._policy_event = outbox.event
        self._policy_close = outbox.close
        self._policy_generic = outbox.generic
        self._policy_tls = outbox.tls

    def judge_event(self, key: int, info: FlowInfo, session: Any, event: Any) -> None:
        """Findings of one DICOM session event."""
        for finding in self.policy.on_event(info, session, event):
            self._finding(finding, session)
        if self._held:
            self._release_held()

    def judge_close(self, key: int, info: FlowInfo, session: Any) -> None:
        """Findings of a DICOM association's end."""
        for finding in self.policy.on_close(info, session):
            self._finding(finding, session)

    def judge_generic(self, key: int, info: FlowInfo, session: Any, ts: float) -> None:
        """Findings of a plug-in session's first event."""
        for finding in self.policy.on_generic(info, session, ts):
            self._finding(finding, session)

    def judge_tls(self, seg: Segment) -> None:
        """Findings of a TLS ClientHello."""
        for finding in self.policy.on_tls_hello(seg):
            self._finding(finding)

    def judge_time(self, ts: float) -> None:
        """Time has reached ``ts`` for the policy (the workers' parent): fold windows end and
        late decisions are made, at most once a second, as :meth:`feed` does."""
        if ts > self.last_ts:
            self.last_ts = ts  # what finish() decides what is still pending at
        if ts >= self._next_expire:
            self._next_expire = ts + 1.0
            self._alerts(self.folder.expire(ts))
            self._late(self.policy.tick(ts))

    # -- sinks ----------------------------------------------------------------------

    def _on_event(self, info: FlowInfo, session: Session, event: Any) -> None:
        counters = self.counters
        cls = event.__class__
        if not isinstance(session, DicomSession):
            self._on_other_event(info, session, event)
            return
        if cls in _POLICY_EVENTS:
            self._policy_event(id(session), info, session, event)
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

    def write_record(self, record: dict[str, Any]) -> None:
        """A record a capture worker built (and enriched): to every record output."""
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
            self._policy_generic(key, info, session, getattr(event, "ts", info.last_ts))

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
        self._policy_close(id(session), info, session)
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


# -- one policy for several workers -------------------------------------------------------
#
# A capture worker decodes and follows its share of the flows; what the policy reads of
# each session event goes, time-stamped, to the parent, which merges the workers' inputs in
# time order and judges them with one Pipeline (one policy engine, baseline, inventory and
# alert folder). An input is (order, kind, session key, ...): ``order`` never decreases
# within a worker, and a worker's watermark promises that its later inputs come after it.

# What the policy reads of a DICOM session: requestor (0, 1 or None), first and last times,
# P-DATA bytes each way, and the PDUs (detected_by, request, accept, reject) when changed.
_Facts = tuple[int | None, float | None, float | None, int, int, tuple[Any, ...] | None]
_DIRECTIONS = (Direction.ORIGIN, Direction.PEER)
# A DIMSE command travels as the tuple of its fields (its decoding anomalies stay behind:
# they are counted where the session is); pickling a tuple of plain values is cheap.
_COMMAND_FIELDS = tuple(f.name for f in dataclasses.fields(DimseCommand) if f.name != "anomalies")
_command_values = operator.attrgetter(*_COMMAND_FIELDS)


def _by_constructor(cls: type) -> None:
    """Pickle ``cls`` (a dataclass whose constructor only stores its fields) as a call of
    its constructor with its field values. The default for slotted dataclasses walks the
    fields in Python on both sides, which made an A-ASSOCIATE-RQ with a hundred presentation
    contexts cost ~150 us to pickle and ~250 us to load."""
    names = tuple(f.name for f in dataclasses.fields(cls))
    if not names:
        return
    values = operator.attrgetter(*names)
    if len(names) == 1:
        copyreg.pickle(cls, lambda obj: (cls, (values(obj),)))
    else:
        copyreg.pickle(cls, lambda obj: (cls, values(obj)))


def _pickle_inputs_by_constructor() -> None:
    """What policy inputs carry: the PDUs and their items, session events, flow identity."""
    from dissectors.dicom import events, items, pdu

    for module in (pdu, items, events):
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and obj.__module__ == module.__name__
                and dataclasses.is_dataclass(obj)
                and not hasattr(obj, "__post_init__")
            ):
                _by_constructor(obj)
    for cls in (DimseCommand, FlowInfo, Segment, OverlapMismatch):
        _by_constructor(cls)


_pickle_inputs_by_constructor()


# A-ASSOCIATE-RQ/-AC travel as (kind, fields..., contexts) with their presentation
# contexts (30 in a storescu proposal, 2-3 transfer syntaxes each) named by a number once a
# worker has sent the same list: a modality proposes the same list on every association.
MAX_CONTEXT_LISTS = 1024  # per worker; beyond it a list is sent whole each time (correct, slower)
_ASSOCIATE = {"rq": AssociateRQ, "ac": AssociateAC}
_CONTEXT_CLASS = {"rq": PresentationContextRQ, "ac": PresentationContextAC}
_CONTEXT_ROW = {
    kind: operator.attrgetter(*(f.name for f in dataclasses.fields(cls)))
    for kind, cls in _CONTEXT_CLASS.items()
}
_ASSOCIATE_EVENTS = (AssociationRequested, AssociationAccepted, AssociationRejected)


def _same_identity(a: FlowInfo, b: FlowInfo) -> bool:
    """The same flow identity (first_ts, vlan and peer follow from the flow's key)."""
    return (
        a.origin_port == b.origin_port
        and a.origin_ip == b.origin_ip
        and a.client_port == b.client_port
        and a.client_ip == b.client_ip
        and a.syn_seen == b.syn_seen
    )


# DIMSE messages the parent needs every one of: the queries and retrievals it judges, and
# the C-MOVE responses that decide a move (PolicyEngine._dimse).
_EVERY_DIMSE = frozenset(
    {CommandField.C_FIND_RQ, CommandField.C_MOVE_RQ, CommandField.C_GET_RQ, CommandField.C_MOVE_RSP}
)
MAX_SOP_MARKS = 64  # (direction, SOP class) pairs remembered per association; past it, all sent
_UNMARKED: set[Any] = set()


class PolicyOutbox:
    """A worker's policy inputs, collected until the worker sends them to its parent.

    What a session's earlier inputs already said (its flow identity, its PDUs) is not
    sent again: the parent keeps it per session until the session's close. Nor is the
    interface the packets came in on (what the parent's alerts name as
    ``observer.ingress.interface.name``): an ``interface`` input goes ahead of the first
    input from another one.

    Nor is a DIMSE message that cannot change a finding (with ``zones`` set): of the other
    messages (C-STORE, C-ECHO, N-...) of an association that does not cross the perimeter,
    the parent needs only the first of each direction and SOP class, for the inventory;
    its byte counts travel with its next input and its close. Only the first after the
    sender's node is surely in the inventory, though: the association's own A-ASSOCIATE-RQ
    (or -AC, for the acceptor's messages) made it. A message of a side whose PDU was not
    seen (mid-stream) is always sent: another association may add that node at any time,
    and from then on the message's SOP class is the node's. An association with exactly
    one end in an external zone sends every message: the bulk-outbound windows sum its
    bytes at each one. What is left out is counted in ``coalesced``.
    """

    def __init__(self) -> None:
        self.inputs: list[tuple[Any, ...]] = []
        self.clock = 0.0  # the order of the latest input, or the latest watermark
        # The interface of the packet being processed (None: a timer's, or not known);
        # Pipeline.remote_policy sets it, and the one last sent.
        self.interface: Callable[[], str | None] = lambda: None
        self._interface: str | None = None
        self.zones: ZoneMap | None = None  # None: every DIMSE message is sent
        self.coalesced = 0  # DIMSE messages not sent (nothing the policy reads in them)
        # key -> (direction, SOP class) sent, or None: every message of it is sent
        self._marks: dict[int, set[tuple[int, str | None]] | None] = {}
        # key -> (flow info, request, accept, reject) as last sent
        self._sent: dict[int, tuple[FlowInfo, Any, Any, Any]] = {}
        self._context_lists: dict[tuple[str, tuple[Any, ...]], int] = {}

    def _associate(self, kind: str, pdu: Any) -> tuple[Any, ...] | None:
        """An A-ASSOCIATE-RQ/-AC as sent: its fields, its context list or that list's number."""
        if pdu is None:
            return None
        rows = tuple(map(_CONTEXT_ROW[kind], pdu.presentation_contexts))
        contexts: Any = self._context_lists.get((kind, rows))
        if contexts is None:
            number = -1
            if len(self._context_lists) < MAX_CONTEXT_LISTS:
                number = self._context_lists[(kind, rows)] = len(self._context_lists)
            contexts = (number, rows)
        return (kind, pdu.protocol_version, pdu.called_ae_title, pdu.calling_ae_title,
                pdu.application_context_name, contexts, pdu.user_information,
                pdu.unknown_items, pdu.anomalies)  # fmt: skip

    def _order(self, ts: float | None) -> float:
        if ts is not None and ts > self.clock:
            self.clock = ts
        return self.clock

    def _input(self, ts: float | None) -> float:
        """The order of an input about to be added (after its interface, when that changed)."""
        if ts is not None and ts > self.clock:
            self.clock = ts
        interface = self.interface()
        if interface != self._interface:
            self._interface = interface
            self.inputs.append((self.clock, "interface", 0, interface))
        return self.clock

    def _facts(self, key: int, info: FlowInfo, session: Any) -> tuple[FlowInfo | None, _Facts]:
        st = session.state
        request, accept, reject = st.request, st.accept, st.reject
        last = self._sent.get(key)
        pdus: tuple[Any, ...] | None = None
        new_info: FlowInfo | None = info
        if last is None or last[1] is not request or last[2] is not accept or last[3] is not reject:
            rq = self._associate("rq", request) if last is None or last[1] is not request else 0
            ac = self._associate("ac", accept) if last is None or last[2] is not accept else 0
            pdus = (st.detected_by, rq, ac, reject)  # 0: as before
        if last is not None and _same_identity(last[0], info):
            new_info = None
        self._sent[key] = (info, request, accept, reject)
        requestor = st.requestor
        c = st.counters
        facts = (
            None if requestor is None else int(requestor),
            st.first_ts,
            st.last_ts,
            c[0].pdata_bytes,
            c[1].pdata_bytes,
            pdus,
        )
        return new_info, facts

    def _crossing(self, info: FlowInfo, zones: ZoneMap) -> bool:
        """Whether exactly one end of the flow is in an external zone."""
        a = zones.lookup(info.origin_ip).trust is Trust.EXTERNAL
        return a is not (zones.lookup(info.peer_ip).trust is Trust.EXTERNAL)

    def _needed(
        self, key: int, info: FlowInfo, state: AssociationState, event: DimseMessage
    ) -> bool:
        """Whether the parent must see this DIMSE message (see the class)."""
        zones = self.zones
        if zones is None or event.command.command_field in _EVERY_DIMSE:
            return True
        marks = self._marks.get(key, _UNMARKED)
        if marks is _UNMARKED:
            marks = self._marks[key] = None if self._crossing(info, zones) else set()
        if marks is None:
            return True
        # The parent's inventory has the sender's node only if some association's RQ or AC
        # made it: this one's, for sure (a node is never dropped), or maybe another's later.
        own = state.request if event.direction == state.requestor else state.accept
        if own is None:
            return True
        mark = (int(event.direction), event.command.sop_class_uid)
        if mark in marks:
            self.coalesced += 1
            return False
        if len(marks) < MAX_SOP_MARKS:
            marks.add(mark)
        return True

    def event(self, key: int, info: FlowInfo, session: Any, event: Any) -> None:
        """A DICOM session event the policy looks at."""
        if event.__class__ is DimseMessage and not self._needed(key, info, session.state, event):
            return
        order = self._input(event.ts)
        new_info, facts = self._facts(key, info, session)
        if event.__class__ is DimseMessage:
            command = _command_values(event.command)
            direction = int(event.direction)
            context = event.context_id
            self.inputs.append(
                (order, "dimse", key, new_info, facts, event.ts, direction, context, command)
            )
        elif event.__class__ not in _ASSOCIATE_EVENTS:
            self.inputs.append((order, "event", key, new_info, facts, event))  # OverlapMismatch
        else:
            # A-ASSOCIATE-RQ, -AC, -RJ: the parent rebuilds the event from the session's PDU.
            kind = _ASSOCIATE_EVENTS.index(event.__class__)
            direction = int(event.direction)
            self.inputs.append(
                (order, "associate", key, new_info, facts, event.ts, direction, kind)
            )

    def close(self, key: int, info: FlowInfo, session: Any) -> None:
        """A DICOM association's end."""
        order = self._input(session.state.last_ts)
        _, facts = self._facts(key, info, session)
        del self._sent[key]
        self._marks.pop(key, None)
        self.inputs.append((order, "close", key, info, facts))

    def generic(self, key: int, info: FlowInfo, session: Any, ts: float) -> None:
        """A plug-in session's first event."""
        originator = session.originator()
        side = None if originator is None else int(originator)
        self.inputs.append((self._input(ts), "generic", key, info, side, ts))

    def tls(self, seg: Segment) -> None:
        """A TLS ClientHello (its payload stays here)."""
        hello = Segment(seg.ts, seg.src, seg.dst, seg.sport, seg.dport, 0, 0, 0, b"", seg.vlan)
        self.inputs.append((self._input(seg.ts), "tls", 0, hello))

    def reconfigure(self, zones: ZoneMap) -> None:
        """New zones (SIGHUP): which associations cross the perimeter is decided again."""
        self.zones = zones
        self._marks.clear()

    def passed(self, ts: float) -> None:
        """Time reached ``ts`` for this worker: a timer's inputs are ordered from it."""
        self._order(ts)

    def take(self, watermark: float) -> tuple[float, list[tuple[Any, ...]]]:
        """(watermark, inputs) to send; no later input is ordered before the watermark."""
        inputs, self.inputs = self.inputs, []
        return self._order(watermark), inputs


class _SessionMirror:
    """The parent's copy of what the policy reads of one worker's DICOM session."""

    __slots__ = ("info", "key", "state", "worker")

    def __init__(self, info: FlowInfo, worker: int = -1, key: int = 0) -> None:
        self.info = info
        self.state = AssociationState("")
        self.worker = worker  # the worker that follows it, and its key there
        self.key = key

    def update(self, info: FlowInfo | None, facts: _Facts, contexts: Any) -> None:
        """Take a worker's facts; ``contexts`` rebuilds the PDUs that came with them."""
        if info is not None:
            self.info = info
        st = self.state
        requestor, st.first_ts, st.last_ts, sent0, sent1, pdus = facts
        st.requestor = None if requestor is None else _DIRECTIONS[requestor]
        st.counters[0].pdata_bytes = sent0
        st.counters[1].pdata_bytes = sent1
        if pdus is not None:
            st.detected_by, rq, ac, st.reject = pdus
            if rq != 0:
                st.request = contexts(rq)
            if ac != 0:
                st.accept = contexts(ac)


class _Originator:
    """The parent's copy of a plug-in session: who started it."""

    __slots__ = ("direction", "info", "key", "worker")

    def __init__(self, direction: Direction | None, info: FlowInfo, worker: int, key: int) -> None:
        self.direction = direction
        self.info = info
        self.worker = worker
        self.key = key

    def originator(self) -> Direction | None:
        return self.direction


# Inputs the parent holds for a worker that has not passed their time; beyond it the
# oldest are judged at once (counted: dicom_sensor_policy_inputs_unordered_total).
MAX_WAITING_INPUTS = 200_000


class PolicyInbox:
    """The parent's side: the workers' inputs merged in time order, judged by one pipeline.

    An input is judged once every worker's watermark has reached its order, so findings
    come out as if one process had seen every packet. A worker that stops sending (wedged,
    or overloaded far beyond the others) would hold everyone's inputs back: beyond
    ``max_waiting`` inputs held, the oldest are judged without waiting for it.

    What an input decides names the interface its worker said the packet came in on
    (``observer.ingress.interface.name``); what time decides names ``timers_interface``
    (capture's only interface, or None), as in one process.
    """

    def __init__(
        self,
        judge: Pipeline,
        workers: int,
        max_waiting: int = MAX_WAITING_INPUTS,
        timers_interface: str | None = None,
    ) -> None:
        self.judge = judge
        self.max_waiting = max_waiting
        self.timers_interface = timers_interface
        self.interfaces: list[str | None] = [None] * workers  # each worker's, as last said
        self.queues: list[list[tuple[Any, ...]]] = [[] for _ in range(workers)]
        self.heads = [0] * workers  # the next input of each queue
        self.watermarks = [float("-inf")] * workers
        self.sessions: dict[tuple[int, int], _SessionMirror] = {}
        self.context_lists: dict[tuple[int, int], tuple[Any, ...]] = {}
        self.judged = 0  # inputs judged
        self.waiting_peak = 0  # most inputs held back at once (a slow worker's lag)

    def receive(self, worker: int, watermark: float, inputs: list[tuple[Any, ...]]) -> None:
        """A worker's batch; judge what every worker has now passed."""
        if inputs:
            queue = self.queues[worker]
            if self.heads[worker] > 1024:  # drop what was judged, now and then
                del queue[: self.heads[worker]]
                self.heads[worker] = 0
            queue.extend(inputs)
        if watermark > self.watermarks[worker]:
            self.watermarks[worker] = watermark
        self._run(min(self.watermarks))

    def done(self, worker: int) -> None:
        """A worker has sent its last input."""
        self.watermarks[worker] = float("inf")
        self._run(min(self.watermarks))

    def lost(self, worker: int) -> int:
        """A worker died: what it sent is judged, its sessions still open are forgotten
        (their close will not come); returns how many there were."""
        self.done(worker)
        gone = [k for k in self.sessions if k[0] == worker]
        for k in gone:
            del self.sessions[k]
        for k in [k for k in self.context_lists if k[0] == worker]:
            del self.context_lists[k]
        return len(gone)

    def waiting(self) -> int:
        """Inputs held until every worker has passed their time."""
        return sum(len(q) - h for q, h in zip(self.queues, self.heads, strict=True))

    def _run(self, low: float) -> None:
        queues, heads = self.queues, self.heads
        waiting = self.waiting()
        if waiting > self.waiting_peak:
            self.waiting_peak = waiting
        over = waiting - self.max_waiting  # inputs to judge now, in order, without waiting
        judge = self.judge
        pivots, interfaces, timers = judge.pivots, self.interfaces, self.timers_interface
        while True:
            best, best_order = -1, low
            for w, queue in enumerate(queues):
                h = heads[w]
                if h < len(queue):
                    order = queue[h][0]
                    if (order <= low or over > 0) and (best < 0 or order < best_order):
                        best, best_order = w, order
            if best < 0:
                break
            item = queues[best][heads[best]]
            heads[best] += 1
            if item[1] == "interface":
                interfaces[best] = item[3]
                continue
            if best_order > low:
                over -= 1
                judge.counters.policy_inputs_unordered += 1
            pivots.interface = timers
            judge.judge_time(best_order)
            pivots.interface = interfaces[best]
            self._judge(best, item)
            self.judged += 1
        pivots.interface = timers
        if low != float("inf"):
            judge.judge_time(low)

    def _associate(self, worker: int, sent: tuple[Any, ...] | None) -> Any:
        """An A-ASSOCIATE-RQ/-AC from what a worker sent (its context list kept by number)."""
        if sent is None:
            return None
        kind, version, called, calling, context_name, contexts, info, unknown, anomalies = sent
        if isinstance(contexts, int):
            items = self.context_lists[(worker, contexts)]
        else:
            number, rows = contexts
            cls = _CONTEXT_CLASS[kind]
            items = tuple(cls(*row) for row in rows)
            if number >= 0:
                self.context_lists[(worker, number)] = items
        associate = _ASSOCIATE[kind]
        return associate(version, called, calling, context_name, items, info, unknown, anomalies)

    def _mirror(self, worker: int, key: int, info: Any, facts: _Facts) -> _SessionMirror:
        mirror = self.sessions.get((worker, key))
        if mirror is None:
            mirror = self.sessions[(worker, key)] = _SessionMirror(info, worker, key)
        mirror.update(info, facts, lambda sent: self._associate(worker, sent))
        return mirror

    def _judge(self, worker: int, item: tuple[Any, ...]) -> None:
        kind = item[1]
        judge = self.judge
        if kind == "dimse":
            _, _, key, info, facts, ts, direction, context, values = item
            mirror = self._mirror(worker, key, info, facts)
            command = DimseCommand(**dict(zip(_COMMAND_FIELDS, values, strict=True)))
            dimse = DimseMessage(ts, _DIRECTIONS[direction], context, command)
            judge.judge_event(key, mirror.info, mirror, dimse)
        elif kind == "event":
            _, _, key, info, facts, event = item
            mirror = self._mirror(worker, key, info, facts)
            judge.judge_event(key, mirror.info, mirror, event)
        elif kind == "associate":
            _, _, key, info, facts, ts, direction, which = item
            mirror = self._mirror(worker, key, info, facts)
            st = mirror.state
            pdu: Any = (st.request, st.accept, st.reject)[which]
            associate = _ASSOCIATE_EVENTS[which](ts, _DIRECTIONS[direction], pdu)
            judge.judge_event(key, mirror.info, mirror, associate)
        elif kind == "close":
            _, _, key, info, facts = item
            found = self.sessions.pop((worker, key), None)
            mirror = found if found is not None else _SessionMirror(info, worker, key)
            mirror.update(info, facts, lambda sent: self._associate(worker, sent))
            judge.judge_close(key, info, mirror)
        elif kind == "generic":
            _, _, key, info, side, ts = item
            originator = None if side is None else _DIRECTIONS[side]
            judge.judge_generic(key, info, _Originator(originator, info, worker, key), ts)
        elif kind == "tls":
            judge.judge_tls(item[3])


class PcapVerdicts:
    """The workers' parent's findings, back to the workers that keep the packets.

    ``capture --workers --alert-pcap``: a worker keeps each association it follows in a
    buffer (LiveAlertPcaps), the parent judges. Each finding about a session (the one it
    names, and the one whose event decided it) becomes a verdict for the worker that sent
    that session: (flow key, its session key there, rule, the finding's endpoints or
    None). A finding about no session the parent knows (a late decision about an
    association whose mirror is gone) goes to every worker by endpoints alone.
    """

    def __init__(self, workers: int) -> None:
        self.out: list[list[tuple[Any, ...]]] = [[] for _ in range(workers)]
        self.sent = 0  # verdicts sent (a finding may make two)

    def __call__(self, finding: Finding, session: object | None) -> None:
        rule, subject, view = finding.rule.id, finding.session, finding.view
        ends = (
            None
            if view is None
            else LiveEnds(
                view.requestor_ip, view.requestor_port, view.acceptor_ip, view.acceptor_port
            )
        )
        if subject is not None:
            self._to(subject, rule, ends)
        if session is not None and session is not subject:
            self._to(session, rule, ends if subject is None else None)
        if subject is None and session is None and ends is not None:
            for out in self.out:
                out.append((None, 0, rule, ends))
                self.sent += 1

    def _to(self, session: object, rule: str, ends: Any) -> None:
        worker = getattr(session, "worker", -1)
        if not 0 <= worker < len(self.out):
            return
        info = session.info  # type: ignore[attr-defined]
        key = ends_key((info.origin_ip, info.origin_port), (info.peer_ip, info.peer_port))
        self.out[worker].append((key, session.key, rule, ends))  # type: ignore[attr-defined]
        self.sent += 1

    def take(self, worker: int) -> list[tuple[Any, ...]]:
        """The verdicts for one worker since the last take."""
        out, self.out[worker] = self.out[worker], []
        return out


def apply_verdicts(live: LiveAlertPcaps, verdicts: list[tuple[Any, ...]]) -> None:
    """A worker's side of :class:`PcapVerdicts`."""
    for key, session, rule, ends in verdicts:
        if key is None:
            live.alerted_late(ends, rule)
        else:
            live.verdict(key, session, {rule}, ends)
