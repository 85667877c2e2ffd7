"""Outputs for existing security stacks: Suricata EVE JSON and Zeek-style logs.

Each format is a pure function from the sensor's own ECS-shaped dicts (association
records, alert and anomaly events) plus a line sink that writes it, so the pipeline
and the policy never learn about foreign formats.
"""
