"""Stable flow identifiers shared by the EVE ``flow_id`` and the Zeek ``uid``."""

from __future__ import annotations

import hashlib
from typing import Any

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_UID_DIGITS = 17  # about 101 bits, the length of most uids Zeek writes
_FLOW_ID_BITS = 51  # below 2**53: exact in every JSON reader, as Suricata keeps its own ids


def _digest(src_ip: str, src_port: int, dst_ip: str, dst_port: int, start: str) -> bytes:
    """Hash of the 5-tuple (sorted, so either direction) and the association's start."""
    a, b = sorted(((src_ip, src_port), (dst_ip, dst_port)))
    key = f"tcp|{a[0]}|{a[1]}|{b[0]}|{b[1]}|{start}".encode()
    return hashlib.blake2b(key, digest_size=16).digest()


def flow_id(src_ip: str, src_port: int, dst_ip: str, dst_port: int, start: str) -> int:
    """A positive 51-bit integer, the same for every event of one association."""
    value = int.from_bytes(_digest(src_ip, src_port, dst_ip, dst_port, start)[:8], "big")
    return (value & ((1 << _FLOW_ID_BITS) - 1)) or 1


def zeek_uid(src_ip: str, src_port: int, dst_ip: str, dst_port: int, start: str) -> str:
    """A Zeek-like connection uid: ``C`` and 17 base62 digits of the hash (e.g. ``CzA1...``)."""
    value = int.from_bytes(_digest(src_ip, src_port, dst_ip, dst_port, start), "big")
    value %= 62**_UID_DIGITS
    chars = []
    for _ in range(_UID_DIGITS):
        value, rest = divmod(value, 62)
        chars.append(_BASE62[rest])
    return "C" + "".join(reversed(chars))


def endpoints_of(obj: dict[str, Any]) -> tuple[str, int, str, int]:
    """(source ip, source port, destination ip, destination port) of an ECS object."""
    src, dst = obj["source"], obj["destination"]
    return str(src["ip"]), int(src["port"]), str(dst["ip"]), int(dst["port"])
