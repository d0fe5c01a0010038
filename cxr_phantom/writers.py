"""Image files of the phantom: DICOM DX (for presentation) and 16-bit PNG, byte-identical for identical inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cxr_phantom.spec import DATASET_NAME, MAX_PIXEL_VALUE

_DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


def _window(pixels: np.ndarray) -> tuple[float, float]:
    """Display window (centre, width) of a MONOCHROME2 image from its 2nd and 99th percentiles."""
    low, high = np.percentile(pixels, [2.0, 99.0])
    return float(round((low + high) / 2.0)), float(max(round(high - low), 1))


def write_dicom(
    path: str | Path,
    pixels: np.ndarray,
    uid_key: str,
    patient_index: int,
    photometric: str = "MONOCHROME2",
    rescale_intercept: int = 0,
    pixel_spacing_mm: float = 0.56,
) -> None:
    """Write a 12-bit radiograph as a DICOM DX (for presentation) file, byte-identical for identical inputs.

    Args:
        path: output file.
        pixels: uint16 array (rows, cols), 12-bit values in MONOCHROME2 sense (bright = dense).
        uid_key: text from which the study, series and instance UIDs are derived (unique per image).
        patient_index: number used in the synthetic PatientName ``PHANTOM^<i>`` and PatientID.
        photometric: ``"MONOCHROME2"``, or ``"MONOCHROME1"`` to store ``MAX_PIXEL_VALUE - pixels`` (displays the same).
        rescale_intercept: RescaleIntercept (slope is 1): rescaled value = stored value + intercept.
        pixel_spacing_mm: ImagerPixelSpacing and PixelSpacing, millimetres.
    """
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}.")
    inverted = photometric == "MONOCHROME1"
    stored = (MAX_PIXEL_VALUE - pixels) if inverted else pixels
    centre, width = _window(pixels)
    uid = {part: generate_uid(entropy_srcs=[DATASET_NAME, uid_key, part]) for part in ("study", "series", "image")}

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = uid["image"]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = _DX_FOR_PRESENTATION
    ds.SOPInstanceUID = uid["image"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20000101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "synthetic phantom"
    ds.ReferringPhysicianName = ""
    ds.PatientName = f"PHANTOM^{patient_index}"
    ds.PatientID = f"PHANTOM{patient_index:05d}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.StudyInstanceUID = uid["study"]
    ds.SeriesInstanceUID = uid["series"]
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    ds.ImageLaterality = "U"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1 if inverted else -1
    ds.RescaleIntercept = rescale_intercept
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.WindowCenter = (MAX_PIXEL_VALUE - centre if inverted else centre) + rescale_intercept
    ds.WindowWidth = width
    ds.PresentationLUTShape = "INVERSE" if inverted else "IDENTITY"
    ds.ImagerPixelSpacing = [round(pixel_spacing_mm, 4)] * 2
    ds.PixelSpacing = [round(pixel_spacing_mm, 4)] * 2
    ds.BurnedInAnnotation = "NO"
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_png(path: str | Path, pixels: np.ndarray) -> None:
    """Write a 12-bit radiograph as a 16-bit greyscale PNG (PIL mode "I;16") holding the 12-bit values unscaled."""
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint16)).save(path, format="PNG")
