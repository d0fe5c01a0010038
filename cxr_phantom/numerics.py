"""Small numerical helpers of the phantom: soft steps, curves, blur, upsampling and bilinear splatting (numpy only)."""

from __future__ import annotations

import numpy as np


def ramp(x: np.ndarray, width: float) -> np.ndarray:
    """Soft step: 0 for ``x <= -width / 2``, 1 for ``x >= width / 2``, linear in between."""
    return np.clip(x * (1.0 / width) + 0.5, 0.0, 1.0)


def bezier(ctrl: np.ndarray, num: int = 48) -> np.ndarray:
    """Points of shape (num, 2) on the cubic Bezier curve with control points ``ctrl`` of shape (4, 2)."""
    t = np.linspace(0.0, 1.0, num)[:, None]
    return (1 - t) ** 3 * ctrl[0] + 3 * (1 - t) ** 2 * t * ctrl[1] + 3 * (1 - t) * t**2 * ctrl[2] + t**3 * ctrl[3]


def polyline(*pieces: np.ndarray) -> np.ndarray:
    """Concatenate polylines of shape (P_i, 2) whose ends coincide, dropping the duplicated joints."""
    return np.concatenate([pieces[0]] + [p[1:] for p in pieces[1:]])


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
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


def upsample(small: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bilinear upsampling of a 2-D array to shape (rows, cols), corners aligned."""
    ry = np.linspace(0, small.shape[0] - 1, rows, dtype=np.float32)
    rx = np.linspace(0, small.shape[1] - 1, cols, dtype=np.float32)
    y0 = np.minimum(ry.astype(int), small.shape[0] - 2)
    x0 = np.minimum(rx.astype(int), small.shape[1] - 2)
    fy, fx = (ry - y0)[:, None], (rx - x0)[None, :]
    top = small[y0][:, x0] * (1 - fx) + small[y0][:, x0 + 1] * fx
    bottom = small[y0 + 1][:, x0] * (1 - fx) + small[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def splat(rows: int, cols: int, x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> np.ndarray:
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
