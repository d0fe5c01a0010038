"""Procedural synthetic chest X-ray (CXR) phantom with rib and clavicle fractures.

The phantom stands in for real posterior-anterior (PA) chest radiographs in the demo, the tests and the ablation
benchmark. One image is made in three steps:

1. :func:`sample_phantom` draws every random choice of one image into a :class:`PhantomSpec` (patient size and pose,
   lungs, heart, diaphragm, spine, ribs, clavicles, vessels, tubes, ECG leads, markers, fractures, exposure).
2. :func:`render_spec` accumulates an attenuation map (line integrals, arbitrary units; soft tissue about 1) from
   implicit shapes (body, lungs, heart, spine) and from *bands*: tubular structures drawn along a centreline (ribs,
   clavicles, vessels, tubes, wires). Bands are rasterised by bilinear splatting of a dense grid of samples along
   and across the centreline, so that fractures (gaps, step-offs, lucent lines, callus) are local edits of that grid.
3. The acquisition adds signal-dependent quantum noise, detector blur and a tone curve, and returns a 12-bit
   radiograph in the MONOCHROME2 sense (bone and soft tissue bright, lungs and air dark).

:func:`generate_dataset` writes a whole data set (DICOM and/or PNG files plus a MONAI-style datalist JSON).

Coordinates
-----------
Anatomy is defined in *patient units* ``(u, v)``: ``u`` is horizontal, positive towards the image right (the
patient's left in a PA view), zero on the body midline; ``v`` points down, and the image height is about one unit.
A per-image similarity transform (:class:`Frame`) maps patient units to pixels, so the anatomy scales with the
image size. Pixel coordinates are continuous ``(x, y)`` with ``x`` = column and ``y`` = row; pixel column ``k``
spans ``[k, k + 1)``, so its centre is at ``k + 0.5``. Boxes are ``(x1, y1, x2, y2)`` in that convention, with
``x2``/``y2`` exclusive edges.

Everything is deterministic given the random generator passed in; :func:`generate_dataset` seeds image ``i`` with
``np.random.default_rng([seed, i])`` so that the output does not depend on the order or number of worker processes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

__all__ = [
    "CLASSES",
    "DATASET_NAME",
    "FRACTURE_TYPES",
    "GENERATOR_VERSION",
    "IMAGE_FORMATS",
    "MAX_FRACTURES",
    "MAX_PIXEL_VALUE",
    "MIN_SIZE",
    "Acquisition",
    "Anatomy",
    "Band",
    "Fracture",
    "Frame",
    "ImagePlan",
    "Marker",
    "PhantomImage",
    "PhantomSpec",
    "fracture_magnitudes",
    "generate_dataset",
    "plan_dataset",
    "render_phantom",
    "render_spec",
    "sample_phantom",
    "write_dicom",
    "write_png",
]

DATASET_NAME = "synthetic-cxr-fracture-phantom"
GENERATOR_VERSION = "1"
CLASSES = ("rib", "clavicle")
FRACTURE_TYPES = ("displaced", "nondisplaced", "healing")
IMAGE_FORMATS = ("dicom", "png", "mixed")
MAX_PIXEL_VALUE = 4095
MIN_SIZE = 64
MAX_FRACTURES = 3

_SAMPLE_STEP = 0.5  # spacing in pixels of the splatting grid along and across a band
_RIB_FRACTURE_SHARE = 0.8  # probability that a fracture is on a rib rather than a clavicle
_FRACTURE_TYPE_PROBS = (0.35, 0.35, 0.30)  # displaced, nondisplaced, healing
_SUBTLETY_JITTER = 0.12  # standard deviation of a fracture's own difficulty around the global one
_MAX_CLASS_DRAWS = 30  # bone-class draws (each with up to 50 site draws) before giving up on placing fractures
_TONE_KNEE = 4.0  # log-like display curve: lifts the lungs and compresses the mediastinum
_PNG_SHARE = 1.0 / 3.0  # share of PNG files when image_format="mixed"
_MONOCHROME1_SHARE = 0.3
_PLAN_STREAM = 0x504C414E  # extra seed word that separates the dataset plan from the per-image streams
_DETECTOR_HEIGHT_MM = 0.14 * 2048  # pixel spacing = this / size
_DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
_LETTERS = {
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
}


# ----------------------------------------------------------------------------------------------------------------
# Data structures
# ----------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------
# Small numerical helpers
# ----------------------------------------------------------------------------------------------------------------


def _ramp(x: np.ndarray, width: float) -> np.ndarray:
    """Soft step: 0 for ``x <= -width / 2``, 1 for ``x >= width / 2``, linear in between."""
    return np.clip(x * (1.0 / width) + 0.5, 0.0, 1.0)


def _bezier(ctrl: np.ndarray, num: int = 48) -> np.ndarray:
    """Points of shape (num, 2) on the cubic Bezier curve with control points ``ctrl`` of shape (4, 2)."""
    t = np.linspace(0.0, 1.0, num)[:, None]
    return (1 - t) ** 3 * ctrl[0] + 3 * (1 - t) ** 2 * t * ctrl[1] + 3 * (1 - t) * t**2 * ctrl[2] + t**3 * ctrl[3]


def _polyline(*pieces: np.ndarray) -> np.ndarray:
    """Concatenate polylines of shape (P_i, 2) whose ends coincide, dropping the duplicated joints."""
    return np.concatenate([pieces[0]] + [p[1:] for p in pieces[1:]])


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float32 array with replicated borders; ``sigma`` in pixels.

    Plain numpy shifted sums: deterministic, thread-free and faster than a torch convolution at these sizes.
    """
    radius = max(1, int(np.ceil(3.0 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(image, pad, mode="edge")
        length = image.shape[axis]
        out = taps[0] * padded.take(range(0, length), axis=axis)
        for i in range(1, 2 * radius + 1):
            out += taps[i] * padded.take(range(i, i + length), axis=axis)
        image = out
    return image


def _upsample(small: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bilinear upsampling of a 2-D array to shape (rows, cols), corners aligned."""
    ry = np.linspace(0, small.shape[0] - 1, rows, dtype=np.float32)
    rx = np.linspace(0, small.shape[1] - 1, cols, dtype=np.float32)
    y0 = np.minimum(ry.astype(int), small.shape[0] - 2)
    x0 = np.minimum(rx.astype(int), small.shape[1] - 2)
    fy, fx = (ry - y0)[:, None], (rx - x0)[None, :]
    top = small[y0][:, x0] * (1 - fx) + small[y0][:, x0 + 1] * fx
    bottom = small[y0 + 1][:, x0] * (1 - fx) + small[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _splat(rows: int, cols: int, x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Bilinearly splat point masses onto a float32 (rows, cols) image; points are continuous pixel coordinates."""
    padded_cols = cols + 2
    xi, yi = x + 0.5, y + 0.5  # index space of a canvas padded by one pixel, pixel centres at integers
    x0, y0 = np.floor(xi), np.floor(yi)
    keep = (x0 >= 0) & (x0 <= cols) & (y0 >= 0) & (y0 <= rows)
    fx, fy, weight = (xi - x0)[keep], (yi - y0)[keep], weight[keep]
    idx = y0[keep].astype(np.int64) * padded_cols + x0[keep].astype(np.int64)
    size = (rows + 2) * padded_cols
    canvas = np.bincount(idx, weight * (1 - fx) * (1 - fy), minlength=size)
    canvas += np.bincount(idx + 1, weight * fx * (1 - fy), minlength=size)
    canvas += np.bincount(idx + padded_cols, weight * (1 - fx) * fy, minlength=size)
    canvas += np.bincount(idx + padded_cols + 1, weight * fx * fy, minlength=size)
    return canvas.reshape(rows + 2, padded_cols)[1:-1, 1:-1].astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Anatomy: implicit shapes
# ----------------------------------------------------------------------------------------------------------------


def _lung_lateral(anat: Anatomy, v: np.ndarray | float) -> np.ndarray:
    """|u| of the lateral lung border at height ``v`` (elliptic towards the apex, straight below ``lung_mid``)."""
    dv = np.clip((np.asarray(v) - anat.lung_mid) / (anat.lung_mid - anat.lung_apex), -1.0, 0.0)
    return anat.lung_apex_u + (anat.lung_width - anat.lung_apex_u) * np.sqrt(1.0 - dv * dv)


def _lung_medial(anat: Anatomy, side: int, v: np.ndarray) -> np.ndarray:
    """|u| of the medial lung border at height ``v`` on one side (-1 = image left, +1 = image right).

    Near the apex it curves into the mediastinum; lower down it follows the cardiomediastinal silhouette: the aortic
    knob and the left ventricle on the image right, the right atrium on the image left.
    """
    apex = np.clip((v - anat.lung_apex) / 0.12, 0.0, 1.0)
    medial = anat.mediastinum + (anat.lung_apex_u - anat.mediastinum) * (1.0 - np.sqrt(1.0 - (1.0 - apex) ** 2))
    dome = anat.domes[0 if side < 0 else 1]
    h = np.clip((v - anat.heart_top) / (dome - anat.heart_top), 0.0, 1.0)
    if side < 0:
        return medial + (anat.heart_right - anat.mediastinum) * np.sqrt(1.0 - (1.0 - h) ** 2)
    ventricle = np.sin(0.5 * np.pi * np.minimum(h / 0.8, 1.0)) - 0.6 * np.maximum(h - 0.8, 0.0)
    knob = anat.aortic_knob * np.exp(-(((v - anat.heart_top + 0.13) / 0.035) ** 2))
    return medial + (anat.heart_left - anat.mediastinum) * ventricle + knob


def _dome(anat: Anatomy, side: int, uu: np.ndarray) -> np.ndarray:
    """v of the diaphragm under one lung at lateral distance ``uu`` = |u|; side -1 = image left, +1 = image right."""
    top = anat.domes[0 if side < 0 else 1]
    lateral = np.maximum(uu - anat.dome_peak, 0.0)
    medial = np.maximum(anat.dome_peak - uu, 0.0)
    return top + 2.4 * lateral**2 + 2.0 * medial**2


def _lung_depth(anat: Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Relative antero-posterior depth of aerated lung in [0, 1] at patient points ``(u, v)`` (both lungs)."""
    depth = np.zeros(np.broadcast_shapes(u.shape, v.shape), dtype=np.float32)
    lateral = _lung_lateral(anat, v)
    for side in (-1, 1):
        uu = side * u
        edge = 0.008
        mask = _ramp(lateral - uu, edge) * _ramp(uu - _lung_medial(anat, side, v), edge)
        mask = mask * _ramp(_dome(anat, side, uu) - v, edge) * _ramp(v - anat.lung_apex, 0.02)
        periphery = np.sqrt(np.clip((lateral - uu) / 0.07, 0.0, 1.0))
        height = 0.6 + 0.4 * np.clip((v - anat.lung_apex) / 0.3, 0.0, 1.0)
        depth += mask * periphery * height
    return depth


def _heart(anat: Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Soft mask in [0, 1] of the cardiac shadow between the heart borders, from heart_top to just below the dome."""
    right = -_lung_medial(anat, -1, v)
    left = _lung_medial(anat, 1, v)
    vertical = _ramp(v - anat.heart_top - 0.03, 0.06) * _ramp(anat.domes[1] + 0.05 - v, 0.06)
    return vertical * _ramp(u - right, 0.02) * _ramp(left - u, 0.02)


def _torso(anat: Anatomy, frame: Frame, texture: np.ndarray) -> np.ndarray:
    """Soft tissue, lungs, heart and stomach bubble: float32 attenuation of shape (rows, cols).

    ``texture`` is a smooth random field of the same shape that mottles the lungs (lung markings).
    """
    u, v = frame.patient_grid((slice(0, frame.rows), slice(0, frame.cols)))
    shoulders = 0.14 * np.clip((0.24 - v) / 0.16, 0.0, 1.0) ** 2
    half_width = anat.body_half_width + shoulders
    body = np.sqrt(np.clip(1.0 - (u / half_width) ** 2, 0.0, 1.0))
    attenuation = anat.tissue * body
    lungs = _lung_depth(anat, u, v)
    attenuation -= anat.lung_air * lungs * (1.0 + texture)
    attenuation += anat.heart_density * _heart(anat, u, v)
    if anat.breast > 0:
        for side in (-1, 1):
            r2 = ((side * u - 0.2) / 0.17) ** 2 + ((v - anat.domes[0] + 0.02) / 0.13) ** 2
            attenuation += anat.breast * _ramp(1.0 - r2, 0.05) * (v < anat.domes[0] + 0.11)
    if anat.gastric_bubble > 0:
        r2 = ((u - 0.13) / 0.05) ** 2 + ((v - anat.domes[1] - 0.055) / 0.03) ** 2
        attenuation -= anat.gastric_bubble * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    return attenuation.astype(np.float32)


def _spine(anat: Anatomy, frame: Frame, out: np.ndarray) -> None:
    """Add the vertebral column (bodies with cortical end plates, pedicles, spinous processes) to ``out`` in place."""
    window = frame.window((-0.075, -0.1), (0.075, 1.2))
    if window is None:
        return
    u, v = frame.patient_grid(window)
    sp = anat.rib_spacing
    level = np.round((v - anat.rib_top) / sp)
    dv = v - (anat.rib_top + level * sp) + 0.1 * sp
    half_w = 0.027 + 0.0014 * np.clip(level, 0, 13)
    half_h, corner = 0.36 * sp, 0.006
    qx, qy = np.abs(u) - (half_w - corner), np.abs(dv) - (half_h - corner)
    dist = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - corner
    body = _ramp(-dist, 0.004) * 0.09 + 0.06 * np.exp(-((dist / 0.004) ** 2))
    pedicle_r = np.hypot((np.abs(u) - half_w + 0.009) / 0.0065, (dv + 0.12 * sp) / 0.011)
    pedicles = 0.09 * np.exp(-(((pedicle_r - 1.0) / 0.3) ** 2))
    spinous_r2 = (u / 0.006) ** 2 + ((dv - 0.3 * sp) / 0.014) ** 2
    spinous = 0.07 * np.sqrt(np.clip(1.0 - spinous_r2, 0.0, 1.0))
    out[window] += body + pedicles + spinous


def _humeral_heads(frame: Frame, out: np.ndarray) -> None:
    """Add the humeral heads, partly outside the field at the upper corners, to ``out`` in place."""
    for side in (-1, 1):
        cu, cv, radius = side * 0.49, 0.15, 0.065
        window = frame.window((cu - radius, cv - radius), (cu + radius, cv + radius))
        if window is None:
            continue
        u, v = frame.patient_grid(window)
        r = np.hypot(u - cu, v - cv) / radius
        out[window] += 0.55 * _tube_profile(np.minimum(r, 1.0), 0.8, 0.3) * (r < 1.0)


def _electrodes(spec: PhantomSpec, out: np.ndarray) -> None:
    """Add ECG electrodes (faint plastic disc with a dense metal snap) to ``out`` in place."""
    for cu, cv, radius in spec.electrodes:
        window = spec.frame.window((cu - radius, cv - radius), (cu + radius, cv + radius))
        if window is None:
            continue
        u, v = spec.frame.patient_grid(window)
        r = np.hypot(u - cu, v - cv) / radius
        out[window] += 0.1 * _ramp(1.0 - r, 0.1) + 1.2 * _ramp(0.3 - r, 0.08)


# ----------------------------------------------------------------------------------------------------------------
# Bands and fractures
# ----------------------------------------------------------------------------------------------------------------


def _tube_profile(r: np.ndarray, shell: float, medulla: float) -> np.ndarray:
    """Projected thickness across a hollow tube at relative offset ``r`` in [-1, 1] (outer radius 1)."""
    outer = np.sqrt(np.clip(1.0 - r * r, 0.0, None))
    inner = np.sqrt(np.clip(shell * shell - r * r, 0.0, None))
    return outer - inner + medulla * inner


def _band_profile(band: Band, r: np.ndarray) -> np.ndarray:
    """Cross-section profile of a band at relative offsets ``r`` in [-1, 1]."""
    if band.profile == "edge":
        return np.clip(0.5 * (1.0 + r), 0.0, 1.0) ** 2
    return _tube_profile(r, band.shell, band.medulla)


def fracture_magnitudes(subtlety: float) -> dict[str, float]:
    """How strongly a fracture shows at a given difficulty.

    Args:
        subtlety: the fracture's difficulty in [0, 1]; 0 = obvious, 1 = nearly invisible.

    Returns:
        ``gap`` (displaced: width of the fracture gap) and ``step`` (displaced: step-off of the bone ends), both in
        units of the local bone width; ``line`` (nondisplaced and healing: fraction of bone density removed on the
        lucent fracture line); ``callus`` (healing: relative thickening of the bone) and ``callus_density``
        (healing: added callus density relative to the bone's).
    """
    salience = 1.0 - float(np.clip(subtlety, 0.0, 1.0))
    strong = salience**1.5
    # The salient end is deliberately strong (a gap and step-off of a whole bone width, a callus doubling the bone)
    # so that difficulty 0 is learnable by a small network trained from scratch in minutes on a CPU.
    return {
        "gap": 0.03 + 1.0 * strong,
        "step": 0.9 * strong,
        "line": 0.15 + 0.85 * salience,
        "callus": 0.08 + 1.4 * salience,
        "callus_density": 0.05 + 1.0 * salience,
    }


@dataclass
class _Trace:
    """A band resampled in pixels every ``_SAMPLE_STEP`` along its centreline; all arrays have shape (N,)."""

    x: np.ndarray
    y: np.ndarray
    nx: np.ndarray  # unit normal, x component
    ny: np.ndarray
    s: np.ndarray  # arc length, pixels
    half_width: np.ndarray  # pixels
    density: np.ndarray
    curvature: np.ndarray  # 1 / pixels


def _trace(band: Band, frame: Frame) -> _Trace:
    """Resample a band's centreline in pixel space at uniform arc-length steps, with rounded ends."""
    xy = frame.to_pixels(band.points)
    seg = np.hypot(*np.diff(xy, axis=0).T)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    num = max(3, int(np.ceil(arc[-1] / _SAMPLE_STEP)) + 1)
    s = np.linspace(0.0, arc[-1], num)
    x, y = np.interp(s, arc, xy[:, 0]), np.interp(s, arc, xy[:, 1])
    tx, ty = np.gradient(x, s), np.gradient(y, s)
    norm = np.maximum(np.hypot(tx, ty), 1e-9)
    tx, ty = tx / norm, ty / norm
    curvature = np.gradient(np.unwrap(np.arctan2(ty, tx)), s)
    half_width = np.interp(s, arc, band.half_width) * frame.scale
    to_end = np.minimum(s, s[-1] - s)
    half_width = np.sqrt(np.clip(half_width**2 - np.maximum(half_width - to_end, 0.0) ** 2, 0.0, None))  # round caps
    density = np.interp(s, arc, band.density)
    return _Trace(x, y, -ty, tx, s, half_width, density, curvature)


@dataclass
class _Grid:
    """Splat grid of one band: N samples along the centreline by K across it.

    ``r`` (1, K) is the relative offset across the band in [-1, 1]; ``t``, ``x``, ``y``, ``area`` and ``weight`` have
    shape (N, K): offset from the centreline (pixels), splat position (pixels), area element (pixels^2) and
    attenuation times area.
    """

    r: np.ndarray
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    area: np.ndarray
    weight: np.ndarray


def _callus_bump(tr: _Trace, site: int, width: float) -> np.ndarray:
    """Fusiform envelope (N,) of a healing callus centred on sample ``site``; ``width`` = bone width in pixels."""
    return np.exp(-(((tr.s - tr.s[site]) / (1.2 * width)) ** 2))


def _band_grid(band: Band, tr: _Trace, base_half_width: np.ndarray) -> _Grid:
    """Splat grid of a band whose half-width may exceed ``base_half_width`` (callus); path length scales with it."""
    count = max(2, int(np.ceil(2.0 * tr.half_width.max() / _SAMPLE_STEP)))
    r = ((np.arange(count) + 0.5) / count * 2.0 - 1.0)[None, :]
    t = tr.half_width[:, None] * r
    bend = np.clip(1.0 - tr.curvature[:, None] * t, 0.2, 2.0)  # area on the inner side of a bend is compressed
    area = _SAMPLE_STEP * (2.0 * tr.half_width / count)[:, None] * bend
    thickness = (tr.half_width / np.maximum(base_half_width, 1e-6))[:, None]
    weight = tr.density[:, None] * _band_profile(band, r) * thickness * area
    return _Grid(r, t, tr.x[:, None] + t * tr.nx[:, None], tr.y[:, None] + t * tr.ny[:, None], area, weight)


def _draw_displaced(grid: _Grid, tr: _Trace, site: int, frac: Fracture, width: float, along: np.ndarray) -> float:
    """Cut a gap across the bone and shift the two ends apart (step-off) in place; returns the gap width."""
    mag = fracture_magnitudes(frac.subtlety)
    step = frac.direction * mag["step"] * width
    shift = np.where(along >= 0, 0.5, -0.5) * step * np.exp(-np.abs(along) / (1.5 * width))
    grid.x = grid.x + shift * tr.nx[site]
    grid.y = grid.y + shift * tr.ny[site]
    gap = mag["gap"] * width
    grid.weight = grid.weight * np.clip((np.abs(along) - 0.5 * gap) / _SAMPLE_STEP + 0.5, 0.0, 1.0)
    return gap


def _draw_callus(grid: _Grid, tr: _Trace, site: int, frac: Fracture, width: float, line: np.ndarray) -> None:
    """Fill a healing callus (solid bone around the already thickened band) with a faint lucent line, in place."""
    mag = fracture_magnitudes(frac.subtlety)
    bump = _callus_bump(tr, site, width)[:, None]
    callus = tr.density[:, None] * mag["callus_density"] * bump * _tube_profile(grid.r, 0.0, 1.0) * grid.area
    grid.weight = (grid.weight + callus) * (1.0 - 0.5 * mag["line"] * line)


def _fracture_box(grid: _Grid, tr: _Trace, site: int, reach: float, width: float, frame: Frame) -> np.ndarray:
    """Box (x1, y1, x2, y2) around the bone within ``reach`` pixels (along the band) of the site, plus a margin of
    about a tenth of the bone width, clipped to the image."""
    near = np.abs(tr.s - tr.s[site]) <= reach
    xs, ys = grid.x[near], grid.y[near]
    margin = 1.0 + 0.12 * width
    box = np.array([xs.min() - margin, ys.min() - margin, xs.max() + margin, ys.max() + margin])
    return np.clip(box, 0.0, [frame.cols, frame.rows, frame.cols, frame.rows])


def _band_splats(
    band: Band, frame: Frame, fractures: list[Fracture]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Splat points of one band with its fractures drawn in.

    Returns:
        ``x``, ``y`` (pixels) and ``weight`` (attenuation times area, pixels^2), each flattened to shape (N * K,),
        and one box (x1, y1, x2, y2) per fracture.
    """
    tr = _trace(band, frame)
    base_half_width = tr.half_width.copy()
    sites = [int(round(f.position * (len(tr.s) - 1))) for f in fractures]
    for frac, site in zip(fractures, sites, strict=True):
        if frac.kind == "healing":
            thickening = fracture_magnitudes(frac.subtlety)["callus"]
            tr.half_width = tr.half_width * (1.0 + thickening * _callus_bump(tr, site, 2.0 * base_half_width[site]))
    grid = _band_grid(band, tr, base_half_width)

    boxes = []
    for frac, site in zip(fractures, sites, strict=True):
        width = 2.0 * base_half_width[site]
        along = tr.s[:, None] - tr.s[site] - grid.t * np.tan(frac.obliquity)  # signed distance to the fracture line
        line_width = max(0.9, 0.12 * width) * (1.0 + 1.5 * (1.0 - frac.subtlety))
        line = np.exp(-((along / line_width) ** 2))
        reach = 0.6 * width
        if frac.kind == "displaced":
            reach += 0.5 * _draw_displaced(grid, tr, site, frac, width, along)
        elif frac.kind == "nondisplaced":
            crossed = _ramp(frac.direction * grid.r - (1.0 - 2.0 * frac.extent), 0.2)
            grid.weight = grid.weight * (1.0 - fracture_magnitudes(frac.subtlety)["line"] * line * crossed)
        else:
            _draw_callus(grid, tr, site, frac, width, line)
            reach = 1.56 * width
        boxes.append(_fracture_box(grid, tr, site, reach, width, frame))
    return grid.x.ravel(), grid.y.ravel(), grid.weight.ravel(), boxes


def _render_bands(spec: PhantomSpec, draw_fractures: bool) -> tuple[np.ndarray, np.ndarray, list[Fracture]]:
    """Rasterise all bands of a spec.

    Returns:
        float32 attenuation of shape (rows, cols), boxes of shape (M, 4) and the M drawn fractures in box order.
    """
    by_band: dict[int, list[Fracture]] = {}
    if draw_fractures:
        for frac in spec.fractures:
            by_band.setdefault(frac.band, []).append(frac)
    xs, ys, ws, boxes, drawn = [], [], [], [], []
    for index, band in enumerate(spec.bands):
        fracs = by_band.get(index, [])
        x, y, w, band_boxes = _band_splats(band, spec.frame, fracs)
        xs.append(x)
        ys.append(y)
        ws.append(w)
        boxes.extend(band_boxes)
        drawn.extend(fracs)
    image = _splat(spec.frame.rows, spec.frame.cols, np.concatenate(xs), np.concatenate(ys), np.concatenate(ws))
    return image, np.asarray(boxes, dtype=np.float32).reshape(-1, 4), drawn


# ----------------------------------------------------------------------------------------------------------------
# Acquisition
# ----------------------------------------------------------------------------------------------------------------


def _texture(seed: int, rows: int, cols: int) -> np.ndarray:
    """Smooth zero-mean random field of shape (rows, cols), amplitude about 0.1, for lung markings."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((rows // 16 + 3, cols // 16 + 3)).astype(np.float32)
    fine = rng.standard_normal((rows // 6 + 3, cols // 6 + 3)).astype(np.float32)
    return 0.06 * _upsample(coarse, rows, cols) + 0.04 * _upsample(fine, rows, cols)


def _acquire(attenuation: np.ndarray, acq: Acquisition, tissue: float) -> np.ndarray:
    """Turn an attenuation map (rows, cols) into a 12-bit uint16 radiograph (MONOCHROME2)."""
    kappa = 2.5  # attenuation units to natural-log transmission
    rng = np.random.default_rng(acq.noise_seed)
    noise = rng.standard_normal(attenuation.shape, dtype=np.float32)
    sigma = np.exp(0.5 * kappa * np.maximum(attenuation, 0.0)) / (kappa * np.sqrt(acq.photons))
    signal = _gaussian_blur(attenuation + noise * sigma.astype(np.float32), acq.blur)
    linear = np.clip((signal * acq.contrast + acq.exposure) / (1.7 * tissue), 0.0, 1.0)
    level = (np.log1p(_TONE_KNEE * linear) / np.log1p(_TONE_KNEE)) ** acq.gamma
    level = acq.black + (acq.white - acq.black) * level
    return np.round(level * MAX_PIXEL_VALUE).astype(np.uint16)


def _burn_in(pixels: np.ndarray, markers: tuple[Marker, ...]) -> None:
    """Draw burned-in marker glyphs into a uint16 image in place (clipped at the borders)."""
    for marker in markers:
        glyph = np.array([[c == "1" for c in row] for row in _LETTERS[marker.letter]])
        glyph = np.kron(glyph, np.ones((marker.cell, marker.cell), dtype=bool))
        rows = slice(marker.y, min(marker.y + glyph.shape[0], pixels.shape[0]))
        cols = slice(marker.x, min(marker.x + glyph.shape[1], pixels.shape[1]))
        patch = pixels[rows, cols]
        patch[glyph[: patch.shape[0], : patch.shape[1]]] = round(marker.level * MAX_PIXEL_VALUE)


def render_spec(spec: PhantomSpec, draw_fractures: bool = True) -> PhantomImage:
    """Render a phantom spec.

    Args:
        spec: the sampled phantom (see :func:`sample_phantom`).
        draw_fractures: if False, render the identical image without its fractures (same anatomy, pose, noise
            realisation and markers); the returned annotations are then empty.

    Returns:
        the radiograph and the fracture boxes, ordered as drawn.
    """
    frame, anat, acq = spec.frame, spec.anatomy, spec.acquisition
    attenuation = _torso(anat, frame, _texture(acq.texture_seed, frame.rows, frame.cols))
    _spine(anat, frame, attenuation)
    _humeral_heads(frame, attenuation)
    _electrodes(spec, attenuation)
    bands, boxes, drawn = _render_bands(spec, draw_fractures)
    pixels = _acquire(attenuation + bands, acq, anat.tissue)
    _burn_in(pixels, spec.markers)
    return PhantomImage(
        pixels=pixels,
        boxes=boxes,
        box_classes=[f.bone for f in drawn],
        fracture_types=[f.kind for f in drawn],
    )


# ----------------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------------


def _sample_frame(rng: np.random.Generator, size: int) -> Frame:
    """Image shape (rows = size, cols = size * U(0.85, 1)) and patient size, position and rotation."""
    rows = size
    cols = int(round(size * rng.uniform(0.85, 1.0)))
    scale = size * rng.uniform(0.86, 1.02)
    angle = np.deg2rad(rng.uniform(-3.5, 3.5))
    centre = (cols / 2 + rng.uniform(-0.03, 0.03) * size, rows / 2 + rng.uniform(-0.01, 0.05) * size)
    return Frame(rows=rows, cols=cols, scale=float(scale), angle=float(angle), centre=centre)


def _sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Patient anatomy: body habitus, lungs, inspiration depth (diaphragm level), heart and rib layout."""
    rib_top = rng.uniform(0.085, 0.115)
    rib_spacing = rng.uniform(0.058, 0.066)
    inspiration = rng.uniform(8.3, 10.6)  # posterior rib number at the dome
    dome_right = rib_top + (inspiration - 0.5) * rib_spacing
    dome_left = dome_right + rng.uniform(0.01, 0.035)
    heart_size = rng.uniform(0.85, 1.15)
    tissue = rng.uniform(1.0, 1.3)
    return Anatomy(
        tissue=tissue,
        body_half_width=rng.uniform(0.39, 0.44),
        lung_apex=rib_top - rng.uniform(0.01, 0.03),
        lung_mid=rib_top + rng.uniform(0.28, 0.36),
        lung_apex_u=rng.uniform(0.13, 0.16),
        lung_width=rng.uniform(0.33, 0.36),
        lung_air=tissue * rng.uniform(0.62, 0.72),
        domes=(dome_right, dome_left),
        dome_peak=rng.uniform(0.14, 0.18),
        mediastinum=rng.uniform(0.045, 0.06),
        heart_top=dome_left - rng.uniform(0.22, 0.27),
        heart_right=rng.uniform(0.075, 0.095) * heart_size,
        heart_left=rng.uniform(0.15, 0.18) * heart_size,
        aortic_knob=rng.uniform(0.015, 0.035),
        heart_density=rng.uniform(0.02, 0.06),
        rib_top=rib_top,
        rib_spacing=rib_spacing,
        num_ribs=int(rng.integers(10, 13)),
        gastric_bubble=rng.uniform(0.15, 0.3) if rng.random() < 0.6 else 0.0,
        breast=rng.uniform(0.06, 0.12) if rng.random() < 0.35 else 0.0,
    )


def _sample_acquisition(rng: np.random.Generator, size: int) -> Acquisition:
    """Exposure, noise level, blur and display curve; the quantum count scales with the pixel area."""
    return Acquisition(
        photons=rng.uniform(4e3, 3e4) * (512.0 / size) ** 2,
        blur=rng.uniform(0.6, 1.1),
        exposure=rng.uniform(-0.08, 0.08),
        contrast=rng.uniform(0.9, 1.1),
        gamma=rng.uniform(0.8, 1.25),
        black=rng.uniform(0.02, 0.07),
        white=rng.uniform(0.9, 0.98),
        noise_seed=int(rng.integers(2**63)),
        texture_seed=int(rng.integers(2**63)),
    )


def _rib(anat: Anatomy, rng: np.random.Generator, side: int, k: int) -> Band:
    """Rib ``k`` (0 = first) on one side: posterior arc from the spine to the lateral wall, then the fainter
    anterior segment running down and medially; floating ribs (k >= 10) have no anterior segment."""
    sp = anat.rib_spacing
    v0 = anat.rib_top + k * sp + rng.normal(0.0, 0.04 * sp)
    u_med = 0.03 + 0.0015 * k
    v_lat = v0 + sp * (1.2 + 0.06 * k)
    u_lat = float(_lung_lateral(anat, v_lat)) + 0.016 + rng.normal(0.0, 0.003)
    if k == 0:
        u_lat -= 0.03
    floating = k >= 10
    if floating:
        u_lat = u_med + (u_lat - u_med) * (0.75 if k == 10 else 0.55)
    posterior = _bezier(
        np.array(
            [
                (u_med, v0),
                (u_med + 0.4 * (u_lat - u_med), v0 - 0.3 * sp),
                (u_lat + 0.004, v_lat - 0.6 * sp),
                (u_lat, v_lat),
            ]
        )
    )
    half_med, half_lat = 0.0085 + 0.0003 * k, 0.0105 + 0.0003 * k
    hw = [np.linspace(half_med, half_lat, len(posterior))]
    density = [np.linspace(0.9, 1.0, len(posterior))]
    pieces = [posterior]
    if not floating:
        u_end = 0.075 + 0.005 * k + rng.normal(0.0, 0.006)
        run = u_lat - u_end
        v_end = v_lat + 0.55 * sp + run * rng.uniform(0.45, 0.7)
        anterior = _bezier(
            np.array(
                [
                    (u_lat, v_lat),
                    (u_lat - 0.004, v_lat + 0.35 * sp),
                    (u_lat - 0.45 * run, v_end - 0.3 * run),
                    (u_end, v_end),
                ]
            )
        )
        tail = np.linspace(0.0, 1.0, len(anterior))
        pieces.append(anterior)
        hw.append(half_lat + 0.002 * tail)
        density.append((0.45 + 0.55 * (1.0 - tail) ** 3) * np.clip((1.0 - tail) / 0.25, 0.0, 1.0))
    points = _polyline(*pieces)
    points[:, 0] *= side
    half_width = np.concatenate([hw[0]] + [h[1:] for h in hw[1:]])
    scale = rng.uniform(0.22, 0.28)
    dens = np.concatenate([density[0]] + [d[1:] for d in density[1:]]) * scale
    return Band(points, half_width, dens, shell=0.72, medulla=0.35, bone="rib")


def _clavicle(anat: Anatomy, rng: np.random.Generator, side: int) -> Band:
    """S-shaped clavicle from the sternal end (medial, lower) to the acromial end (lateral, higher): the medial
    two thirds arch upwards, the lateral third sags before rising to the acromion."""
    v_med = anat.rib_top + rng.uniform(1.7, 2.5) * anat.rib_spacing
    u_med, u_lat = 0.035, rng.uniform(0.34, 0.4)
    v_lat = v_med - rng.uniform(0.06, 0.1)
    t = np.linspace(0.0, 1.0, 64)
    u = u_med + (u_lat - u_med) * t
    v = v_med + (v_lat - v_med) * t**1.4 - rng.uniform(0.012, 0.022) * np.sin(2.0 * np.pi * t)
    points = np.stack([side * u, v], axis=1)
    half_width = 0.0115 + 0.004 * (1.0 - t) ** 6 + 0.004 * t**6
    density = np.full(len(points), rng.uniform(0.4, 0.5))
    return Band(points, half_width, density, shell=0.62, medulla=0.4, bone="clavicle")


def _scapula_borders(rng: np.random.Generator, side: int) -> list[Band]:
    """Medial and lateral borders of the scapula: faint edges overlapping the upper lateral lung."""
    glenoid = (0.38 + rng.uniform(-0.02, 0.02), 0.17)
    angle = (0.3 + rng.uniform(-0.03, 0.04), 0.43 + rng.uniform(-0.03, 0.03))
    superior = (0.21 + rng.uniform(-0.03, 0.03), 0.1)
    bands = []
    for start in (glenoid, superior):
        ctrl = np.array([start, np.add(start, angle) / 2 + (0.012, 0), np.add(start, angle) / 2, angle])
        points = _bezier(ctrl, 24) * (side, 1)
        bands.append(Band(points, np.full(24, 0.005), np.full(24, rng.uniform(0.08, 0.14)), shell=0.5, medulla=0.3))
    return bands


def _vessels(anat: Anatomy, rng: np.random.Generator) -> list[Band]:
    """Pulmonary vessels branching from both hila, cut where they leave the lungs."""
    bands = []
    for side in (-1, 1):
        for _ in range(int(rng.integers(6, 10))):
            hilum = np.array(
                [
                    side * (anat.mediastinum + rng.uniform(0.02, 0.04)),
                    anat.rib_top + rng.uniform(4.0, 5.5) * anat.rib_spacing,
                ]
            )
            angle = np.deg2rad(rng.uniform(-95, 105))  # 0 = lateral, negative = upwards
            direction = np.array([side * np.cos(angle), np.sin(angle)])
            bands.extend(_vessel_tree(anat, rng, hilum, direction, rng.uniform(0.12, 0.24), 0.008, depth=2))
    return bands


def _vessel_tree(
    anat: Anatomy,
    rng: np.random.Generator,
    start: np.ndarray,
    direction: np.ndarray,
    length: float,
    width: float,
    depth: int,
) -> list[Band]:
    """One tapering vessel and, if ``depth`` > 0, two side branches (recursively)."""
    bend = rng.normal(0.0, 0.25)
    normal = np.array([-direction[1], direction[0]])
    t = np.linspace(0.0, 1.0, 16)[:, None]
    points = start + length * t * direction + length * bend * t**2 * normal
    inside = _lung_depth(anat, points[:, 0], points[:, 1]) > 0.15
    inside[:3] = True  # the hilum itself sits in the mediastinum
    stop = int(np.argmin(inside)) if not inside.all() else len(points)
    if stop < 4:
        return []
    points = points[:stop]
    taper = np.linspace(1.0, 0.35, 16)[:stop]
    bands = [Band(points, width * taper, 0.09 * np.sqrt(taper), shell=0.0)]
    if depth > 0:
        for _ in range(2):
            i = int(rng.integers(stop // 3, stop))
            turn = np.deg2rad(rng.uniform(20, 45)) * rng.choice([-1, 1])
            rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
            bands.extend(
                _vessel_tree(anat, rng, points[i], rot @ direction, 0.5 * length, width * taper[i] * 0.8, depth - 1)
            )
    return bands


def _airways(anat: Anatomy, rng: np.random.Generator) -> list[Band]:
    """Trachea and main bronchi as air (negative density) bands."""
    carina = np.array([rng.normal(0.0, 0.004), anat.rib_top + rng.uniform(3.4, 4.0) * anat.rib_spacing])
    trachea = np.linspace((rng.normal(0.0, 0.006), -0.05), carina, 16)
    bands = [Band(trachea, np.full(16, 0.017), np.full(16, -0.16))]
    for side, angle in ((-1, 30.0), (1, 45.0)):
        end = carina + 0.085 * np.array([side * np.sin(np.deg2rad(angle)), np.cos(np.deg2rad(angle))])
        bands.append(Band(np.linspace(carina, end, 12), np.full(12, 0.0105), np.full(12, -0.12)))
    return bands


def _tube(points: np.ndarray, half_width: float, density: float, shell: float) -> Band:
    """A medical tube or wire of constant width along a polyline."""
    num = len(points)
    return Band(points, np.full(num, half_width), np.full(num, density), shell=shell, medulla=0.0)


def _sample_devices(anat: Anatomy, rng: np.random.Generator) -> list[Band]:
    """Support devices: endotracheal tube, nasogastric tube, central venous line, ECG wires, skin folds, lines."""
    bands = []
    carina_v = anat.rib_top + 3.5 * anat.rib_spacing
    if rng.random() < 0.15:
        tip = carina_v - rng.uniform(0.04, 0.08)
        bands.append(_tube(np.linspace((0.0, -0.05), (0.003, tip), 12), 0.011, 0.18, shell=0.85))
    if rng.random() < 0.25:
        ctrl = np.array([(-0.01, -0.05), (0.02, 0.4), (0.0, anat.domes[1] - 0.05), (0.16, anat.domes[1] + 0.1)])
        bands.append(_tube(_bezier(ctrl, 64), 0.0045, 0.45, shell=0.6))
    if rng.random() < 0.25:
        side = rng.choice([-1, 1])
        tip_v = carina_v + rng.uniform(0.0, 0.06)
        ctrl = np.array([(side * 0.3, 0.14), (side * 0.15, 0.16), (side * 0.04, 0.2), (-0.035, tip_v)])
        bands.append(_tube(_bezier(ctrl, 48), 0.0035, 0.55, shell=0.0))
    if rng.random() < 0.25:
        side = rng.choice([-1, 1])
        x = side * rng.uniform(0.2, 0.3)
        ctrl = np.array([(x, 0.1), (x + side * 0.05, 0.35), (x + side * 0.06, 0.55), (x + side * 0.02, 0.85)])
        num = 48
        bands.append(Band(_bezier(ctrl, num), np.full(num, 0.012), np.full(num, 0.05), profile="edge"))
    for _ in range(int(rng.random() < 0.3) * int(rng.integers(1, 3))):
        start, end = rng.uniform((-0.45, 0.1), (0.45, 0.9)), rng.uniform((-0.45, 0.1), (0.45, 0.9))
        bands.append(_tube(np.linspace(start, end, 16), 0.0015, 0.08, shell=0.0))
    return bands


def _sample_electrodes(
    rng: np.random.Generator,
) -> tuple[tuple[tuple[float, float, float], ...], list[Band]]:
    """ECG electrodes ``(u, v, radius)`` and the lead wires that run from each to the image border."""
    if rng.random() >= 0.4:
        return (), []
    electrodes, wires = [], []
    for _ in range(int(rng.integers(3, 6))):
        u, v = rng.uniform(-0.38, 0.38), rng.uniform(0.12, 0.85)
        electrodes.append((float(u), float(v), float(rng.uniform(0.012, 0.017))))
        end = (np.sign(u) * 0.6, v + rng.uniform(-0.3, 0.3))
        ctrl = np.array([(u, v), (u + rng.uniform(-0.1, 0.1), v + 0.1), (end[0] * 0.8, end[1] - 0.1), end])
        wires.append(_tube(_bezier(ctrl, 32), 0.002, 0.35, shell=0.0))
    return tuple(electrodes), wires


def _sample_markers(rng: np.random.Generator, frame: Frame) -> tuple[Marker, ...]:
    """A burned-in 'L' or 'R' side marker near one of the upper corners, in 70 % of images."""
    if rng.random() >= 0.7:
        return ()
    cell = max(1, round(0.008 * frame.rows))
    margin = round(0.03 * frame.rows)
    right = bool(rng.random() < 0.5)
    x = frame.cols - margin - 5 * cell if right else margin
    y = margin + int(rng.integers(0, max(1, round(0.05 * frame.rows))))
    letter = "L" if right else "R"
    return (Marker(letter, int(x), int(y), int(cell), float(rng.uniform(0.9, 1.0))),)


def _site_ok(anat: Anatomy, frame: Frame, band: Band, position: float) -> bool:
    """Whether a fracture at ``position`` (arc fraction) of ``band`` is well inside the image, above the diaphragm
    and lateral to the mediastinum, so that its box is not clipped and the fracture not hidden in dense tissue."""
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(band.points, axis=0).T))])
    u = np.interp(position * arc[-1], arc, band.points[:, 0])
    v = np.interp(position * arc[-1], arc, band.points[:, 1])
    x, y = frame.to_pixels(np.array([u, v]))
    margin = 0.06 * frame.rows
    inside = margin <= x <= frame.cols - margin and margin <= y <= frame.rows - margin
    side = 1 if u >= 0 else -1
    above_diaphragm = v < _dome(anat, side, abs(u)) - 0.01
    clear_of_mediastinum = abs(u) > _lung_medial(anat, side, np.asarray(v)) + 0.02
    return bool(inside and above_diaphragm and clear_of_mediastinum)


def _sample_fractures(
    rng: np.random.Generator, spec: PhantomSpec, num_fractures: int, difficulty: float
) -> tuple[Fracture, ...]:
    """Place ``num_fractures`` fractures on distinct bones (rib 80 %, clavicle 20 %) at visible sites.

    The random draws do not depend on ``difficulty``, so the same generator state gives the same sites and types at
    every difficulty; only the per-fracture subtlety ``clip(difficulty + jitter, 0, 1)`` changes.
    """
    candidates = {bone: [i for i, b in enumerate(spec.bands) if b.bone == bone] for bone in CLASSES}
    fractures: list[Fracture] = []
    used: set[int] = set()
    for _ in range(_MAX_CLASS_DRAWS):
        if len(fractures) == num_fractures:
            return tuple(fractures)
        bone = "rib" if rng.random() < _RIB_FRACTURE_SHARE else "clavicle"
        span = (0.08, 0.65) if bone == "rib" else (0.25, 0.75)
        kind = str(rng.choice(FRACTURE_TYPES, p=_FRACTURE_TYPE_PROBS))
        jitter = rng.normal(0.0, _SUBTLETY_JITTER)
        obliquity, direction = rng.uniform(-0.5, 0.5), float(rng.choice([-1.0, 1.0]))
        extent = rng.uniform(0.6, 1.0) if rng.random() < 0.3 else 1.0
        for _ in range(50):
            index = int(rng.choice(candidates[bone]))
            position = float(rng.uniform(*span))
            if index not in used and _site_ok(spec.anatomy, spec.frame, spec.bands[index], position):
                break
        else:
            continue  # no visible free site on this bone class: draw the class again
        used.add(index)
        subtlety = float(np.clip(difficulty + jitter, 0.0, 1.0))
        fractures.append(Fracture(index, position, kind, bone, subtlety, float(obliquity), direction, float(extent)))
    if len(fractures) == num_fractures:
        return tuple(fractures)
    raise RuntimeError(f"found visible sites for only {len(fractures)} of {num_fractures} fractures.")


def sample_phantom(
    rng: np.random.Generator, size: int = 512, difficulty: float = 0.5, num_fractures: int = 0
) -> PhantomSpec:
    """Draw every random choice of one phantom image.

    The generator is split into independent streams for anatomy, devices and fractures, so that the anatomy does
    not depend on ``num_fractures`` or ``difficulty``.

    Args:
        rng: random generator; it is advanced by a fixed number of draws.
        size: image height in pixels (>= MIN_SIZE); the width is ``size * U(0.85, 1.0)``.
        difficulty: global fracture difficulty in [0, 1] (0 = obvious, 1 = nearly invisible).
        num_fractures: number of fractures, 0 to MAX_FRACTURES.

    Returns:
        the phantom spec; render it with :func:`render_spec`.
    """
    _check_size(size)
    _check_unit("difficulty", difficulty)
    if int(num_fractures) != num_fractures or not 0 <= num_fractures <= MAX_FRACTURES:
        raise ValueError(f"num_fractures must be in [0, {MAX_FRACTURES}], got {num_fractures}.")
    anat_rng, device_rng, fracture_rng = (np.random.default_rng(s) for s in rng.integers(2**63, size=3))
    frame = _sample_frame(anat_rng, size)
    anat = _sample_anatomy(anat_rng)
    bones = [_rib(anat, anat_rng, side, k) for k in range(anat.num_ribs) for side in (-1, 1)]
    bones += [_clavicle(anat, anat_rng, side) for side in (-1, 1)]
    others = _airways(anat, anat_rng) + _vessels(anat, anat_rng)
    others += [b for side in (-1, 1) for b in _scapula_borders(anat_rng, side)]
    electrodes, wires = _sample_electrodes(device_rng)
    spec = PhantomSpec(
        frame=frame,
        anatomy=anat,
        acquisition=_sample_acquisition(anat_rng, size),
        bands=tuple(bones + others + _sample_devices(anat, device_rng) + wires),
        electrodes=electrodes,
        markers=_sample_markers(device_rng, frame),
    )
    return replace(spec, fractures=_sample_fractures(fracture_rng, spec, num_fractures, difficulty))


def render_phantom(
    rng: np.random.Generator, size: int = 512, difficulty: float = 0.5, num_fractures: int = 0
) -> PhantomImage:
    """Sample and render one phantom radiograph: ``render_spec(sample_phantom(rng, size, difficulty, num_fractures))``.

    Args:
        rng: random generator (e.g. ``np.random.default_rng([seed, index])``).
        size: image height in pixels (>= MIN_SIZE).
        difficulty: fracture difficulty in [0, 1].
        num_fractures: number of fractures, 0 to MAX_FRACTURES.

    Returns:
        the radiograph (uint16, shape (size, width), 12-bit) with its fracture boxes, classes and types.
    """
    return render_spec(sample_phantom(rng, size, difficulty, num_fractures))


# ----------------------------------------------------------------------------------------------------------------
# Files and dataset
# ----------------------------------------------------------------------------------------------------------------


def _round_half_up(value: float) -> int:
    """Round to the nearest integer, halves upwards (Python's round() rounds halves to even)."""
    return int(np.floor(value + 0.5))


def plan_dataset(
    num_images: int,
    seed: int = 0,
    prevalence: float = 0.3,
    r_fraction: float = 0.1,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    image_format: str = "mixed",
) -> list[ImagePlan]:
    """Decide split, subset, fracture count and file format of every image, deterministically from ``seed``.

    Counts are exact rather than drawn: ``round(num_images * val_fraction)`` validation and
    ``round(num_images * test_fraction)`` test images (chosen at random); in each split ``round(n * prevalence)``
    images are positive (1 to MAX_FRACTURES fractures); of the training positives ``round(n * r_fraction)``, but at
    least one when ``r_fraction > 0``, form subset "R" (boxes kept), the others "P" (image labels only); training
    negatives are "N". With ``image_format="mixed"`` about a third of the images are PNG, the rest DICOM; about
    30 % of the DICOM files are MONOCHROME1 and half use a rescale intercept of -1024.

    Returns:
        one :class:`ImagePlan` per image, in index order.
    """
    _check_dataset_args(num_images, prevalence, r_fraction, val_fraction, test_fraction, image_format)
    rng = np.random.default_rng([seed, num_images, _PLAN_STREAM])
    order = rng.permutation(num_images)
    num_val = min(_round_half_up(num_images * val_fraction), num_images)
    num_test = min(_round_half_up(num_images * test_fraction), num_images - num_val)
    split = np.full(num_images, "training", dtype=object)
    split[order[:num_val]] = "validation"
    split[order[num_val : num_val + num_test]] = "test"
    positive = np.zeros(num_images, dtype=bool)
    for name in ("training", "validation", "test"):
        members = np.flatnonzero(split == name)
        positive[rng.permutation(members)[: _round_half_up(len(members) * prevalence)]] = True
    train_pos = np.flatnonzero((split == "training") & positive)
    num_r = max(1, _round_half_up(len(train_pos) * r_fraction)) if len(train_pos) and r_fraction > 0 else 0
    in_r = np.isin(np.arange(num_images), rng.permutation(train_pos)[:num_r])
    fractures = rng.integers(1, MAX_FRACTURES + 1, size=num_images) * positive
    png = rng.random(num_images) < {"dicom": 0.0, "png": 1.0, "mixed": _PNG_SHARE}[image_format]
    mono1 = rng.random(num_images) < _MONOCHROME1_SHARE
    shifted = rng.random(num_images) < 0.5
    plans = []
    for i in range(num_images):
        subset = None
        if split[i] == "training":
            subset = ("R" if in_r[i] else "P") if positive[i] else "N"
        plans.append(
            ImagePlan(
                index=i,
                split=str(split[i]),
                subset=subset,
                num_fractures=int(fractures[i]),
                image_format="png" if png[i] else "dicom",
                photometric="MONOCHROME1" if mono1[i] else "MONOCHROME2",
                rescale_intercept=-1024 if shifted[i] else 0,
            )
        )
    return plans


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


def _datalist_entry(plan: ImagePlan, relative_path: str, image: PhantomImage) -> dict:
    """Datalist item of one image: image-level labels always, boxes except for training subset "P"."""
    entry: dict = {"image": relative_path}
    if plan.subset is not None:
        entry["subset"] = plan.subset
    entry["labels"] = {name: int(name in image.box_classes) for name in CLASSES}
    if plan.subset != "P":
        entry["boxes"] = [[round(float(c), 1) for c in box] for box in image.boxes]
        entry["box_classes"] = list(image.box_classes)
        entry["fracture_types"] = list(image.fracture_types)
    return entry


def _make_image(task: tuple[ImagePlan, Path, int, int, float, str]) -> dict:
    """Render and write one image of a dataset; returns its datalist item (runs in worker processes)."""
    plan, out_dir, seed, size, difficulty, uid_key = task
    image = render_phantom(np.random.default_rng([seed, plan.index]), size, difficulty, plan.num_fractures)
    stem = f"images/cxr_{plan.index:05d}"
    if plan.image_format == "dicom":
        relative_path = stem + ".dcm"
        write_dicom(
            out_dir / relative_path,
            image.pixels,
            uid_key=f"{uid_key}:{plan.index}",
            patient_index=plan.index,
            photometric=plan.photometric,
            rescale_intercept=plan.rescale_intercept,
            pixel_spacing_mm=_DETECTOR_HEIGHT_MM / size,
        )
    else:
        relative_path = stem + ".png"
        write_png(out_dir / relative_path, image.pixels)
    return _datalist_entry(plan, relative_path, image)


def _collect(results: Iterable[dict], num_images: int, progress: bool) -> list[dict]:
    """Gather datalist items in order, printing progress (count and images/s) about every 10 % if asked."""
    entries: list[dict] = []
    start, every = time.perf_counter(), max(1, num_images // 10)
    for entry in results:
        entries.append(entry)
        if progress and (len(entries) % every == 0 or len(entries) == num_images):
            rate = len(entries) / max(time.perf_counter() - start, 1e-9)
            print(f"[phantom] {len(entries)}/{num_images} images ({rate:.1f} images/s)", flush=True)
    return entries


def _readme(generator: dict) -> str:
    """Text of the README.txt written next to the datalist."""
    params = "\n".join(f"  {key}: {value}" for key, value in generator.items())
    return f"""Synthetic CXR fracture phantom ({DATASET_NAME}, generator version {GENERATOR_VERSION})

These images are SYNTHETIC. They were rendered procedurally by bundle/scripts/synthetic.py and contain no patient
data: every image is a computer-generated posterior-anterior chest radiograph with ribs, clavicles, lungs, heart,
spine, support devices and, in positive images, rib and clavicle fractures (displaced, non-displaced, healing).
The data is dedicated to the public domain (CC0 1.0): free to use, share and modify for any purpose.

Files
  datalist.json  MONAI-style datalist: "training" (subsets R = fractures with boxes, P = positive with image-level
                 labels only, N = negative), "validation" and "test" (with boxes). Paths are relative to this folder.
  images/*.dcm   DICOM DX (for presentation), 12 bits stored; MONOCHROME1 files store {MAX_PIXEL_VALUE} - value;
                 rescaled value = RescaleSlope * stored + RescaleIntercept.
  images/*.png   16-bit greyscale PNG holding the 12-bit values 0..{MAX_PIXEL_VALUE} unscaled (MONOCHROME2 sense).

Boxes are [x1, y1, x2, y2] in pixels of the stored image, x = column, y = row; pixel column k spans [k, k + 1),
so x2 and y2 are exclusive edges. Classes: {", ".join(CLASSES)}.

Generator parameters
{params}
"""


def generate_dataset(
    out_dir: str | Path,
    num_images: int,
    size: int = 512,
    seed: int = 0,
    prevalence: float = 0.3,
    r_fraction: float = 0.1,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    difficulty: float = 0.5,
    image_format: str = "mixed",
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Render a synthetic CXR fracture dataset: image files, ``datalist.json`` and ``README.txt`` in ``out_dir``.

    Image ``i`` is rendered from ``np.random.default_rng([seed, i])`` and the dataset plan (see
    :func:`plan_dataset`) from ``seed``, so the same arguments give byte-identical files whatever ``workers`` is.

    Args:
        out_dir: output folder; images go to ``out_dir/images``.
        num_images: number of images (>= 1).
        size: image height in pixels (>= MIN_SIZE); widths vary in ``[0.85, 1] * size``.
        seed: dataset seed.
        prevalence: fraction of images with at least one fracture, in every split.
        r_fraction: fraction of training positives that keep their boxes (subset "R").
        val_fraction: fraction of images in the validation split.
        test_fraction: fraction of images in the test split.
        difficulty: fracture difficulty in [0, 1] (0 = obvious, 1 = nearly invisible).
        image_format: ``"dicom"``, ``"png"`` or ``"mixed"`` (about 2/3 DICOM, 1/3 PNG).
        workers: number of processes (1 = render in this process).
        progress: print progress about every 10 % of the images.

    Returns:
        path of the datalist JSON.
    """
    _check_size(size)
    _check_unit("difficulty", difficulty)
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers}.")
    plans = plan_dataset(num_images, seed, prevalence, r_fraction, val_fraction, test_fraction, image_format)
    generator = {
        "seed": seed,
        "num_images": num_images,
        "size": size,
        "difficulty": difficulty,
        "prevalence": prevalence,
        "r_fraction": r_fraction,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "image_format": image_format,
        "pixel_range": [0, MAX_PIXEL_VALUE],
        "version": GENERATOR_VERSION,
    }
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    uid_key = json.dumps(generator, sort_keys=True)
    tasks = [(plan, out_dir, seed, size, difficulty, uid_key) for plan in plans]
    if workers > 1:
        with ProcessPoolExecutor(workers) as executor:
            entries = _collect(executor.map(_make_image, tasks, chunksize=4), num_images, progress)
    else:
        entries = _collect(map(_make_image, tasks), num_images, progress)
    datalist: dict = {"name": DATASET_NAME, "classes": list(CLASSES), "generator": generator}
    for split in ("training", "validation", "test"):
        datalist[split] = [entry for plan, entry in zip(plans, entries, strict=True) if plan.split == split]
    path = out_dir / "datalist.json"
    path.write_text(json.dumps(datalist, indent=2) + "\n")
    (out_dir / "README.txt").write_text(_readme(generator))
    return path


# ----------------------------------------------------------------------------------------------------------------
# Parameter checks
# ----------------------------------------------------------------------------------------------------------------


def _check_size(size: int) -> None:
    """Raise ValueError unless ``size`` is an integer >= MIN_SIZE."""
    if int(size) != size or size < MIN_SIZE:
        raise ValueError(f"size must be an integer >= {MIN_SIZE}, got {size}.")


def _check_unit(name: str, value: float) -> None:
    """Raise ValueError unless ``value`` lies in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}.")


def _check_dataset_args(
    num_images: int,
    prevalence: float,
    r_fraction: float,
    val_fraction: float,
    test_fraction: float,
    image_format: str,
) -> None:
    """Raise ValueError for an invalid dataset plan."""
    if int(num_images) != num_images or num_images < 1:
        raise ValueError(f"num_images must be an integer >= 1, got {num_images}.")
    for name, value in (
        ("prevalence", prevalence),
        ("r_fraction", r_fraction),
        ("val_fraction", val_fraction),
        ("test_fraction", test_fraction),
    ):
        _check_unit(name, value)
    if val_fraction + test_fraction > 1.0:
        raise ValueError(f"val_fraction + test_fraction must be <= 1, got {val_fraction} + {test_fraction}.")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}.")
