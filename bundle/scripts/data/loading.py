"""Loading chest radiographs from DICOM, PNG/JPEG/TIFF and NIfTI into one consistent tensor layout.

MONAI's readers do the decoding (``PydicomReader``, ``PILReader``, ``NibabelReader``). What they lack for
radiographs is added here:

* ``PydicomReader`` applies RescaleSlope/Intercept but does not invert MONOCHROME1 (where a high stored value
  means dark); a MONOCHROME1 and a MONOCHROME2 file of the same exposure must give the same tensor.
* ``PILReader`` returns stored channels as they are (palette indices, C/M/Y/K planes): every PIL colour model is
  converted to grey or refused by :func:`scripts.data.colour.pil_to_grey`.
* ``PydicomReader`` lets pydicom try its decoders in pydicom's own order, GDCM first for JPEG 2000, and GDCM can
  abort the process on a corrupt stream: :mod:`scripts.data.decoding` chooses the decoder per transfer syntax and
  runs the ones that can end the process in a child process (:class:`RadiographDicomReader`).
* Before decoding, :func:`scripts.data.input_checks.check_header` refuses what must not be scored (a huge announced
  size, several frames or slices, compressed DICOM without a decoder, a DICOM that says it is not a frontal chest
  radiograph) and collects warnings; after decoding, :func:`scripts.data.input_checks.check_content` refuses an image
  without usable content (blank, constant, implausible size or aspect ratio, NaN).
* Every failure is re-raised as :class:`CXRInputError` naming the file and the problem, so a user can find
  the bad file in an archive of thousands.

Layout: MONAI's 2D convention, ``(1, W, H)``: axis 1 is x (column), axis 2 is y (row). Boxes given as
``(x1, y1, x2, y2)`` in pixels therefore index the tensor directly.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, NibabelReader, PILReader, PydicomReader
from monai.transforms import MapTransform

from scripts.data.colour import LUMA_WEIGHTS, GreyConversionError, pil_to_grey
from scripts.data.decoding import DecodeError, pixel_array
from scripts.data.input_checks import InputRefusedError, check_content, check_header

__all__ = ["CXRInputError", "LoadCXRImaged", "SUPPORTED_SUFFIXES", "WARNINGS_KEY", "load_cxr", "image_format"]

#: File name endings this bundle reads, by format.
SUPPORTED_SUFFIXES: dict[str, tuple[str, ...]] = {
    "dicom": (".dcm", ".dicom"),
    "png": (".png", ".jpg", ".jpeg", ".tif", ".tiff"),
    "nifti": (".nii", ".nii.gz"),
}

#: Item key of the newline-separated warnings about an input (a string, so that it collates like a file name).
WARNINGS_KEY = "input_warnings"
# Offset and value of the DICOM magic number, to recognise DICOM files without a file name ending.
_DICOM_MAGIC = (128, b"DICM")

# DICOM tags as PydicomReader keys its un-pruned metadata.
_TAG_PHOTOMETRIC = "00280004"
_TAG_BITS_STORED = "00280101"
_TAG_PIXEL_REPRESENTATION = "00280103"
_TAG_INTERCEPT = "00281052"
_TAG_SLOPE = "00281053"

# MONAI logs this once per process when an optional GPU decoder is missing; it is noise on a CPU machine.
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)


class CXRInputError(ValueError):
    """A radiograph (or its labels) cannot be used; the message names the file and the problem."""


def _has_dicom_magic(path: Path) -> bool:
    offset, magic = _DICOM_MAGIC
    try:
        with open(path, "rb") as stream:
            stream.seek(offset)
            return stream.read(len(magic)) == magic
    except OSError:
        return False


def image_format(path: str | Path) -> str:
    """Return ``"dicom"``, ``"png"`` or ``"nifti"`` for ``path``, or raise :class:`CXRInputError`.

    The file name ending decides; a file without a known ending is DICOM if it carries the DICOM magic number
    (``DICM`` at byte 128), as PACS exports often name files ``IM0001`` without an ending.
    """
    name = str(path).lower()
    for fmt, suffixes in SUPPORTED_SUFFIXES.items():
        if name.endswith(suffixes):
            return fmt
    if Path(path).is_file() and _has_dicom_magic(Path(path)):
        return "dicom"
    known = ", ".join(s for suffixes in SUPPORTED_SUFFIXES.values() for s in suffixes)
    raise CXRInputError(f"{path}: unsupported file type (expected one of {known}).")


class RadiographDicomReader(PydicomReader):
    """MONAI's ``PydicomReader`` for one large radiograph: decoding that cannot end the process, and two costs less.

    MONAI reads ``img.pixel_array``, so pydicom tries its decoders in its own order, GDCM first for JPEG 2000, and
    GDCM aborts the process on some corrupt streams; here :func:`scripts.data.decoding.pixel_array` chooses the
    decoder and contains those that can crash (RescaleSlope/Intercept are then applied as MONAI applies them).

    With ``prune_metadata=False`` (we keep PhotometricInterpretation and bit depth) MONAI serialises the whole
    header with ``to_json_dict``, pixel data included, base64-encoding 12 MB of a 2,500-pixel radiograph only to
    delete it afterwards (about 12 ms); elements over 1 kB become empty bulk-data references here instead. And
    ``swap_ij`` copies the float32 pixels into transposed order with NumPy (about 30 ms): :func:`load_cxr` asks
    for the file's own order (``swap_ij=False``) and returns a transposed view (see :data:`_SWAPS_AXES`); the
    percentiles do not need the copy, and the letterbox resize makes its own, smaller one.
    """

    def __init__(self) -> None:
        super().__init__(prune_metadata=False, swap_ij=False)

    def _get_meta_dict(self, img: Any) -> dict:
        metadata = img.to_json_dict(
            bulk_data_threshold=1024, bulk_data_element_handler=lambda element: "", suppress_invalid_tags=True
        )
        for key in ("7FE00008", "7FE00009", "7FE00010", "FFFCFFFC"):  # pixel data and trailing padding, as MONAI
            metadata.pop(key, None)
        return metadata

    def _get_array_data(self, img: Any, filename: Any) -> np.ndarray:
        data = pixel_array(img, filename)
        # as PydicomReader._get_array_data after its img.pixel_array: float32 and rescaled when either tag is present
        slope, intercept = getattr(img, "RescaleSlope", None), getattr(img, "RescaleIntercept", None)
        if slope is None and intercept is None:
            return data
        return data.astype(np.float32) * (1.0 if slope is None else slope) + (0.0 if intercept is None else intercept)


#: Formats whose reader returns the file's (row, column) order: load_cxr swaps to (x, y) = (column, row).
_SWAPS_AXES = {"dicom"}


def _reader(fmt: str) -> Any:
    if fmt == "dicom":
        return RadiographDicomReader()
    if fmt == "png":
        return PILReader(converter=pil_to_grey)
    return NibabelReader()


def _tag_value(meta: Mapping, tag: str, default: float) -> Any:
    entry = meta.get(tag)
    if isinstance(entry, Mapping) and entry.get("Value"):
        return entry["Value"][0]
    return default


def _compressed_syntax(path: Path) -> str:
    """Name and UID of the compressed transfer syntax of a DICOM file, or ``""`` (uncompressed or unreadable)."""
    import pydicom

    try:
        syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    except Exception:  # only used to word an error message better
        return ""
    return f"{syntax.name} ({syntax})" if syntax.is_compressed else ""


def _invert_monochrome1(image: torch.Tensor, meta: Mapping) -> torch.Tensor:
    """Map a rescaled MONOCHROME1 image onto the MONOCHROME2 scale of the same stored bit depth.

    A stored value ``s`` becomes ``s_min + s_max - s`` before rescaling, where ``[s_min, s_max]`` is the range
    of the stored bits; after the rescale ``v = slope * s + intercept`` this is ``v_lo + v_hi - v``.
    """
    bits = int(_tag_value(meta, _TAG_BITS_STORED, 16))
    signed = int(_tag_value(meta, _TAG_PIXEL_REPRESENTATION, 0)) == 1
    slope = float(_tag_value(meta, _TAG_SLOPE, 1.0))
    intercept = float(_tag_value(meta, _TAG_INTERCEPT, 0.0))
    stored_min, stored_max = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    value_lo, value_hi = sorted((slope * stored_min + intercept, slope * stored_max + intercept))
    return (value_lo + value_hi) - image


def _to_single_channel(image: torch.Tensor, path: str | Path, fmt: str) -> torch.Tensor:
    """Return ``(1, W, H)`` from a reader's ``(W, H)`` or ``(W, H, 1)``; a colour DICOM ``(W, H, 3)`` becomes luma.

    PIL images arrive grey already (:func:`scripts.data.colour.pil_to_grey`); a NIfTI with a third axis longer than
    one is a volume, refused by the header check before it gets here.
    """
    if image.ndim == 2:
        return image[None]
    if image.ndim == 3 and image.shape[-1] == 1:
        return image[..., 0][None]
    if fmt == "dicom" and image.ndim == 3 and image.shape[-1] == 3:  # RGB (pydicom converts YBR to RGB)
        weights = torch.tensor(LUMA_WEIGHTS, dtype=image.dtype, device=image.device)
        return (image * weights).sum(-1)[None]
    raise CXRInputError(
        f"{path}: expected a 2D greyscale or RGB radiograph, got array shape {tuple(image.shape)} "
        "(multi-frame, volume or unusual channel count)."
    )


def load_cxr(path: str | Path, dicom_tags: str = "refuse") -> MetaTensor:
    """Read one radiograph as a float32 ``MetaTensor`` of shape ``(1, W, H)`` in the modality's own units.

    DICOM values are rescaled (RescaleSlope/Intercept) and MONOCHROME1 is inverted, so bone is always bright.
    PNG and NIfTI values are returned as stored (colour converted to grey). ``meta["filename_or_obj"]`` holds the
    path, ``meta[WARNINGS_KEY]`` a list of warnings about the input (e.g. DICOM tags that are not set).

    Args:
        path: image file.
        dicom_tags: what to do with a DICOM whose tags say it is not a frontal chest radiograph: ``"refuse"``,
            ``"warn"`` or ``"off"`` (see :mod:`scripts.data.input_checks`).

    Raises:
        CXRInputError: the file is missing, of an unknown type, unreadable, without pixel data, not a single 2D
            image, too large, without usable content, or tagged as something other than a frontal chest radiograph.
    """
    path = Path(path)
    if not path.is_file():
        raise CXRInputError(f"{path}: file not found.")
    fmt = image_format(path)
    try:
        input_warnings = check_header(path, fmt, dicom_tags)
        with warnings.catch_warnings():
            # Projection radiographs have no ImageOrientationPatient; the identity affine MONAI falls back to is right.
            warnings.filterwarnings("ignore", message=".*ImageOrientationPatient.*")
            # The reader is called directly: LoadImage would silently retry other readers and report their errors.
            reader = _reader(fmt)
            array, meta = reader.get_data(reader.read(str(path)))
    except (InputRefusedError, GreyConversionError) as error:
        raise CXRInputError(f"{path}: {error}.") from error
    except DecodeError as error:  # names the transfer syntax and what each decoder said (or that it crashed)
        raise CXRInputError(f"{path}: cannot read as DICOM image: {error}.") from error
    except Exception as error:  # the readers raise many types; re-raise one that names the file
        message = str(error).strip()
        reason = message.splitlines()[-1] if message else type(error).__name__
        if fmt == "dicom" and ("pixel_array" in message or "PixelData" in message):
            reason = "the DICOM file has no pixel data"
        elif fmt == "dicom" and _compressed_syntax(path):
            reason = f"cannot decode its {_compressed_syntax(path)} pixel data: {reason}"
        raise CXRInputError(f"{path}: cannot read as {fmt.upper()} image: {reason}") from error
    image = torch.as_tensor(np.asarray(array, dtype=np.float32))
    if fmt in _SWAPS_AXES:  # (row, column[, colour]) -> (x, y[, colour]) as a view: consumers copy if they must
        image = image.transpose(0, 1)
    meta = dict(meta)
    if fmt == "dicom" and _tag_value(meta, _TAG_PHOTOMETRIC, "MONOCHROME2") == "MONOCHROME1":
        image = _invert_monochrome1(image, meta)
    image = _to_single_channel(image, path, fmt)
    try:
        check_content(image)
    except InputRefusedError as error:
        raise CXRInputError(f"{path}: {error}.") from error
    meta["filename_or_obj"] = str(path)
    meta["spatial_shape"] = np.asarray(image.shape[1:])
    meta[WARNINGS_KEY] = input_warnings
    return MetaTensor(image, meta=meta)


class LoadCXRImaged(MapTransform):
    """Dictionary wrapper of :func:`load_cxr`: replaces each path under ``keys`` with a ``(1, W, H)`` tensor.

    Also stores ``original_size`` = ``[W, H]`` (pixels, float32) so that detections can be mapped back to the
    file's own pixel grid after resizing, and ``input_warnings`` (:data:`WARNINGS_KEY`): the warnings about the
    input joined by newlines, ``""`` when there are none (a string collates and decollates like a file name).

    Args:
        keys: keys of the image paths.
        dicom_tags: ``"refuse"``, ``"warn"`` or ``"off"``: see :func:`load_cxr`.
    """

    def __init__(
        self, keys: KeysCollection = "image", dicom_tags: str = "refuse", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.dicom_tags = dicom_tags

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = load_cxr(d[key], self.dicom_tags)
            d["original_size"] = torch.tensor(d[key].shape[1:], dtype=torch.float32)
            d[WARNINGS_KEY] = "\n".join(d[key].meta.get(WARNINGS_KEY, []))
        return d
