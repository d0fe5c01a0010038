"""Specification of a phantom: constants, the dataclasses that hold every random choice of one image, and checks
of the generator's parameters."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DATASET_NAME = "synthetic-cxr-fracture-phantom"
GENERATOR_VERSION = "1"
CLASSES = ("rib", "clavicle")
FRACTURE_TYPES = ("displaced", "nondisplaced", "healing")
IMAGE_FORMATS = ("dicom", "png", "mixed")
MAX_PIXEL_VALUE = 4095
MIN_SIZE = 64
MAX_FRACTURES = 3


@dataclass(frozen=True)
class Frame:
    """Similarity transform from patient units ``(u, v)`` to continuous pixel coordinates ``(x, y)``.

    Attributes:
        rows: image height in pixels.
        cols: image width in pixels.
        scale: pixels per patient unit.
        angle: in-plane rotation in radians (positive turns the patient clockwise on screen).
        centre: pixel position ``(x, y)`` of the patient point ``(0, 0.5)``.
    """

    rows: int
    cols: int
    scale: float
    angle: float
    centre: tuple[float, float]

    def to_pixels(self, uv: np.ndarray) -> np.ndarray:
        """Map points of shape ``(..., 2)`` in patient units to pixel coordinates ``(..., 2)`` (x, y)."""
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        u, v = uv[..., 0], uv[..., 1] - 0.5
        x = self.centre[0] + self.scale * (cos * u - sin * v)
        y = self.centre[1] + self.scale * (sin * u + cos * v)
        return np.stack([x, y], axis=-1)

    def window(self, uv_min: tuple[float, float], uv_max: tuple[float, float]) -> tuple[slice, slice] | None:
        """Pixel window ``(rows, cols)`` covering a patient-unit rectangle, clipped to the image; None if empty."""
        corners = np.array([uv_min, (uv_min[0], uv_max[1]), (uv_max[0], uv_min[1]), uv_max], dtype=np.float64)
        xy = self.to_pixels(corners)
        c0, r0 = np.floor(xy.min(axis=0)).astype(int)
        c1, r1 = np.ceil(xy.max(axis=0)).astype(int)
        c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, self.cols), min(r1, self.rows)
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def patient_grid(self, window: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        """Patient coordinates ``(u, v)`` of the pixel centres of a window, two float32 arrays of the window's shape."""
        rows, cols = window
        dx = (np.arange(cols.start, cols.stop, dtype=np.float32) + 0.5 - self.centre[0])[None, :]
        dy = (np.arange(rows.start, rows.stop, dtype=np.float32) + 0.5 - self.centre[1])[:, None]
        cos, sin = np.float32(np.cos(self.angle)), np.float32(np.sin(self.angle))
        inv = np.float32(1.0 / self.scale)
        u = (cos * dx + sin * dy) * inv
        v = (cos * dy - sin * dx) * inv + np.float32(0.5)
        return u, v


@dataclass(frozen=True)
class Band:
    """A tubular structure drawn along a centreline polyline.

    The cross-section is a hollow tube: a cortical shell between relative radii ``shell`` and 1 and a medulla of
    relative density ``medulla`` inside, so the projected profile is brighter at the edges (cortex) than in the
    middle. ``shell=0`` gives a solid rod (vessels, wires). ``profile="edge"`` instead gives a one-sided ramp that
    ends in a sharp edge (skin fold).

    Attributes:
        points: centreline, shape (P, 2), patient units.
        half_width: half-width at each point, shape (P,), patient units.
        density: attenuation scale at each point, shape (P,), line-integral units; negative for air (airways).
        shell: inner radius of the cortical shell relative to the half-width, in [0, 1).
        medulla: density of the medulla relative to the cortex.
        bone: fracture class of the band (``"rib"`` or ``"clavicle"``) or None for structures that never fracture.
        profile: ``"tube"`` or ``"edge"``.
    """

    points: np.ndarray
    half_width: np.ndarray
    density: np.ndarray
    shell: float = 0.0
    medulla: float = 1.0
    bone: str | None = None
    profile: str = "tube"


@dataclass(frozen=True)
class Fracture:
    """One fracture on a bone band.

    Attributes:
        band: index of the fractured band in :attr:`PhantomSpec.bands`.
        position: fracture site as a fraction of the band's arc length, in (0, 1).
        kind: one of :data:`FRACTURE_TYPES`.
        bone: the band's class, ``"rib"`` or ``"clavicle"``.
        subtlety: this fracture's own difficulty in [0, 1] (0 = obvious); see :func:`fracture_magnitudes`.
        obliquity: angle of the fracture line against the bone's cross-section, radians.
        direction: +1 or -1, side of the step-off and of an incomplete hairline.
        extent: fraction of the bone width crossed by a hairline, in (0, 1].
    """

    band: int
    position: float
    kind: str
    bone: str
    subtlety: float
    obliquity: float
    direction: float
    extent: float


