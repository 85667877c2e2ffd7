"""Community ID v1 of a TCP flow, the join key Zeek, Suricata and Elastic share.

Computed with the ``communityid`` package (the reference implementation of the
specification at https://github.com/corelight/community-id-spec). The value is the
same for both directions of a connection.
"""

from __future__ import annotations

from functools import lru_cache

import communityid

MAX_SEED = 0xFFFF  # the specification's seed is a 16-bit unsigned integer


@lru_cache(maxsize=16)
def _algorithm(seed: int) -> communityid.CommunityID:
    return communityid.CommunityID(seed)


@lru_cache(maxsize=8192)
def community_id(src_ip: str, src_port: int, dst_ip: str, dst_port: int, seed: int = 0) -> str:
    """``1:<base64 of SHA-1>`` for a TCP flow; either direction gives the same value."""
    flow = communityid.FlowTuple.make_tcp(src_ip, dst_ip, src_port, dst_port)
    value = _algorithm(seed).calc(flow)
    if value is None:  # only for addresses that are not IP addresses
        raise ValueError(f"no Community ID for {src_ip}:{src_port} -> {dst_ip}:{dst_port}")
    return str(value)
