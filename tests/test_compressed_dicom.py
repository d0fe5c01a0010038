"""Compressed DICOM: each transfer syntax real archives use, encoded by a real encoder, decodes to the same pixels.

Encoders (``scripts/compressed_dicom.py``): pydicom 3's own (RLE Lossless natively, JPEG-LS through pyjpegls, JPEG
2000 through pylibjpeg-openjpeg) and GDCM's (JPEG Lossless, which pydicom cannot encode; every syntax under pydicom
2.4, in the MONAI Label pins tier). The decoders are the bundle's requirements.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import torch
from compressed_dicom import encode, save_dicom
from helpers import write_dicom
from pydicom import uid

from scripts.data.decoding import pydicom_major
from scripts.data.loading import CXRInputError, load_cxr

CHEST = {"Modality": "CR", "BodyPartExamined": "CHEST", "ViewPosition": "PA"}
LOSSLESS_SV1, LOSSLESS_P14 = "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.57"


def _radiograph(rows: int = 96, cols: int = 80) -> np.ndarray:
    """Smooth 12-bit content with noise, like a radiograph (compressible, but not trivially)."""
    r, c = np.meshgrid(np.linspace(0, 1, rows), np.linspace(0, 1, cols), indexing="ij")
    noise = np.random.default_rng(0).integers(0, 64, (rows, cols))
    return (2000 + 1500 * np.sin(6 * r) * np.cos(4 * c) + noise).astype(np.uint16)


@pytest.mark.parametrize(
    "syntax",
    # JPEG Lossless by UID: pydicom 2.4's name JPEGLossless means the Selection Value 1 syntax (.70), pydicom 3's (.57)
    [uid.RLELossless, uid.JPEGLSLossless, uid.JPEG2000Lossless, uid.UID(LOSSLESS_SV1), uid.UID(LOSSLESS_P14)],
    ids=["RLE", "JPEG-LS", "JPEG2000", "JPEG-Lossless-SV1", "JPEG-Lossless"],
)
def test_compressed_dicom_decodes_to_the_uncompressed_pixels(tmp_path, syntax):
    pixels = _radiograph()
    plain = write_dicom(tmp_path / "plain.dcm", pixels, "MONOCHROME1", **CHEST)
    compressed = encode(plain, tmp_path / "compressed.dcm", syntax)
    assert pydicom.dcmread(compressed).file_meta.TransferSyntaxUID == syntax
    assert compressed.stat().st_size < plain.stat().st_size  # really compressed
    torch.testing.assert_close(load_cxr(compressed).as_tensor(), load_cxr(plain).as_tensor())


def test_missing_decoder_is_named_with_the_syntax_and_what_to_install(tmp_path, monkeypatch):
    plain = write_dicom(tmp_path / "plain.dcm", _radiograph(), **CHEST)
    compressed = encode(plain, tmp_path / "lossless.dcm", uid.JPEGLosslessSV1)
    # as on a machine without python-gdcm: no plugin available (pydicom 3: gdcm listed among the missing ones)
    if pydicom_major() >= 3:
        from pydicom.pixels import get_decoder

        decoder = get_decoder(uid.JPEGLosslessSV1)
        monkeypatch.setattr(decoder, "_available", {})
        monkeypatch.setattr(decoder, "_unavailable", {**decoder._unavailable, "gdcm": ("gdcm>=3.0.10",)})
    else:  # pydicom 2.4: the GDCM handler says it is not available
        import pydicom.pixel_data_handlers.gdcm_handler as gdcm_handler

        monkeypatch.setattr(gdcm_handler, "HAVE_GDCM", False)
    with pytest.raises(CXRInputError) as error:
        load_cxr(compressed)
    message = str(error.value)
    assert "lossless.dcm" in message and "JPEG Lossless" in message and str(uid.JPEGLosslessSV1) in message
    assert "gdcm" in message and "python-gdcm" in message


def test_transfer_syntax_pydicom_does_not_know_is_refused_by_name(tmp_path):
    path = write_dicom(tmp_path / "private.dcm", _radiograph(), **CHEST)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = uid.MPEG2MPML  # video: no pixel data decoder exists in pydicom
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
    save_dicom(ds, path)
    with pytest.raises(CXRInputError, match=r"private\.dcm.*MPEG2.*cannot decode"):
        load_cxr(path)
