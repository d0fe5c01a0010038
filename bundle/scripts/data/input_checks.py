"""Checks that decide whether a file can be scored as a frontal chest radiograph, before and after decoding.

A model that is handed a blank image, a CT slice or a lower-leg radiograph still outputs scores, and a low score
reads as "no fracture". These checks refuse such inputs with a reason instead (or record a warning where the file
only fails to say what it is). They run in two places:

* :func:`check_header`, before any pixel is decoded: the image size announced by the header (a huge one is
  refused before memory is allocated), the number of frames or slices, the DICOM transfer syntax (is a decoder
  installed?) and the DICOM tags that say what the image shows (Modality, BodyPartExamined, ViewPosition).
* :func:`check_content`, on the decoded ``(1, W, H)`` image: finite values, a plausible size and aspect ratio,
  and some dynamic range.

DICOM tag policy (``dicom_tags``): a tag that is present and says the image is *not* a frontal chest radiograph
(Modality other than CR/DX/DR, a BodyPartExamined that is not the chest, a lateral ViewPosition) refuses the file
with ``"refuse"`` (the default) or only records a warning with ``"warn"``; a tag that is missing, empty or
unrecognised always gives a warning only, since many archives and anonymisers leave them empty. ``"off"`` skips
the tag checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scripts.data.decoding import NoDecoderError, decode_plan

__all__ = [
    "ACCEPTED_MODALITIES",
    "CHEST_BODY_PARTS",
    "MAX_ASPECT_RATIO",
    "MAX_PIXELS",
    "MIN_SIDE",
    "TAG_POLICIES",
    "InputRefusedError",
    "check_content",
    "check_header",
]

#: Largest image accepted, in pixels (about 8000 x 8000). A large CR/DX plate is 4300 x 3500 (15 megapixels).
MAX_PIXELS = 64_000_000
#: Shortest side accepted, in pixels.
MIN_SIDE = 32
#: Longest side / shortest side accepted. Chest radiographs are near 1:1 to 1:1.5; long-length (spine, leg)
#: stitches and strips are not chest radiographs.
MAX_ASPECT_RATIO = 3.0
#: Modality codes of projection radiography. DR is not a DICOM defined term but is written by some vendors.
ACCEPTED_MODALITIES = ("CR", "DX", "DR")
#: BodyPartExamined values (upper-cased substrings) that mean the chest; includes Spanish (PadChest) spellings.
CHEST_BODY_PARTS = ("CHEST", "THORAX", "TORAX", "THORAC", "TÓRAX", "LUNG", "RIB", "CLAVICLE", "STERNUM", "PECHO")
#: ViewPosition values of a frontal projection and of a lateral one.
FRONTAL_VIEWS = ("PA", "AP", "AP SUPINE", "AP ERECT", "PA ERECT", "POSTERO_ANTERIOR", "ANTERO_POSTERIOR")
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "L", "LATERAL LEFT", "LATERAL RIGHT")
TAG_POLICIES = ("refuse", "warn", "off")

# Share of pixels on either side ignored when measuring dynamic range: the intensity normalisation
# (PercentileScaleIntensityd, 0.5 to 99.5 %) maps these percentiles to 0 and 1.
_RANGE_PERCENTILES = (0.5, 99.5)
_RANGE_SAMPLE = 1_000_000


class InputRefusedError(ValueError):
    """The file cannot be scored as a frontal chest radiograph; the message says why (without the path)."""


def _refuse_or_warn(message: str, policy: str, warnings: list[str]) -> None:
    if policy == "refuse":
        raise InputRefusedError(
            f"{message}; this model reads frontal chest radiographs (set dicom_tags='warn' to score it)"
        )
    warnings.append(message)


def _check_pixel_count(width: int, height: int, frames: int = 1) -> None:
    pixels = int(width) * int(height) * max(int(frames), 1)
    if pixels > MAX_PIXELS:
        raise InputRefusedError(
            f"the header announces {width} x {height} pixels{f' x {frames} frames' if frames > 1 else ''} "
            f"({pixels / 1e6:.0f} megapixels), more than the {MAX_PIXELS / 1e6:.0f} accepted; not decoded"
        )


def _dicom_transfer_syntax(dataset) -> None:
    """Refuse compressed pixel data that no installed decoder reads, naming the syntax and the decoders."""
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        return
    try:
        decode_plan(syntax)
    except NoDecoderError as error:
        raise InputRefusedError(str(error)) from error


def _dicom_tags(dataset, policy: str, warnings: list[str]) -> None:
    modality = str(dataset.get("Modality", "") or "").strip().upper()
    if not modality:
        warnings.append("DICOM Modality is not set: cannot confirm this is a radiograph")
    elif modality not in ACCEPTED_MODALITIES:
        expected = "/".join(ACCEPTED_MODALITIES)
        _refuse_or_warn(f"DICOM Modality is {modality}, not a radiograph ({expected})", policy, warnings)
    body_part = str(dataset.get("BodyPartExamined", "") or "").strip().upper()
    if not body_part:
        warnings.append("DICOM BodyPartExamined is not set: cannot confirm this is a chest radiograph")
    elif not any(term in body_part for term in CHEST_BODY_PARTS):
        _refuse_or_warn(f"DICOM BodyPartExamined is {body_part}, not the chest", policy, warnings)
    view = str(dataset.get("ViewPosition", "") or "").strip().upper()
    if not view:
        warnings.append("DICOM ViewPosition is not set: cannot confirm a frontal (PA/AP) view")
    elif view in LATERAL_VIEWS:
        _refuse_or_warn(f"DICOM ViewPosition is {view}, a lateral view, not frontal (PA/AP)", policy, warnings)
    elif view not in FRONTAL_VIEWS:
        warnings.append(f"DICOM ViewPosition {view} is not a known frontal view (PA/AP)")


def _check_dicom(path: Path, policy: str, warnings: list[str]) -> None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        # values over 4 KB (the pixel data) are only located, not read: the header costs no pixel memory
        dataset = pydicom.dcmread(path, defer_size="4 KB")
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as error:
        raise InputRefusedError(f"cannot read as DICOM: {error}") from error
    if "PixelData" not in dataset and "FloatPixelData" not in dataset and "DoubleFloatPixelData" not in dataset:
        raise InputRefusedError("cannot read as DICOM image: the DICOM file has no pixel data")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    _check_pixel_count(columns, rows, frames)
    if frames > 1:
        raise InputRefusedError(f"multi-frame DICOM with {frames} frames: expected one 2D radiograph")
    _dicom_transfer_syntax(dataset)
    if policy != "off":
        _dicom_tags(dataset, policy, warnings)


def _check_pil(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
            frames = int(getattr(image, "n_frames", 1))
    except Image.DecompressionBombError as error:
        message = f"the header announces an image too large to decode safely ({error}); not decoded"
        raise InputRefusedError(message) from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise InputRefusedError(f"cannot read as PNG image: {error}") from error
    _check_pixel_count(width, height, frames)
    if frames > 1:
        raise InputRefusedError(f"image file holds {frames} frames or pages: expected one 2D radiograph")


def _check_nifti(path: Path) -> None:
    import nibabel as nib

    try:
        shape = tuple(int(v) for v in nib.load(path).shape)  # the header only; data are read lazily
    except Exception as error:  # nibabel raises many types for broken files
        raise InputRefusedError(f"cannot read as NIFTI image: {error}") from error
    extra = [v for v in shape[2:] if v != 1]
    if len(shape) < 2 or extra:
        raise InputRefusedError(
            f"NIfTI array of shape {shape}: expected one 2D image (x, y), got {int(np.prod(extra or [0]))} "
            "slices, frames or channels"
        )
    _check_pixel_count(shape[0], shape[1])


def check_header(path: str | Path, fmt: str, dicom_tags: str = "refuse") -> list[str]:
    """Check what ``path`` announces before its pixels are decoded.

    Args:
        path: image file.
        fmt: ``"dicom"``, ``"png"`` (anything PIL reads) or ``"nifti"``.
        dicom_tags: ``"refuse"``, ``"warn"`` or ``"off"`` (see the module docstring).

    Returns:
        Warnings to record with the result (empty when nothing is uncertain).

    Raises:
        InputRefusedError: the file must not be scored; the message says why.
    """
    if dicom_tags not in TAG_POLICIES:
        raise ValueError(f"dicom_tags must be one of {TAG_POLICIES}, got {dicom_tags!r}.")
    warnings: list[str] = []
    path = Path(path)
    if fmt == "dicom":
        _check_dicom(path, dicom_tags, warnings)
    elif fmt == "png":
        _check_pil(path)
    elif fmt == "nifti":
        _check_nifti(path)
    return warnings


def check_content(image: torch.Tensor) -> None:
    """Refuse a decoded ``(1, W, H)`` image without usable content.

    Raises:
        InputRefusedError: non-finite values, a side under :data:`MIN_SIDE`, an aspect ratio over
            :data:`MAX_ASPECT_RATIO`, or no dynamic range (the 0.5th and 99.5th percentiles are equal: a blank,
            constant or almost constant image).
    """
    width, height = (int(v) for v in image.shape[1:])
    if min(width, height) < MIN_SIDE:
        raise InputRefusedError(
            f"image of {width} x {height} pixels is too small to be a radiograph (min side {MIN_SIDE})"
        )
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise InputRefusedError(
            f"image of {width} x {height} pixels has an aspect ratio of {max(width, height) / min(width, height):.1f},"
            f" implausible for a chest radiograph (at most {MAX_ASPECT_RATIO:g})"
        )
    values = np.ravel(torch.as_tensor(image).detach().cpu().numpy(), order="K")  # memory order: no copy of a view
    if not np.isfinite(values).all():
        raise InputRefusedError("image contains NaN or infinite values")
    # a regular subsample of at most about a million pixels measures the percentiles well enough, 5x faster
    low, high = np.percentile(values[:: max(1, values.size // _RANGE_SAMPLE)], _RANGE_PERCENTILES)
    if not high > low:
        raise InputRefusedError(
            f"image has no usable dynamic range: at least 99 % of its pixels have the value {low:g} "
            "(blank or constant image); nothing to score"
        )
