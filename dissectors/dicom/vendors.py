"""A guess at the software behind an implementation class UID, from its root."""

from __future__ import annotations

# Roots observed in the wild, longest first when they nest; the project owns this table.
_ROOTS: tuple[tuple[str, str], ...] = (
    ("1.2.276.0.7230010.3.", "DCMTK"),
    ("1.2.826.0.1.3680043.9.3811.", "pynetdicom"),
    ("1.2.826.0.1.3680043.8.641.", "Orthanc"),
    ("1.2.826.0.1.3680043.8.498.", "pydicom"),
    ("1.2.826.0.1.3680043.2.1143.", "GDCM"),
    ("1.2.826.0.1.3680043.2.135.", "dcm4che"),
    ("1.2.40.0.13.1.", "dcm4che"),
    ("1.3.6.1.4.1.30071.8", "fo-dicom"),
    ("1.2.840.113619.", "GE Healthcare"),
    ("1.3.12.2.1107.", "Siemens Healthineers"),
    ("1.3.46.670589.", "Philips"),
    ("1.2.392.200036.9116.", "Canon (Toshiba) Medical"),
    ("1.2.392.200036.9125.", "Fujifilm"),
    ("1.2.840.113704.", "Philips (Marconi/Picker)"),
    ("1.2.840.113564.", "Agfa"),
    ("1.2.528.1.1001.", "Philips PACS (Sectra)"),
    ("1.2.752.24.", "Sectra"),
    ("1.2.124.113532.", "ClearCanvas"),
    ("1.2.840.114340.", "Merge Healthcare"),
    ("1.3.6.1.4.1.19291.2.1", "OsiriX/Horos"),
    ("1.2.250.1.59.", "Weasis"),
    ("1.2.40.0.34.", "Agfa (Austria)"),
)


def vendor_for(implementation_class_uid: str | None) -> str | None:
    """The vendor or toolkit whose UID root prefixes ``implementation_class_uid``."""
    if not implementation_class_uid:
        return None
    for root, vendor in _ROOTS:
        if implementation_class_uid.startswith(root):
            return vendor
    return None
