"""Write the one deterministic SYNTHETIC CT image of the evasion captures (no real patient).

64x64, 16-bit, explicit VR little endian file; patient SYNTHETIC^FOXTROT / SYN0006.
"""

import sys
import uuid

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

CT = "1.2.840.10008.5.1.4.1.1.2"
SEED = "dicom-sensor synthetic evasion capture data v1"


def uid(*parts):
    return "2.25.%d" % uuid.uuid5(uuid.NAMESPACE_URL, "/".join(map(str, (SEED, *parts)))).int


meta = FileMetaDataset()
meta.MediaStorageSOPClassUID = CT
meta.MediaStorageSOPInstanceUID = uid("image", 1)
meta.TransferSyntaxUID = ExplicitVRLittleEndian
meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
ds = Dataset()
ds.file_meta = meta
ds.SOPClassUID = CT
ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
ds.StudyInstanceUID = uid("study", 1)
ds.SeriesInstanceUID = uid("series", 1)
ds.PatientName = "SYNTHETIC^FOXTROT"
ds.PatientID = "SYN0006"
ds.Modality = "CT"
ds.StudyDate = "20260101"
ds.Rows = 64
ds.Columns = 64
ds.BitsAllocated = 16
ds.BitsStored = 12
ds.HighBit = 11
ds.PixelRepresentation = 0
ds.SamplesPerPixel = 1
ds.PhotometricInterpretation = "MONOCHROME2"
ds.PixelData = bytes((i * 7) & 0xFF for i in range(64 * 64 * 2))
ds.save_as(sys.argv[1], enforce_file_format=True)
