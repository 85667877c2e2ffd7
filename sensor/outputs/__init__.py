"""What leaves the sensor: association records, events, Suricata EVE, Zeek logs, syslog,
Prometheus metrics (file and endpoint), whole-file outputs and the run summary.

Foreign formats are pure functions of the sensor's own ECS-shaped dicts plus a sink, so the
pipeline and the policy never learn about them. May import: dissectors/, sensor.capture,
sensor.flow, sensor.policy, sensor.counters, sensor.timefmt.
"""
