"""The stateful side of the sensor, in rooms that follow a packet.

capture/ (sources, prefilter, L2-L4 decode) -> flow/ (table, stream reassembly, the engine
that probes and feeds dissector sessions) -> policy/ (config, zones, rules, baseline,
inventory) -> outputs/ (records, events, EVE, Zeek, syslog, metrics, summary).
pipeline.py wires any source to them; commands/ runs `read` and `capture`; cli.py parses.
A room imports only rooms before it (and dissectors/); tests/sensor/test_layout.py checks.
"""

__version__ = "0.1.0"