@dataclass(frozen=True)
class Anatomy:
    """Scalar parameters of the implicit (non-band) anatomy, patient units unless stated."""

    tissue: float  # soft-tissue line integral through the thickest part of the torso
    body_half_width: float
    lung_apex: float  # v of the lung apices
    lung_mid: float  # v where the lungs reach their full width
    lung_apex_u: float  # |u| of the lung apices
    lung_width: float  # |u| of the lateral lung border below lung_mid
    lung_air: float  # attenuation removed at full lung depth
    domes: tuple[float, float]  # v of the diaphragm domes: image left (patient right), image right (patient left)
    dome_peak: float  # |u| of the dome apex
    mediastinum: float  # half-width of the upper mediastinum
    heart_top: float  # v where the cardiac borders leave the mediastinum
    heart_right: float  # |u| of the right heart border (image left) at its widest
    heart_left: float  # u of the left heart border (image right) at its widest
    aortic_knob: float  # bulge of the aortic knob beyond the mediastinum (image right)
    heart_density: float
    rib_top: float  # v of the first posterior rib at the spine
    rib_spacing: float  # vertical distance between consecutive posterior ribs at the spine
    num_ribs: int  # rib pairs
    gastric_bubble: float  # air attenuation of the stomach bubble, 0 = none
    breast: float  # density of breast shadows, 0 = none


@dataclass(frozen=True)
class Acquisition:
    """Exposure, detector and display parameters of one image."""

    photons: float  # mean detected quanta per pixel without attenuation
    blur: float  # Gaussian sigma of the detector blur, pixels
    exposure: float  # shift of the attenuation scale (brighter or darker image)
    contrast: float  # gain of the attenuation scale
    gamma: float  # display gamma
    black: float  # output level of air, fraction of MAX_PIXEL_VALUE
    white: float  # output level of the densest tissue, fraction of MAX_PIXEL_VALUE
    noise_seed: int
    texture_seed: int


@dataclass(frozen=True)
class Marker:
    """A burned-in side marker letter drawn after the tone curve."""

    letter: str
    x: int  # column of the glyph's top-left corner
    y: int  # row of the glyph's top-left corner
    cell: int  # glyph cell size in pixels
    level: float  # pixel value as a fraction of MAX_PIXEL_VALUE


@dataclass(frozen=True)
class PhantomSpec:
    """Every random choice of one phantom image; rendering it with :func:`render_spec` is deterministic."""

    frame: Frame
    anatomy: Anatomy
    acquisition: Acquisition
    bands: tuple[Band, ...]
    electrodes: tuple[tuple[float, float, float], ...]  # (u, v, radius) of ECG electrodes
    markers: tuple[Marker, ...]
    fractures: tuple[Fracture, ...] = ()


@dataclass(frozen=True)
class PhantomImage:
    """A rendered phantom radiograph and its fracture annotations.

    Attributes:
        pixels: uint16 array of shape (rows, cols) with 12-bit values in [0, MAX_PIXEL_VALUE], MONOCHROME2 sense.
        boxes: float32 array of shape (M, 4), ``(x1, y1, x2, y2)`` in pixels (x = column, y = row, exclusive ends).
        box_classes: class name of each box (``"rib"`` or ``"clavicle"``).
        fracture_types: type of each fracture, one of :data:`FRACTURE_TYPES`.
    """

    pixels: np.ndarray
    boxes: np.ndarray
    box_classes: list[str] = field(default_factory=list)
    fracture_types: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImagePlan:
    """Dataset-level choices for one image, fixed before rendering (see :func:`plan_dataset`)."""

    index: int
    split: str  # "training", "validation" or "test"
    subset: str | None  # "R", "P" or "N" for training images, None otherwise
    num_fractures: int
    image_format: str  # "dicom" or "png"
    photometric: str  # "MONOCHROME2" or "MONOCHROME1" (DICOM only)
    rescale_intercept: int  # 0 or -1024 (DICOM only)


def check_size(size: int) -> None:
    """Raise ValueError unless ``size`` is an integer >= MIN_SIZE."""
    if int(size) != size or size < MIN_SIZE:
        raise ValueError(f"size must be an integer >= {MIN_SIZE}, got {size}.")


def check_zoom(zoom: float) -> None:
    """Raise ValueError unless ``zoom`` is a magnification in [1, 4]."""
    if not 1.0 <= zoom <= 4.0:
        raise ValueError(f"zoom must be in [1, 4], got {zoom}.")


def check_unit(name: str, value: float) -> None:
    """Raise ValueError unless ``value`` lies in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}.")
