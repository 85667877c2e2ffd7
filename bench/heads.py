"""How many TCP packets of a capture the offline first pass admits (the BPF head test).

    python bench/heads.py bench/data/span.pcap bench/data/bench.pcap bench/data/imaging.pcap

Prints, per capture, its TCP packets and those the heads filter admits (untagged, 802.1Q
and QinQ, as the first pass reads them). Every admitted head costs a Python probe; a head
the filter drops is never probed, so a DICOM head it drops loses the whole association.
"""

from __future__ import annotations

import sys

import pcapy

from sensor.capture.bpf import HEADS, vlan_wrapped


def count(path: str, expr: str) -> int:
    """Packets of ``path`` that ``expr`` admits."""
    reader = pcapy.open_offline(path)
    reader.setfilter(vlan_wrapped(expr))
    n = 0
    while reader.next()[0] is not None:
        n += 1
    return n


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    for path in argv:
        tcp, heads = count(path, "tcp"), count(path, HEADS)
        print(f"{path}: tcp {tcp:,} heads {heads:,} ({100 * heads / max(tcp, 1):.2f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
