"""A cheap three-way probe for DICOM on the first bytes of one direction of a TCP flow."""

from __future__ import annotations

import struct

from ..base import NEED_MORE, NO_MATCH, ProbeResult, Verdict
from .constants import ItemType

DETECTED_BY_RQ = "associate-rq"
DETECTED_BY_AC = "associate-ac"
DETECTED_BY_MIDSTREAM = "mid-stream"

MATCH_RQ = ProbeResult(Verdict.MATCH, DETECTED_BY_RQ)
MATCH_AC = ProbeResult(Verdict.MATCH, DETECTED_BY_AC)
MATCH_MIDSTREAM = ProbeResult(Verdict.MATCH, DETECTED_BY_MIDSTREAM)

_HEAD = struct.Struct(">BBIH")  # type, reserved, PDU length, protocol version
_PDATA_HEAD = struct.Struct(">BBIIBB")  # PDU header, PDV header (big endian, PS3.8)
_ELEMENT = struct.Struct("<HHII")  # first command element and its value (implicit VR LE, PS3.7)
_ASSOC_MAX = 1 << 20
_PDATA_MAX = 64 << 20
_COMMAND_MAX = 64 << 10
_AE_OK = frozenset(range(0x20, 0x7F)) | {0}


def _associate(data: bytes | memoryview, n: int) -> bool | None:
    """True/False for an RQ or AC fixed part plus first item; None while bytes are missing.

    What the most lenient real peer accepts is accepted: the PDU header's reserved byte is
    never tested (pynetdicom, DCMTK), and the protocol version only by its bit 0 (DCMTK
    dulparse.cc; PS3.8 9.3.2: "a receiver ... shall not test any other bits"). The
    session reports both as ``reserved-bits``.
    """
    if n < 10:
        # The PDU length's first byte is 0 for any length up to _ASSOC_MAX.
        return None if n < 3 or data[2] == 0 else False
    _, _, length, version = _HEAD.unpack_from(data, 0)
    if not 68 < length <= _ASSOC_MAX or version & 1 == 0:
        return False
    for i in range(10, min(n, 42)):
        if data[i] not in _AE_OK:
            return False
    if n < 75:
        return None
    return bool(data[74] == ItemType.APPLICATION_CONTEXT)


def _pdata_command(data: bytes | memoryview, n: int) -> bool | None:
    """A P-DATA-TF whose first PDV starts a command set with its group length element.

    The PDU header's reserved byte is not tested: receivers ignore it (see _associate).
    """
    if n < 24:
        # The PDU length's first byte is at most 4 for any length up to _PDATA_MAX.
        return None if n < 3 or data[2] <= _PDATA_MAX >> 24 else False
    _, _, length, pdv_len, ctx, control = _PDATA_HEAD.unpack_from(data, 0)
    if not 12 <= length <= _PDATA_MAX:
        return False
    # Only bits 0 and 1 of the control header mean anything; receivers ignore the others.
    if pdv_len < 14 or pdv_len + 4 > length or ctx & 1 == 0 or not control & 1:
        return False
    group, element, el_len, group_length = _ELEMENT.unpack_from(data, 12)
    if group != 0 or element != 0 or el_len != 4:
        return False
    # The command group length counts the rest of the command set.
    if group_length > _COMMAND_MAX:
        return False
    return not (control & 2 and group_length != pdv_len - 2 - 12)


def probe(data: bytes | memoryview) -> ProbeResult:
    """MATCH, NEED_MORE or NO_MATCH for the first bytes one side sent on a flow."""
    n = len(data)
    if n == 0:
        return NEED_MORE
    first = data[0]
    if first == 1 or first == 2:
        verdict = _associate(data, n)
        if verdict is None:
            return NEED_MORE
        if verdict:
            return MATCH_RQ if first == 1 else MATCH_AC
        return NO_MATCH
    if first == 4:
        verdict = _pdata_command(data, n)
        if verdict is None:
            return NEED_MORE
        return MATCH_MIDSTREAM if verdict else NO_MATCH
    return NO_MATCH
