"""Byte vectors for the HL7 v2 / MLLP dissector, each with what it decodes to.

MLLP frame: 0x0B (VT, start block), message, 0x1C 0x0D (FS CR, end block). A message is
segments ended by CR. All patient data is synthetic; PHI canaries sit in PID, NK1 and OBX
(and MSA-3 / MSH-8, which the dissector never reads either).
"""

from __future__ import annotations

VT = b"\x0b"
END = b"\x1c\x0d"

CANARIES = (
    b"CANARY-MRN-551",
    b"CANARYPID",
    b"CANARY-OBX-RESULT",
    b"CANARYNK1",
    b"CANARY-MSA-TEXT",
    b"CANARY-SECURITY",
    b"CANARY-DATETIME",
)


def frame(*segments: bytes, terminate_last: bool = True) -> bytes:
    """An MLLP frame of ``segments``, each ended by CR (the last one optionally not)."""
    body = b"\r".join(segments) + (b"\r" if terminate_last else b"")
    return VT + body + END


# ADT^A01 from ADT-SENDER@SYNTH-HOSP to EMPI@SYNTH-HOSP, control id MSG-0001, P, 2.5.1;
# PID/NK1/PV1 hold canaries. MSH-7 and MSH-8 hold canaries too: they are never read.
MSH_ADT = (
    rb"MSH|^~\&|ADT-SENDER|SYNTH-HOSP|EMPI|SYNTH-HOSP|CANARY-DATETIME|CANARY-SECURITY"
    rb"|ADT^A01^ADT_A01|MSG-0001|P|2.5.1|||AL|NE"
)
ADT_A01 = frame(
    MSH_ADT,
    b"EVN|A01|20250102030405",
    b"PID|1||CANARY-MRN-551^^^SYNTH-HOSP^MR||CANARYPID^ALPHA||19700101|F",
    b"NK1|1|CANARYNK1^BRAVO|SPO",
    b"PV1|1|I|WARD^101^A",
)

# ACK^A01^ACK from EMPI back to ADT-SENDER: MSA-1 AA, MSA-2 MSG-0001; MSA-3 text is a canary.
ACK_AA = frame(
    rb"MSH|^~\&|EMPI|SYNTH-HOSP|ADT-SENDER|SYNTH-HOSP|20250102030406||ACK^A01^ACK|ACK-0001|P|2.5.1",
    b"MSA|AA|MSG-0001|CANARY-MSA-TEXT",
)

# ORU^R01 from LAB@SYNTH-LAB, control id MSG-0002, processing id T, version 2.3, OBX canary.
ORU_R01 = frame(
    rb"MSH|^~\&|LAB|SYNTH-LAB|EHR|SYNTH-HOSP|20250102030405||ORU^R01|MSG-0002|T|2.3",
    b"PID|1||CANARY-MRN-551||CANARYPID^ALPHA",
    b"OBR|1||RES-1|GLU^GLUCOSE",
    b"OBX|1|TX|GLU^GLUCOSE||CANARY-OBX-RESULT||||||F",
)

# ACK (v2.3 style, no trigger) with MSA-1 AE acknowledging MSG-0002; an ERR segment follows.
ACK_AE = frame(
    rb"MSH|^~\&|EHR|SYNTH-HOSP|LAB|SYNTH-LAB|20250102030406||ACK|ACK-0002|T|2.3",
    b"MSA|AE|MSG-0002|CANARY-MSA-TEXT",
    b"ERR|^^^207&Application internal error&HL70357",
)

# Custom separators: field '#', components '$', repetition '*', escape '\', subcomponent '@'.
# ORM^O01 from ORDERS (HD with namespace, OID, ISO) to RIS; control id MSG-0003; 2.4.
ORM_CUSTOM = frame(
    rb"MSH#$*\@#ORDERS$1.2.840.99999.7$ISO#SYNTH-HOSP#RIS#SYNTH-RAD#20250102##ORM$O01$ORM_O01"
    rb"#MSG-0003#P$T#2.4$DEU",
    b"PID#1##CANARY-MRN-551$$$SYNTH$MR##CANARYPID$ALPHA",
    b"ORC#NW#ORD-3",
)

