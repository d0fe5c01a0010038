"""Inputs that must be refused (or warned about) instead of scored, and every PIL colour model; built in code."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from helpers import ramp_image, write_dicom, write_png
from PIL import Image

from scripts.data.colour import GreyConversionError, pil_to_grey
from scripts.data.input_checks import MAX_PIXELS
from scripts.data.loading import WARNINGS_KEY, CXRInputError, LoadCXRImaged, image_format, load_cxr

CHEST = {"Modality": "DX", "BodyPartExamined": "CHEST", "ViewPosition": "PA"}


def _grey_ramp(rows: int = 48, cols: int = 64) -> np.ndarray:
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return ((r * 3 + c * 2) % 256).astype(np.uint8)


# ---------------------------------------------------------------- colour models
@pytest.mark.parametrize("mode", Image.MODES)
def test_every_pil_colour_model_is_converted_to_its_grey_values_or_refused(mode):
    grey = _grey_ramp()
    source = Image.fromarray(grey, "L")
    try:
        image = source.convert(mode)
    except ValueError:  # PIL cannot build this mode from L (La, RGBa): build it from opaque RGBA
        image = source.convert("RGBA").convert(mode)
    try:
        converted = pil_to_grey(image)
    except GreyConversionError as error:
        assert mode in ("1", "LAB"), f"{mode} refused: {error}"
        assert repr(mode) in str(error)
        return
    assert mode not in ("1", "LAB")
    assert converted.mode in ("L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")
    values = np.asarray(converted, dtype=np.float64)
    assert values.shape == grey.shape
    # 8-bit colour round trips (YCbCr, HSV) may be off by one grey level
    np.testing.assert_allclose(values, grey, atol=1.01)


def test_colour_image_is_converted_with_luma_weights_not_by_dropping_channels():
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    grey = np.asarray(pil_to_grey(Image.fromarray(rgb, "RGB")))
    assert grey == pytest.approx(0.299 * 200 + 0.587 * 100 + 0.114 * 50, abs=1e-3)


def test_transparent_image_is_refused():
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 120, 255
    rgba[:10, :, 3] = 0
    with pytest.raises(GreyConversionError, match="transparent"):
        pil_to_grey(Image.fromarray(rgba, "RGBA"))


def test_cmyk_jpeg_file_is_read_as_its_grey_values(tmp_path):
    grey = _grey_ramp()
    path = tmp_path / "scan.jpg"
    Image.fromarray(grey, "L").convert("CMYK").save(path, quality=100)
    assert Image.open(path).mode == "CMYK"
    image = load_cxr(path)
    np.testing.assert_allclose(image[0].numpy().T, grey, atol=4)  # JPEG is lossy even at quality 100


@pytest.mark.parametrize("mode", ["P", "LA", "I;16", "RGBA"])
def test_png_files_of_each_colour_model_are_read_as_grey(tmp_path, mode):
    grey = _grey_ramp()
    path = tmp_path / f"{mode.replace(';', '_')}.png"
    image = Image.fromarray(grey, "L").convert(mode)
    image.save(path)
    np.testing.assert_allclose(load_cxr(path)[0].numpy().T, grey, atol=1.01)


def test_bilevel_png_is_refused_naming_file_and_mode(tmp_path):
    path = tmp_path / "bw.png"
    Image.fromarray(_grey_ramp() > 100).save(path)
    with pytest.raises(CXRInputError, match=r"bw\.png.*'1'.*no grey levels"):
        load_cxr(path)


# ---------------------------------------------------------------- content
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: write_png(p / "black.png", np.zeros((64, 64), np.uint8)), "no usable dynamic range"),
        (lambda p: write_dicom(p / "flat.dcm", np.full((64, 64), 1000, np.uint16), **CHEST), "no usable dynamic"),
        (lambda p: write_png(p / "strip.png", _grey_ramp(8, 4000)), "too small"),
        (lambda p: write_png(p / "wide.png", _grey_ramp(100, 400)), "aspect ratio of 4.0"),
        (lambda p: write_png(p / "one.png", np.full((1, 1), 7, np.uint8)), "too small"),
    ],
)
def test_images_without_usable_content_are_refused(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(CXRInputError, match=message) as error:
        load_cxr(path)
    assert str(path) in str(error.value)


def test_nearly_blank_image_with_a_few_bright_pixels_is_refused(tmp_path):
    pixels = np.zeros((64, 64), np.uint8)
    pixels[:2, :2] = 255  # 0.1 % of the pixels: nothing a reader could score
    with pytest.raises(CXRInputError, match="no usable dynamic range"):
        load_cxr(write_png(tmp_path / "dots.png", pixels))


def test_nifti_with_three_slices_is_refused_not_read_as_rgb(tmp_path):
    import nibabel as nib

    path = tmp_path / "three.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((64, 64, 3)).astype(np.float32), np.eye(4)), path)
    with pytest.raises(CXRInputError, match=r"three\.nii\.gz.*expected one 2D image.*3 slices"):
        load_cxr(path)


def test_nifti_with_a_trailing_singleton_axis_is_read(tmp_path):
    import nibabel as nib

    data = ramp_image().T.astype(np.float32)[..., None]
    path = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    assert load_cxr(path).shape == (1, 40, 48)


# ---------------------------------------------------------------- huge images, refused before decoding
def _png_header_only(path, width: int, height: int):
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(
    "width, height, message",
    [(9000, 8000, "9000 x 8000 pixels"), (20000, 20000, "too large to decode safely")],  # ours, then PIL's limit
)
def test_huge_png_header_is_refused_before_decoding(tmp_path, width, height, message):
    path = _png_header_only(tmp_path / "huge.png", width, height)
    with pytest.raises(CXRInputError, match=rf"huge\.png.*{message}.*not decoded"):
        load_cxr(path)


def test_huge_dicom_header_is_refused_before_decoding(tmp_path):
    path = write_dicom(tmp_path / "huge.dcm", np.zeros((4, 4), np.uint16), **CHEST, Rows=30000, Columns=30000)
    with pytest.raises(CXRInputError, match=r"huge\.dcm.*30000 x 30000 pixels.*not decoded"):
        load_cxr(path)


def test_huge_nifti_header_is_refused_before_decoding(tmp_path):
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape((12000, 12000))
    header.set_data_dtype(np.float32)
    path = tmp_path / "huge.nii"
    path.write_bytes(header.binaryblock + b"\x00" * 4)  # header only: the announced 576 MB are not there
    with pytest.raises(CXRInputError, match=r"huge\.nii.*12000 x 12000 pixels"):
        load_cxr(path)
    assert MAX_PIXELS < 12000 * 12000


# ---------------------------------------------------------------- DICOM tags
@pytest.mark.parametrize(
    "tags, message",
    [
        ({"Modality": "CT"}, "Modality is CT, not a radiograph"),
        ({"Modality": "NM"}, "Modality is NM"),
        ({"BodyPartExamined": "EXTREMITY"}, "BodyPartExamined is EXTREMITY, not the chest"),
        ({"ViewPosition": "LL"}, "ViewPosition is LL, a lateral view"),
    ],
)
def test_dicom_tagged_as_something_else_is_refused(tmp_path, tags, message):
    path = write_dicom(tmp_path / "other.dcm", ramp_image(64, 64), **{**CHEST, **tags})
    with pytest.raises(CXRInputError, match=message) as error:
        load_cxr(path)
    assert "other.dcm" in str(error.value) and "dicom_tags='warn'" in str(error.value)


def test_warn_policy_scores_it_and_records_the_warning(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", ramp_image(64, 64), **{**CHEST, "Modality": "CT"})
    image = load_cxr(path, dicom_tags="warn")
    assert image.meta[WARNINGS_KEY] == ["DICOM Modality is CT, not a radiograph (CR/DX/DR)"]
    assert load_cxr(path, dicom_tags="off").meta[WARNINGS_KEY] == []


def test_untagged_dicom_is_read_with_warnings(tmp_path):
    path = write_dicom(tmp_path / "bare.dcm", ramp_image(64, 64), Modality="")
    item = LoadCXRImaged("image")({"image": str(path)})
    warnings = item[WARNINGS_KEY].split("\n")
    assert len(warnings) == 3
    assert any("Modality is not set" in w for w in warnings) and any("ViewPosition" in w for w in warnings)
    tagged = LoadCXRImaged("image")({"image": str(write_dicom(tmp_path / "ok.dcm", ramp_image(64, 64), **CHEST))})
    assert tagged[WARNINGS_KEY] == ""


@pytest.mark.parametrize("body_part", ["CHEST", "THORAX", "TORAX", "PORTABLE CHEST", "ribs"])
def test_chest_body_part_spellings_are_accepted(tmp_path, body_part):
    path = write_dicom(tmp_path / "c.dcm", ramp_image(64, 64), **{**CHEST, "BodyPartExamined": body_part})
    assert load_cxr(path).meta[WARNINGS_KEY] == []


def test_multiframe_dicom_is_refused(tmp_path):
    frames = np.stack([ramp_image(64, 64)] * 2)
    path = write_dicom(tmp_path / "multi.dcm", frames.reshape(128, 64), **CHEST, Rows=64, NumberOfFrames=2)
    with pytest.raises(CXRInputError, match="multi-frame DICOM with 2 frames"):
        load_cxr(path)


def test_dicom_without_file_name_ending_is_recognised_by_its_magic_number(tmp_path):
    path = write_dicom(tmp_path / "IM0001", ramp_image(64, 64), **CHEST)
    assert image_format(path) == "dicom"
    expected = torch.as_tensor(ramp_image(64, 64).T, dtype=torch.float32)
    torch.testing.assert_close(load_cxr(path).as_tensor()[0], expected)
