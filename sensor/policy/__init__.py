"""Network-zone policy: config, zones, rules, alert folding, learned baseline and inventory.

May import: dissectors/, sensor.capture, sensor.flow, sensor.timefmt.
"""