# ACK with custom separators: MSA-1 AR acknowledging MSG-0003.
ACK_CUSTOM_AR = frame(
    rb"MSH#$*\@#RIS#SYNTH-RAD#ORDERS$1.2.840.99999.7$ISO#SYNTH-HOSP#20250102##ACK$O01$ACK"
    rb"#ACK-0003#P#2.4",
    b"MSA#AR#MSG-0003#CANARY-MSA-TEXT",
)

# A message whose last segment has no CR before the end block (mllp_send --loose does this).
ADT_A04_NO_FINAL_CR = frame(
    rb"MSH|^~\&|REG|SYNTH-CLINIC|EMPI|SYNTH-HOSP|20250102030405||ADT^A04|MSG-0004|P|2.3",
    b"PID|1||CANARY-MRN-551||CANARYPID^ALPHA",
    terminate_last=False,
)

# Segments ended by CR LF instead of CR: tolerated, same decode as the CR-only form.
ADT_CRLF = (
    VT
    + rb"MSH|^~\&|A|B|C|D|20250102||ADT^A08|MSG-0005|P|2.5"
    + b"\r\nPID|1||CANARY-MRN-551||CANARYPID^ALPHA\r\n"
    + END
)

# --- wrong ones ------------------------------------------------------------------------

# A frame whose first segment is PID, not MSH: bad-msh; the PID is never kept.
NO_MSH = frame(b"PID|1||CANARY-MRN-551||CANARYPID^ALPHA")
# MSH-1 is a letter: bad-msh.
MSH_BAD_SEPARATOR = frame(rb"MSHX^~\&XAXBXCXDX20250102XXADT^A01XMSG-9XPX2.5")
# MSH-2 has a repeated character: bad-msh.
MSH_BAD_ENCODING = frame(rb"MSH|^^\&|A|B|C|D|20250102||ADT^A01|MSG-9|P|2.5")
# MSH-9 empty: bad-msh.
MSH_NO_TYPE = frame(rb"MSH|^~\&|A|B|C|D|20250102|||MSG-9|P|2.5")
# MSA-1 is not in table 0008: bad-msa; the message itself is still reported, ack_code None.
ACK_BAD_CODE = frame(
    rb"MSH|^~\&|A|B|C|D|20250102||ACK^A01|ACK-9|P|2.5", b"MSA|XX|MSG-9|CANARY-MSA-TEXT"
)
# End block 0x1C followed by something other than CR: message reported, then bad-frame.
ADT_END_WITHOUT_CR = ADT_A01[:-1] + b"X"
# A frame never closed before the next start block: bad-frame, that message dropped.
ADT_MISSING_END = ADT_A01[:-2]
# An empty frame: bad-frame.
EMPTY_FRAME = VT + END

# --- not HL7 -----------------------------------------------------------------------------

HTTP_GET = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"
# DICOM A-ASSOCIATE-RQ: PDU type 1, reserved, length 0x44, protocol version 1, reserved,
# called AE "ANY-SCP", calling AE "ECHOSCU" (space padded), 32 reserved bytes.
DICOM_RQ = (
    b"\x01\x00\x00\x00\x00\x44\x00\x01\x00\x00"
    + b"ANY-SCP".ljust(16)
    + b"ECHOSCU".ljust(16)
    + bytes(32)
    + b"\x10\x00\x00\x15"
    + b"1.2.840.10008.3.1.1.1"
)
# HL7 without MLLP framing (e.g. a file transfer): no start block, so no match.
BARE_MSH = rb"MSH|^~\&|A|B|C|D|20250102||ADT^A01|MSG-1|P|2.5" + b"\r"
# Start block and MSH but the field separator is a letter.
VT_MSH_LETTER = VT + b"MSHA^~\\&A"
