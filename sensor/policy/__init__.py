"""Network-zone policy: zones, rules, alert folding, learned baseline and inventory."""
