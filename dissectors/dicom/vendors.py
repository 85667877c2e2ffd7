"""A guess at the software behind an implementation class UID, from its root."""

from __future__ import annotations

# Roots longest first when they nest; the project owns this table. Each line names where
# the root can be checked. "Earlier table" marks roots kept from the first version of this
# table whose source was not re-checked when the sources were added.
_ROOTS: tuple[tuple[str, str], ...] = (
    # Toolkits: the implementation class UID constant in their own source.
    # DCMTK dcmdata/include/dcmtk/dcmdata/dcuid.h: OFFIS_UID_ROOT, OFFIS_IMPLEMENTATION_CLASS_UID.
    ("1.2.276.0.7230010.3.", "DCMTK"),
    # pynetdicom pynetdicom/__init__.py: PYNETDICOM_IMPLEMENTATION_UID.
    ("1.2.826.0.1.3680043.9.3811.", "pynetdicom"),
    # github.com/PantelisGeorgiadis/dcmjs-dimse src/Constants.js: Implementation (class UID).
    ("1.2.826.0.1.3680043.10.854", "dcmjs-dimse"),
    # github.com/fo-dicom/fo-dicom FO-DICOM.Core/DicomImplementation.cs: ClassUID.
    ("1.3.6.1.4.1.30071.8", "fo-dicom"),
    # github.com/marcelvanherk/Conquest-DICOM-Server: NKI root from Medical Connections
    # (dgate sources, UIDPrefix), implementation class UID ...2.135.1066.101.
    ("1.2.826.0.1.3680043.2.135.1066", "Conquest"),
    # GDCM Source/Common/gdcmVersion / gdcmUIDGenerator: root 1.2.826.0.1.3680043.2.1143,
    # implementation class UID ...1143.107.104.103.115.<version>.
    ("1.2.826.0.1.3680043.2.1143.", "GDCM"),
    # pydicom src/pydicom/uid.py: PYDICOM_ROOT_UID, PYDICOM_IMPLEMENTATION_UID.
    ("1.2.826.0.1.3680043.8.498.", "pydicom"),
    # github.com/lamyj/odil src/odil/uid.h: uid_prefix, implementation_class_uid.
    ("1.2.826.0.1.3680043.9.5560", "Odil"),
    # github.com/exini/dicom-streams (Slicebox) data/Implementation.scala: uidPrefix.
    ("1.2.826.0.1.3680043.9.7634", "dicom-streams"),
    # dcm4che 2 and 3 org.dcm4che*/net/Implementation: 1.2.40.0.13.1.1 and 1.2.40.0.13.1.3.
    ("1.2.40.0.13.1.", "dcm4che"),
    # Earlier table.
    ("1.2.826.0.1.3680043.8.641.", "Orthanc"),
    # Earlier table (Medical Connections sub-root 2.135; its .1066 branch is Conquest above).
    ("1.2.826.0.1.3680043.2.135.", "dcm4che"),
    # Vendors: their registered OID roots, under which their DICOM conformance statements
    # give each product's implementation class UID.
    # GE Healthcare conformance statements (e.g. 1.2.840.113619.6.x).
    ("1.2.840.113619.", "GE Healthcare"),
    # Siemens Healthineers syngo conformance statements (e.g. 1.3.12.2.1107.5.2).
    ("1.3.12.2.1107.", "Siemens Healthineers"),
    # Philips conformance statements (e.g. 1.3.46.670589.11.0.0.51.4 for MR).
    ("1.3.46.670589.", "Philips"),
    # Canon (Toshiba) Medical conformance statements.
    ("1.2.392.200036.9116.", "Canon (Toshiba) Medical"),
    # Fujifilm conformance statements (FCR, Synapse).
    ("1.2.392.200036.9125.", "Fujifilm"),
    # Earlier table.
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
