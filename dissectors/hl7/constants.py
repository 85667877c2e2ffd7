"""MLLP framing bytes and the HL7 v2 tables the dissector reads (HL7 v2.x Table 0008)."""

from __future__ import annotations

from enum import StrEnum

START_BLOCK = 0x0B  # <VT>, MLLP start of block
END_BLOCK = 0x1C  # <FS>, MLLP end of block, followed by CARRIAGE_RETURN
CARRIAGE_RETURN = 0x0D  # <CR>, also the HL7 segment terminator
LINE_FEED = 0x0A  # not standard as a segment terminator, but sent by some peers

# Characters allowed as the field separator (MSH-1) and encoding characters (MSH-2):
# printable ASCII punctuation, never a letter, digit, space or control character.
SEPARATOR_CHARS = frozenset(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


class AckCode(StrEnum):
    """MSA-1 Acknowledgment Code (HL7 Table 0008)."""

    AA = "AA"  # original mode: application accept
    AE = "AE"  # original mode: application error
    AR = "AR"  # original mode: application reject
    CA = "CA"  # enhanced mode: commit accept
    CE = "CE"  # enhanced mode: commit error
    CR = "CR"  # enhanced mode: commit reject
