"""Segments to sessions: the flow table, per-direction stream reassembly, and the engine.

The engine probes new flows, follows matched ones and feeds their dissector sessions in
order. May import: dissectors/, sensor.capture.
"""
