"""Distractors: support devices (tubes, lines), ECG electrodes and leads, skin folds and burned-in side markers,
sampled and drawn."""

from __future__ import annotations

import numpy as np

from cxr_phantom.numerics import bezier, ramp
from cxr_phantom.spec import MAX_PIXEL_VALUE, Anatomy, Band, Frame, Marker, PhantomSpec

_LETTERS = {
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
}


def _tube(points: np.ndarray, half_width: float, density: float, shell: float) -> Band:
    """A medical tube or wire of constant width along a polyline."""
    num = len(points)
    return Band(points, np.full(num, half_width), np.full(num, density), shell=shell, medulla=0.0)


def sample_devices(anat: Anatomy, rng: np.random.Generator) -> list[Band]:
    """Support devices: endotracheal tube, nasogastric tube, central venous line, ECG wires, skin folds, lines."""
    bands = []
    carina_v = anat.rib_top + 3.5 * anat.rib_spacing
    if rng.random() < 0.15:
        tip = carina_v - rng.uniform(0.04, 0.08)
        bands.append(_tube(np.linspace((0.0, -0.05), (0.003, tip), 12), 0.011, 0.18, shell=0.85))
    if rng.random() < 0.25:
        ctrl = np.array([(-0.01, -0.05), (0.02, 0.4), (0.0, anat.domes[1] - 0.05), (0.16, anat.domes[1] + 0.1)])
        bands.append(_tube(bezier(ctrl, 64), 0.0045, 0.45, shell=0.6))
    if rng.random() < 0.25:
        side = rng.choice([-1, 1])
        tip_v = carina_v + rng.uniform(0.0, 0.06)
        ctrl = np.array([(side * 0.3, 0.14), (side * 0.15, 0.16), (side * 0.04, 0.2), (-0.035, tip_v)])
        bands.append(_tube(bezier(ctrl, 48), 0.0035, 0.55, shell=0.0))
    if rng.random() < 0.25:
        side = rng.choice([-1, 1])
        x = side * rng.uniform(0.2, 0.3)
        ctrl = np.array([(x, 0.1), (x + side * 0.05, 0.35), (x + side * 0.06, 0.55), (x + side * 0.02, 0.85)])
        num = 48
        bands.append(Band(bezier(ctrl, num), np.full(num, 0.012), np.full(num, 0.05), profile="edge"))
    for _ in range(int(rng.random() < 0.3) * int(rng.integers(1, 3))):
        start, end = rng.uniform((-0.45, 0.1), (0.45, 0.9)), rng.uniform((-0.45, 0.1), (0.45, 0.9))
        bands.append(_tube(np.linspace(start, end, 16), 0.0015, 0.08, shell=0.0))
    return bands


def sample_electrodes(
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
        wires.append(_tube(bezier(ctrl, 32), 0.002, 0.35, shell=0.0))
    return tuple(electrodes), wires


def sample_markers(rng: np.random.Generator, frame: Frame) -> tuple[Marker, ...]:
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


def draw_electrodes(spec: PhantomSpec, out: np.ndarray) -> None:
    """Add ECG electrodes (faint plastic disc with a dense metal snap) to ``out`` in place."""
    for cu, cv, radius in spec.electrodes:
        window = spec.frame.window((cu - radius, cv - radius), (cu + radius, cv + radius))
        if window is None:
            continue
        u, v = spec.frame.patient_grid(window)
        r = np.hypot(u - cu, v - cv) / radius
        out[window] += 0.1 * ramp(1.0 - r, 0.1) + 1.2 * ramp(0.3 - r, 0.08)


def burn_in_markers(pixels: np.ndarray, markers: tuple[Marker, ...]) -> None:
    """Draw burned-in marker glyphs into a uint16 image in place (clipped at the borders)."""
    for marker in markers:
        glyph = np.array([[c == "1" for c in row] for row in _LETTERS[marker.letter]])
        glyph = np.kron(glyph, np.ones((marker.cell, marker.cell), dtype=bool))
        rows = slice(marker.y, min(marker.y + glyph.shape[0], pixels.shape[0]))
        cols = slice(marker.x, min(marker.x + glyph.shape[1], pixels.shape[1]))
        patch = pixels[rows, cols]
        patch[glyph[: patch.shape[0], : patch.shape[1]]] = round(marker.level * MAX_PIXEL_VALUE)
