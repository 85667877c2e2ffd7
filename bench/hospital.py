"""Hospital-scale captures for ``bench/generate.py``: an imaging VLAN and a span port.

Typical shapes of hospital imaging networks: a hospital has hundreds to thousands
of DICOM services (acceptor address, port), mostly on 104, 11112 and 4242; an imaging VLAN's
bytes are mostly C-STORE data sets sent many to an association; a span port outside it sees
DICOM as a few percent of packets.

Both modes splice the real-peer cases of ``pcaps/`` (every case at least once) with a
:class:`generate.Services` allocator, so each copy's acceptors are services of their own, in
three steps:

1. every case once;
2. short cases (echo, query/retrieve, user identity, rejects, aborts) until the capture has
   at least ``Shape.services`` services and ``Shape.associations`` associations;
3. store cases, their DIMSE exchange repeated ``rounds`` times in one association (a study
   sent in one association), until the DICOM packet budget is spent.

``generate.py`` then fills the rest of ``--packets`` with its background mix.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field

from generate import Case, Gen, Splicer

# Short associations: many per service, few packets each (weights by copies).
SHORT = {
    "dcmtk-echo-104": 30.0,
    "dcmtk-find-move-get": 12.0,
    "pynetdicom-user-identity": 6.0,
    "phi-canary": 4.0,
    "abort-by-requestor": 3.0,
    "abort-by-acceptor": 2.0,
    "dcmtk-reject-called-ae": 3.0,
}
# Store associations: their C-STOREs repeated (killed-mid-transfer cannot be, it is spliced whole).
STORE = {
    "dcmtk-store-11112": 6.0,
    "pynetdicom-store-loopback": 2.0,
    "pynetdicom-ipv6": 2.0,
    "killed-mid-transfer": 1.0,
}


@dataclass(frozen=True, slots=True)
class Shape:
    """What a hospital capture's DICOM part must hold."""

    dicom_packets: int  # spliced DICOM packets to reach with store associations
    services: int  # at least this many distinct (acceptor ip, port)
    associations: int  # at least this many associations
    short: dict[str, float] = field(default_factory=lambda: dict(SHORT))
    store: dict[str, float] = field(default_factory=lambda: dict(STORE))
    rounds_median: float = 12.0  # DIMSE exchanges per store association: lognormal median
    rounds_sigma: float = 0.8
    rounds_max: int = 100


def shape_for(mode: str, args: argparse.Namespace) -> Shape:
    """The shape of ``--imaging`` or ``--span-hospital`` from the command line's figures."""
    services, associations = (1000, 1500) if mode == "imaging" else (500, 0)
    return Shape(
        dicom_packets=round(args.packets * args.dicom_fraction),
        services=services if args.services is None else args.services,
        associations=associations if args.associations is None else args.associations,
    )


def store_cost(splicer: Splicer, case: Case) -> tuple[int, int]:
    """Packets of one copy of ``case``: fixed, and added per round of its repeatable part."""
    fixed, per_round = case.packets, 0
    for conn in case.conns:
        span = splicer.span(conn)
        if span is not None and "C-STORE-RQ" in conn.expected.get("dimse", {}):
            fixed -= span[1] - span[0]
            per_round += span[1] - span[0]
    return fixed, per_round


def splice_hospital(splicer: Splicer, gen: Gen, cases: list[Case], shape: Shape) -> None:
    """Splice the DICOM part of a hospital capture (see the module docstring)."""
    rng = gen.rng
    services = splicer.services
    if services is None:
        raise ValueError("a hospital capture needs a Splicer with Services")
    by_name = {c.name: c for c in cases}

    def rounds() -> int:
        n = rng.lognormvariate(math.log(shape.rounds_median), shape.rounds_sigma)
        return max(1, min(shape.rounds_max, round(n)))

    for case in cases:
        splicer.splice(case, gen.start(), gen.vlan(), rounds() if case.name in shape.store else 1)

    short = [(by_name[n], w) for n, w in shape.short.items() if n in by_name]
    if not short:
        raise SystemExit("none of the short cases is in pcaps/")
    short_cases, short_weights = [c for c, _ in short], [w for _, w in short]
    while len(services) < shape.services or len(splicer.truth) < shape.associations:
        case = rng.choices(short_cases, short_weights)[0]
        splicer.splice(case, gen.start(), gen.vlan())

    store = [(by_name[n], w) for n, w in shape.store.items() if n in by_name]
    if not store:
        return
    costs = {c.name: store_cost(splicer, c) for c, _ in store}
    store_cases, store_weights = [c for c, _ in store], [w for _, w in store]
    smallest = min(store_cases, key=lambda c: sum(costs[c.name]))
    while True:
        left = shape.dicom_packets - splicer.packets
        case = rng.choices(store_cases, store_weights)[0]
        fixed, per_round = costs[case.name]
        if fixed + per_round > left:
            case = smallest
            fixed, per_round = costs[case.name]
            if fixed + per_round > left:
                return
        n = min(rounds(), (left - fixed) // per_round) if per_round else 1
        splicer.splice(case, gen.start(), gen.vlan(), n)
