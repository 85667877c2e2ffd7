"""Who asked and who answered: a session's requestor and acceptor from the flow's evidence."""

from __future__ import annotations

from dissectors.base import Direction
from dissectors.dicom.association import AssociationState

from .table import FlowInfo

Endpoint = tuple[str, int]


def endpoints(info: FlowInfo, state: AssociationState) -> tuple[Endpoint, Endpoint, Direction]:
    """(requestor, acceptor, the requestor's direction), best evidence first."""
    requestor = state.requestor
    if requestor is None:
        # Nothing said who asked: the TCP client if the SYN was seen, else the side that matched.
        if info.client_ip is not None and info.client_port is not None:
            is_origin = (info.client_ip, info.client_port) == (info.origin_ip, info.origin_port)
            requestor = Direction.ORIGIN if is_origin else Direction.PEER
        else:
            requestor = Direction.ORIGIN
    origin = (info.origin_ip, info.origin_port)
    peer = (info.peer_ip, info.peer_port)
    if requestor is Direction.ORIGIN:
        return origin, peer, requestor
    return peer, origin, requestor


def generic_endpoints(info: FlowInfo, originator: Direction | None) -> tuple[Endpoint, Endpoint]:
    """(client, server) of a non-DICOM session: its own word, else the SYN, else the match."""
    origin = (info.origin_ip, info.origin_port)
    peer = (info.peer_ip, info.peer_port)
    if originator is not None:
        return (origin, peer) if originator is Direction.ORIGIN else (peer, origin)
    if info.client_ip is not None and info.client_port is not None:
        client = (info.client_ip, info.client_port)
        return (client, peer if client == origin else origin)
    return origin, peer
