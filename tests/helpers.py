"""Small file writers shared by the tests (DICOM and PNG radiographs with known pixels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from compressed_dicom import save_dicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    slope: float = 1.0,
    intercept: float = 0.0,
    bits_stored: int = 12,
    with_pixels: bool = True,
    **tags: object,
) -> Path:
    """Write ``pixels`` (rows, cols) as a DX DICOM file; ``tags`` set or override tags.

    Stored values are uint16 (BitsAllocated 16), or uint8 (BitsAllocated 8) when ``bits_stored`` is 8 or less.
    Works under pydicom 3 and 2.4 (the MONAI Label pins tier runs these tests too).
    """
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = DX_STORAGE
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5." + str(abs(hash(path.name)) % 10**8)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = DX_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    allocated = 8 if bits_stored <= 8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = allocated, bits_stored, bits_stored - 1, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if with_pixels:
        ds.PixelData = pixels.astype(np.uint8 if allocated == 8 else np.uint16).tobytes()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    save_dicom(ds, path)
    return path


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """Write ``pixels`` (rows, cols[, 3]) as PNG (uint16 grey or uint8 RGB)."""
    Image.fromarray(pixels).save(path)
    return path


def ramp_image(rows: int = 48, cols: int = 40, max_value: int = 4095) -> np.ndarray:
    """A (rows, cols) uint16 image whose value encodes its position, so transposes are caught."""
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return ((r * 7 + c * 3) % (max_value + 1)).astype(np.uint16)
