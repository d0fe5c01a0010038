"""Loading radiographs: orientation, MONOCHROME1, rescale, channels and clear errors."""

import numpy as np
import pytest
import torch
from helpers import ramp_image, write_dicom, write_png

from scripts.data.loading import CXRInputError, LoadCXRImaged, load_cxr


def test_png_is_loaded_as_channel_x_y(tmp_path):
    pixels = ramp_image()
    image = load_cxr(write_png(tmp_path / "a.png", pixels))
    assert image.shape == (1, pixels.shape[1], pixels.shape[0])  # (1, W, H)
    assert image.dtype == torch.float32
    # axis 1 is x (column), axis 2 is y (row)
    assert float(image[0, 5, 9]) == pixels[9, 5]


def test_monochrome1_and_monochrome2_of_the_same_exposure_give_the_same_tensor(tmp_path):
    pixels = ramp_image()
    mono2 = load_cxr(write_dicom(tmp_path / "m2.dcm", pixels, "MONOCHROME2", slope=2.0, intercept=-100.0))
    mono1 = load_cxr(write_dicom(tmp_path / "m1.dcm", 4095 - pixels, "MONOCHROME1", slope=2.0, intercept=-100.0))
    torch.testing.assert_close(mono1.as_tensor(), mono2.as_tensor())


def test_dicom_rescale_is_applied(tmp_path):
    pixels = ramp_image()
    image = load_cxr(write_dicom(tmp_path / "r.dcm", pixels, slope=2.0, intercept=-1024.0))
    expected = torch.as_tensor(pixels.T.astype(np.float32) * 2.0 - 1024.0)
    torch.testing.assert_close(image[0].as_tensor(), expected)


def test_dicom_matches_png_of_the_same_pixels(tmp_path):
    pixels = ramp_image()
    from_dicom = load_cxr(write_dicom(tmp_path / "a.dcm", pixels))
    from_png = load_cxr(write_png(tmp_path / "a.png", pixels))
    torch.testing.assert_close(from_dicom.as_tensor(), from_png.as_tensor())


def test_rgb_png_is_converted_to_grey(tmp_path):
    grey = (ramp_image(max_value=255)).astype(np.uint8)
    image = load_cxr(write_png(tmp_path / "rgb.png", np.stack([grey] * 3, axis=-1)))
    assert image.shape == (1, grey.shape[1], grey.shape[0])
    torch.testing.assert_close(image[0].as_tensor(), torch.as_tensor(grey.T.astype(np.float32)), atol=0.01, rtol=0)


def test_nifti_is_loaded(tmp_path):
    import nibabel as nib

    data = ramp_image().T.astype(np.float32)  # NIfTI arrays are (x, y)
    path = tmp_path / "a.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    image = load_cxr(path)
    assert image.shape == (1, *data.shape)
    torch.testing.assert_close(image[0].as_tensor(), torch.as_tensor(data))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.png", "file not found"),
        (lambda p: write_dicom(p / "empty.dcm", ramp_image(), with_pixels=False), "no pixel data"),
        (lambda p: _write_bytes(p / "corrupt.png", b"not a png"), "cannot read as PNG"),
        (lambda p: _write_bytes(p / "report.txt", b"text"), "unsupported file type"),
        (lambda p: _write_bytes(p / "corrupt.dcm", b"\x00" * 200), "cannot read as DICOM"),
    ],
)
def test_bad_files_raise_an_error_naming_the_file_and_problem(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(CXRInputError) as error:
        load_cxr(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_unexpected_channel_count_is_refused(tmp_path):
    import nibabel as nib

    path = tmp_path / "volume.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 5), np.float32), np.eye(4)), path)
    with pytest.raises(CXRInputError, match="volume.nii.gz.*expected one 2D image"):
        load_cxr(path)


def test_dictionary_transform_records_original_size(tmp_path):
    path = write_png(tmp_path / "a.png", ramp_image(rows=48, cols=40))
    out = LoadCXRImaged("image")({"image": str(path)})
    assert out["original_size"].tolist() == [40.0, 48.0]


def _write_bytes(path, content):
    path.write_bytes(content)
    return path
