"""Compressed DICOM: each transfer syntax real archives use, encoded by a real encoder, decodes to the same pixels.

Encoders: pydicom 3's own (RLE Lossless natively, JPEG-LS through pyjpegls, JPEG 2000 through pylibjpeg-openjpeg)
and GDCM's (JPEG Lossless, which pydicom cannot encode). The decoders are the bundle's requirements.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import torch
from helpers import write_dicom
from pydicom import uid

from scripts.data.loading import CXRInputError, load_cxr

CHEST = {"Modality": "CR", "BodyPartExamined": "CHEST", "ViewPosition": "PA"}


def _radiograph(rows: int = 96, cols: int = 80) -> np.ndarray:
    """Smooth 12-bit content with noise, like a radiograph (compressible, but not trivially)."""
    r, c = np.meshgrid(np.linspace(0, 1, rows), np.linspace(0, 1, cols), indexing="ij")
    noise = np.random.default_rng(0).integers(0, 64, (rows, cols))
    return (2000 + 1500 * np.sin(6 * r) * np.cos(4 * c) + noise).astype(np.uint16)


def _encode_with_pydicom(source, target, syntax):
    ds = pydicom.dcmread(source)
    ds.compress(syntax, encoding_plugin="" if syntax != uid.JPEG2000Lossless else "pylibjpeg")
    ds.save_as(target, enforce_file_format=True)


def _encode_with_gdcm(source, target, syntax):
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(syntax))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(target))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()


def _gdcm_syntax(name):
    import gdcm

    return getattr(gdcm.TransferSyntax, name)


@pytest.mark.parametrize(
    "syntax, encode",
    [
        (uid.RLELossless, _encode_with_pydicom),
        (uid.JPEGLSLossless, _encode_with_pydicom),
        (uid.JPEG2000Lossless, _encode_with_pydicom),
        (uid.JPEGLosslessSV1, lambda s, t, _: _encode_with_gdcm(s, t, _gdcm_syntax("JPEGLosslessProcess14_1"))),
        (uid.JPEGLossless, lambda s, t, _: _encode_with_gdcm(s, t, _gdcm_syntax("JPEGLosslessProcess14"))),
    ],
    ids=["RLE", "JPEG-LS", "JPEG2000", "JPEG-Lossless-SV1", "JPEG-Lossless"],
)
def test_compressed_dicom_decodes_to_the_uncompressed_pixels(tmp_path, syntax, encode):
    pixels = _radiograph()
    plain = write_dicom(tmp_path / "plain.dcm", pixels, "MONOCHROME1", **CHEST)
    compressed = tmp_path / "compressed.dcm"
    encode(plain, compressed, syntax)
    assert pydicom.dcmread(compressed).file_meta.TransferSyntaxUID == syntax
    assert compressed.stat().st_size < plain.stat().st_size  # really compressed
    torch.testing.assert_close(load_cxr(compressed).as_tensor(), load_cxr(plain).as_tensor())


def test_missing_decoder_is_named_with_the_syntax_and_what_to_install(tmp_path, monkeypatch):
    from pydicom.pixels import get_decoder

    plain = write_dicom(tmp_path / "plain.dcm", _radiograph(), **CHEST)
    compressed = tmp_path / "lossless.dcm"
    _encode_with_gdcm(plain, compressed, _gdcm_syntax("JPEGLosslessProcess14_1"))
    decoder = get_decoder(uid.JPEGLosslessSV1)
    # as on a machine without python-gdcm: no plugin available, gdcm listed among the missing ones
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {**decoder._unavailable, "gdcm": ("gdcm>=3.0.10",)})
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
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(CXRInputError, match=r"private\.dcm.*MPEG2.*cannot decode"):
        load_cxr(path)
