"""Service-class application information of the SOP Class Extended Negotiation sub-item 0x56.

PS3.7 D.3.3.5 leaves the field's layout to each service class; PS3.4 defines it for:

* Storage (PS3.4 B.3.1, Tables B.3-1/B.3-2): six bytes, each an unsigned binary integer.

  ====  ===================================  =============================================
  byte  field                                values
  ====  ===================================  =============================================
  1     level of support                     0, 1, 2 (level 0-2 SCP), 3 (SCU only, RQ)
  2     reserved                             0
  3     level of digital signature support   0 (unspecified), 1-3 (signature level 1-3)
  4     reserved                             0
  5     element coercion                     0 (no coercion), 1 (may coerce), 2 (SCU only)
  6     reserved                             0
  ====  ===================================  =============================================

* Query/Retrieve C-FIND (PS3.4 C.5.1.1, Tables C.5-1/C.5-2): one or more bytes (bytes 2
  to 7 optional), each 0 (not supported/requested) or 1: relational queries, combined
  date-time matching, fuzzy semantic matching of person names, timezone query adjustment,
  enhanced multi-frame image conversion, empty value matching, multiple value matching.
* Query/Retrieve C-MOVE and C-GET (PS3.4 C.5.2.1, C.5.3.1): one or two bytes, 0 or 1:
  relational retrieval, enhanced multi-frame image conversion.
* Basic Worklist Management (PS3.4 K.3.1): the C-FIND layout's first four bytes
  (relational queries, date-time matching, fuzzy semantic matching, timezone query
  adjustment).

Any other SOP class (Storage Commitment, for instance, defines no such field) keeps only the
field's length. A length outside the defined set is ``bad-length``, a value outside its
defined set ``bad-value``, a reserved byte other than 0 ``reserved-bits``; what was there
is decoded all the same, as a receiver would read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Reason
from .uid_table import UID_NAMES

_STORAGE_FIELDS = (
    ("level_of_support", frozenset({0, 1, 2, 3})),
    ("", frozenset({0})),  # reserved
    ("level_of_digital_signature_support", frozenset({0, 1, 2, 3})),
    ("", frozenset({0})),
    ("element_coercion", frozenset({0, 1, 2})),
    ("", frozenset({0})),
)
_FLAG = frozenset({0, 1})
_FIND_FIELDS = tuple(
    (name, _FLAG)
    for name in (
        "relational_queries",
        "date_time_matching",
        "fuzzy_semantic_matching",
        "timezone_query_adjustment",
        "enhanced_multi_frame_image_conversion",
        "empty_value_matching",
        "multiple_value_matching",
    )
)
_RETRIEVE_FIELDS = (
    ("relational_retrieval", _FLAG),
    ("enhanced_multi_frame_image_conversion", _FLAG),
)
_WORKLIST_FIELDS = _FIND_FIELDS[:4]

_QR = "1.2.840.10008.5.1.4.1.2."
# Query/Retrieve information models (PS3.4 C.6): patient root (1), study root (2),
# patient/study only (3, retired), composite instance root (4), composite instance
# retrieve without bulk data (5); the last component says FIND (1), MOVE (2) or GET (3).
_FIND = frozenset({_QR + "1.1", _QR + "2.1", _QR + "3.1"})
_RETRIEVE = frozenset(
    {_QR + "1.2", _QR + "1.3", _QR + "2.2", _QR + "2.3", _QR + "3.2", _QR + "3.3",
     _QR + "4.2", _QR + "4.3", _QR + "5.3"}
)  # fmt: skip
_WORKLIST = frozenset({"1.2.840.10008.5.1.4.31"})  # Modality Worklist Information Model - FIND
_STORAGE_ARC = "1.2.840.10008.5.1.4.1.1."


@dataclass(frozen=True, slots=True)
class ApplicationInformation:
    """The decoded service-class application information of one 0x56 sub-item.

    ``service`` is ``storage``, ``query``, ``retrieve``, ``worklist`` or None (a SOP class
    PS3.4 gives no layout for: only ``length`` is kept). ``fields`` holds (name, value)
    for each defined byte present, reserved bytes left out.
    """

    service: str | None
    length: int
    fields: tuple[tuple[str, int], ...] = ()
    anomalies: tuple[Reason, ...] = ()


def service_of(sop_class_uid: str) -> str | None:
    """Which PS3.4 layout applies to a SOP class, or None."""
    if sop_class_uid in _FIND:
        return "query"
    if sop_class_uid in _RETRIEVE:
        return "retrieve"
    if sop_class_uid in _WORKLIST:
        return "worklist"
    if sop_class_uid.startswith(_STORAGE_ARC) and UID_NAMES.get(sop_class_uid, "").endswith(
        "Storage"
    ):
        return "storage"
    return None


_LAYOUTS = {
    "storage": (_STORAGE_FIELDS, frozenset({6})),
    "query": (_FIND_FIELDS, frozenset(range(1, 8))),
    "retrieve": (_RETRIEVE_FIELDS, frozenset({1, 2})),
    "worklist": (_WORKLIST_FIELDS, frozenset(range(1, 5))),
}


def decode_application_information(sop_class_uid: str, data: bytes) -> ApplicationInformation:
    """Decode ``data`` (the bytes after the SOP class UID) by the SOP class's PS3.4 layout."""
    service = service_of(sop_class_uid)
    if service is None:
        return ApplicationInformation(None, len(data))
    layout, lengths = _LAYOUTS[service]
    problems: list[Reason] = []
    if len(data) not in lengths:
        problems.append(Reason.BAD_LENGTH)
    fields: list[tuple[str, int]] = []
    for (name, allowed), value in zip(layout, data, strict=False):
        if value not in allowed:
            reason = Reason.BAD_VALUE if name else Reason.RESERVED_BITS
            if reason not in problems:
                problems.append(reason)
        if name:
            fields.append((name, value))
    return ApplicationInformation(service, len(data), tuple(fields), tuple(problems))
