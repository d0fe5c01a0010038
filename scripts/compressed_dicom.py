"""Compressed DICOM files, valid and corrupt, for the tests and the decoding benchmark (pydicom 3 and 2.4).

:func:`encode` writes a DICOM file's pixels in another transfer syntax with a real encoder: pydicom 3's own where
it has one (RLE natively, JPEG-LS through pyjpegls, JPEG 2000 through pylibjpeg-openjpeg), GDCM's otherwise (JPEG
Lossless and JPEG baseline, which pydicom cannot encode, and every syntax under pydicom 2.4, whose only encoder is
RLE). :func:`corrupt` writes a copy whose codestream is damaged the way real archives damage files:

* ``"truncated"``: the first half of a valid codestream (an interrupted transfer, a full disk);
* ``"garbage"``: the first bytes of a valid codestream, then random bytes (a broken conversion);
* ``"j2k_crash"`` (JPEG 2000 only): a JPEG 2000 start-of-codestream and size marker followed by random bytes. On
  this stream python-gdcm 3.2.6 aborts the whole process (SIGABRT, an uncaught C++ exception): the stream that
  ``scripts.data.decoding`` must contain.

Every corrupt stream is refused by every decoder the bundle requires, with a Python error or (GDCM on
``"j2k_crash"``) a crash; ``tests/test_corrupt_inputs.py`` checks that the bundle reports each one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["CLAIMED_SYNTAXES", "CORRUPTIONS", "corrupt", "encode", "save_dicom"]

#: The compressed transfer syntaxes the user guide says the bundle reads, by a short name, with the bits stored
#: they are written with here (JPEG baseline is 8-bit by definition).
CLAIMED_SYNTAXES: dict[str, tuple[str, int]] = {
    "jpeg2000_lossless": ("1.2.840.10008.1.2.4.90", 12),
    "jpeg2000": ("1.2.840.10008.1.2.4.91", 12),
    "jpegls_lossless": ("1.2.840.10008.1.2.4.80", 12),
    "jpeg_baseline": ("1.2.840.10008.1.2.4.50", 8),
    "jpeg_lossless": ("1.2.840.10008.1.2.4.57", 12),
    "jpeg_lossless_sv1": ("1.2.840.10008.1.2.4.70", 12),
    "rle": ("1.2.840.10008.1.2.5", 12),
}
#: Kinds of damage :func:`corrupt` applies.
CORRUPTIONS = ("truncated", "garbage", "j2k_crash")

# GDCM's names of the syntaxes it encodes here.
_GDCM_NAMES = {
    "1.2.840.10008.1.2.4.90": "JPEG2000Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG2000",
    "1.2.840.10008.1.2.4.80": "JPEGLSLossless",
    "1.2.840.10008.1.2.4.50": "JPEGBaselineProcess1",
    "1.2.840.10008.1.2.4.57": "JPEGLosslessProcess14",
    "1.2.840.10008.1.2.4.70": "JPEGLosslessProcess14_1",
    "1.2.840.10008.1.2.5": "RLELossless",
}


def _pydicom_major() -> int:
    import pydicom

    return int(pydicom.__version__.split(".")[0])


def save_dicom(dataset, path: str | Path) -> Path:
    """``dataset.save_as(path)`` as a DICOM file with a file meta header, under pydicom 3 and 2.4."""
    if _pydicom_major() >= 3:
        dataset.save_as(path, enforce_file_format=True)
    else:  # pydicom 2.4: write_like_original=False writes the preamble and file meta information
        dataset.save_as(path, write_like_original=False)
    return Path(path)


def _encode_with_gdcm(source: Path, target: Path, syntax: str) -> None:
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    if not reader.Read():
        raise RuntimeError(f"GDCM cannot read {source}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, _GDCM_NAMES[syntax])))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError(f"GDCM cannot encode {source} as {syntax}")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(target))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"GDCM cannot write {target}")


def encode(source: str | Path, target: str | Path, syntax: str) -> Path:
    """Write the pixels of the uncompressed DICOM ``source`` to ``target`` in transfer syntax ``syntax`` (a UID).

    JPEG baseline needs an 8-bit ``source``; the others take up to 16 bits stored.
    """
    import pydicom
    from pydicom import uid

    source, target = Path(source), Path(target)
    pydicom_encoders = {uid.RLELossless: "", uid.JPEGLSLossless: "", uid.JPEG2000Lossless: "pylibjpeg"}
    if _pydicom_major() >= 3 and syntax in pydicom_encoders:
        dataset = pydicom.dcmread(source)
        dataset.compress(syntax, encoding_plugin=pydicom_encoders[syntax])
        save_dicom(dataset, target)
    else:
        _encode_with_gdcm(source, target, syntax)
    return target


def _first_frame(dataset) -> bytes:
    """The codestream of the first frame of an encapsulated pixel data element."""
    if _pydicom_major() >= 3:
        from pydicom.encaps import generate_frames  # pydicom 3

        return next(generate_frames(dataset.PixelData, number_of_frames=1))
    from pydicom.encaps import generate_pixel_data_frame  # pydicom 2.4 (deprecated in 3)

    return next(generate_pixel_data_frame(dataset.PixelData))


def corrupt(source: str | Path, target: str | Path, kind: str, seed: int = 0) -> Path:
    """Write ``source`` (a compressed DICOM file) to ``target`` with its codestream damaged as ``kind`` says.

    Args:
        source: a DICOM file in an encapsulated (compressed) transfer syntax.
        target: where the damaged copy goes (the header is kept, so the file still announces its syntax).
        kind: one of :data:`CORRUPTIONS` (module notes).
        seed: random bytes of ``"garbage"`` and ``"j2k_crash"``.
    """
    import pydicom
    from pydicom.encaps import encapsulate

    if kind not in CORRUPTIONS:
        raise ValueError(f"kind must be one of {CORRUPTIONS}, got {kind!r}")
    dataset = pydicom.dcmread(source)
    stream = _first_frame(dataset)
    rng = np.random.default_rng(seed)
    if kind == "truncated":
        data = stream[: len(stream) // 2]
    elif kind == "garbage":
        keep = min(64, len(stream) // 4)
        data = stream[:keep] + rng.bytes(len(stream) - keep)
    else:
        if "1.2.840.10008.1.2.4.9" not in str(dataset.file_meta.TransferSyntaxUID):
            raise ValueError("the j2k_crash stream is a JPEG 2000 codestream: give a JPEG 2000 source")
        data = b"\xff\x4f\xff\x51" + rng.bytes(256)  # SOC and SIZ markers, then random bytes
    if len(data) % 2:
        data += b"\x00"
    dataset.PixelData = encapsulate([data])
    return save_dicom(dataset, target)
