"""The sensor's own counters: plain integers, turned into metrics at scrape time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# Outputs whose failed deliveries are counted (dicom_sensor_output_failures_total).
OUTPUTS = ("baseline", "syslog", "files")
# What a capture worker that died took with it (dicom_sensor_lost_with_workers_total):
# associations it was following (their records and end decisions never come), and the
# parent's --alert-pcap verdicts not known to have reached it (their pcaps never written).
LOST_WITH_WORKERS = ("associations", "alert-verdicts")


@dataclass(slots=True)
class SensorCounters:
    """What the sensor has seen; label values only from closed sets."""

    packets: int = 0  # every packet in the capture, counted by libpcap
    # (requestor zone, acceptor zone)
    association_requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    # (result, end, requestor zone, acceptor zone)
    associations: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    dimse: Counter[tuple[str, str]] = field(default_factory=Counter)  # (command, status class)
    # (requestor zone, acceptor zone, sent by requestor|acceptor)
    pdata_bytes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    anomalies: Counter[str] = field(default_factory=Counter)  # reason
    alerts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule id, severity)
    # C-MOVE destinations decided after the C-MOVE-RQ, by reason (policy/moves.py MoveReason)
    move_decisions: Counter[str] = field(default_factory=Counter)
    active_associations: int = 0
    last_packet_ts: float = 0.0
    # Plug-in dissectors (HL7, ...): (protocol, message|anomaly) and (protocol, zones)
    plugin_events: Counter[tuple[str, str]] = field(default_factory=Counter)
    plugin_connections: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    captures_cut_off: int = 0
    # capture --workers: policy inputs judged before every worker had passed their time
    # (the parent's hold cap bit: one worker lagged far behind the others)
    policy_inputs_unordered: int = 0
    # capture --workers: workers that died before their last input, and what died with
    # them (LOST_WITH_WORKERS)
    workers_lost: int = 0
    lost_with_workers: Counter[str] = field(default_factory=Counter)
    # capture --workers: DIMSE messages a worker did not send its parent, as they can change
    # no finding (PolicyOutbox): the repeats of an internal association's C-STOREs and such
    policy_inputs_coalesced: int = 0
    capture_file_bytes: int = 0
    # Deliveries that failed, by output (baseline, syslog, files); keys exist from the start
    # so a sending thread never grows the dict while a snapshot pickles it.
    output_failures: Counter[str] = field(
        default_factory=lambda: Counter(dict.fromkeys(OUTPUTS, 0))
    )
