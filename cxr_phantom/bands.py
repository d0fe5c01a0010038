"""Bands: tubular structures drawn along a centreline, resampled in pixels into a dense grid of splat points."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxr_phantom.spec import Band, Frame

SAMPLE_STEP = 0.5  # spacing in pixels of the splatting grid along and across a band


def tube_profile(r: np.ndarray, shell: float, medulla: float) -> np.ndarray:
    """Projected thickness across a hollow tube at relative offset ``r`` in [-1, 1] (outer radius 1)."""
    outer = np.sqrt(np.clip(1.0 - r * r, 0.0, None))
    inner = np.sqrt(np.clip(shell * shell - r * r, 0.0, None))
    return outer - inner + medulla * inner


def _band_profile(band: Band, r: np.ndarray) -> np.ndarray:
    """Cross-section profile of a band at relative offsets ``r`` in [-1, 1]."""
    if band.profile == "edge":
        return np.clip(0.5 * (1.0 + r), 0.0, 1.0) ** 2
    return tube_profile(r, band.shell, band.medulla)


@dataclass
class Trace:
    """A band resampled in pixels every ``SAMPLE_STEP`` along its centreline; all arrays have shape (N,)."""

    x: np.ndarray
    y: np.ndarray
    nx: np.ndarray  # unit normal, x component
    ny: np.ndarray
    s: np.ndarray  # arc length, pixels
    half_width: np.ndarray  # pixels
    density: np.ndarray
    curvature: np.ndarray  # 1 / pixels


def trace(band: Band, frame: Frame) -> Trace:
    """Resample a band's centreline in pixel space at uniform arc-length steps, with rounded ends."""
    xy = frame.to_pixels(band.points)
    seg = np.hypot(*np.diff(xy, axis=0).T)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    num = max(3, int(np.ceil(arc[-1] / SAMPLE_STEP)) + 1)
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
    return Trace(x, y, -ty, tx, s, half_width, density, curvature)


@dataclass
class Grid:
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


def band_grid(band: Band, tr: Trace, base_half_width: np.ndarray) -> Grid:
    """Splat grid of a band whose half-width may exceed ``base_half_width`` (callus); path length scales with it."""
    count = max(2, int(np.ceil(2.0 * tr.half_width.max() / SAMPLE_STEP)))
    r = ((np.arange(count) + 0.5) / count * 2.0 - 1.0)[None, :]
    t = tr.half_width[:, None] * r
    bend = np.clip(1.0 - tr.curvature[:, None] * t, 0.2, 2.0)  # area on the inner side of a bend is compressed
    area = SAMPLE_STEP * (2.0 * tr.half_width / count)[:, None] * bend
    thickness = (tr.half_width / np.maximum(base_half_width, 1e-6))[:, None]
    weight = tr.density[:, None] * _band_profile(band, r) * thickness * area
    return Grid(r, t, tr.x[:, None] + t * tr.nx[:, None], tr.y[:, None] + t * tr.ny[:, None], area, weight)
