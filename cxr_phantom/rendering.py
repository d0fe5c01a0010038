"""Rendering a phantom spec: attenuation of the implicit anatomy and of the rasterised bands, then the acquisition
(quantum noise, detector blur, tone curve) to a 12-bit radiograph with burned-in markers."""

from __future__ import annotations

import numpy as np

from cxr_phantom.anatomy import humeral_heads, spine, torso
from cxr_phantom.bands import band_grid, trace
from cxr_phantom.distractors import burn_in_markers, draw_electrodes
from cxr_phantom.fractures import draw_fracture, thicken_calluses
from cxr_phantom.numerics import gaussian_blur, splat, upsample
from cxr_phantom.sampling import sample_phantom
from cxr_phantom.spec import MAX_PIXEL_VALUE, Acquisition, Band, Fracture, Frame, PhantomImage, PhantomSpec

_TONE_KNEE = 4.0  # log-like display curve: lifts the lungs and compresses the mediastinum


def _band_splats(
    band: Band, frame: Frame, fractures: list[Fracture]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Splat points of one band with its fractures drawn in.

    Returns:
        ``x``, ``y`` (pixels) and ``weight`` (attenuation times area, pixels^2), each flattened to shape (N * K,),
        and one box (x1, y1, x2, y2) per fracture.
    """
    tr = trace(band, frame)
    base_half_width = tr.half_width.copy()
    sites = [int(round(f.position * (len(tr.s) - 1))) for f in fractures]
    thicken_calluses(tr, fractures, sites, base_half_width)
    grid = band_grid(band, tr, base_half_width)
    boxes = [
        draw_fracture(grid, tr, site, frac, 2.0 * base_half_width[site], frame)
        for frac, site in zip(fractures, sites, strict=True)
    ]
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
    image = splat(spec.frame.rows, spec.frame.cols, np.concatenate(xs), np.concatenate(ys), np.concatenate(ws))
    return image, np.asarray(boxes, dtype=np.float32).reshape(-1, 4), drawn


# ----------------------------------------------------------------------------------------------------------------
# Acquisition
# ----------------------------------------------------------------------------------------------------------------


def _texture(seed: int, rows: int, cols: int) -> np.ndarray:
    """Smooth zero-mean random field of shape (rows, cols), amplitude about 0.1, for lung markings."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((rows // 16 + 3, cols // 16 + 3)).astype(np.float32)
    fine = rng.standard_normal((rows // 6 + 3, cols // 6 + 3)).astype(np.float32)
    return 0.06 * upsample(coarse, rows, cols) + 0.04 * upsample(fine, rows, cols)


def _acquire(attenuation: np.ndarray, acq: Acquisition, tissue: float) -> np.ndarray:
    """Turn an attenuation map (rows, cols) into a 12-bit uint16 radiograph (MONOCHROME2)."""
    kappa = 2.5  # attenuation units to natural-log transmission
    rng = np.random.default_rng(acq.noise_seed)
    noise = rng.standard_normal(attenuation.shape, dtype=np.float32)
    sigma = np.exp(0.5 * kappa * np.maximum(attenuation, 0.0)) / (kappa * np.sqrt(acq.photons))
    signal = gaussian_blur(attenuation + noise * sigma.astype(np.float32), acq.blur)
    linear = np.clip((signal * acq.contrast + acq.exposure) / (1.7 * tissue), 0.0, 1.0)
    level = (np.log1p(_TONE_KNEE * linear) / np.log1p(_TONE_KNEE)) ** acq.gamma
    level = acq.black + (acq.white - acq.black) * level
    return np.round(level * MAX_PIXEL_VALUE).astype(np.uint16)


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
    attenuation = torso(anat, frame, _texture(acq.texture_seed, frame.rows, frame.cols))
    spine(anat, frame, attenuation)
    humeral_heads(frame, attenuation)
    draw_electrodes(spec, attenuation)
    bands, boxes, drawn = _render_bands(spec, draw_fractures)
    pixels = _acquire(attenuation + bands, acq, anat.tissue)
    burn_in_markers(pixels, spec.markers)
    return PhantomImage(
        pixels=pixels,
        boxes=boxes,
        box_classes=[f.bone for f in drawn],
        fracture_types=[f.kind for f in drawn],
    )


def render_phantom(
    rng: np.random.Generator, size: int = 512, difficulty: float = 0.5, num_fractures: int = 0, zoom: float = 1.0
) -> PhantomImage:
    """Sample and render one phantom radiograph: ``render_spec(sample_phantom(rng, size, difficulty, num_fractures))``.

    Args:
        rng: random generator (e.g. ``np.random.default_rng([seed, index])``).
        size: image height in pixels (>= MIN_SIZE).
        difficulty: fracture difficulty in [0, 1].
        num_fractures: number of fractures, 0 to MAX_FRACTURES.
        zoom: magnification (>= 1), see :func:`cxr_phantom.sampling.sample_phantom`.

    Returns:
        the radiograph (uint16, shape (size, width), 12-bit) with its fracture boxes, classes and types.
    """
    return render_spec(sample_phantom(rng, size, difficulty, num_fractures, zoom))
